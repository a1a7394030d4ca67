"""Where results go: per-frame PNGs (alpha, foreground RGBA, composite) and encoded composite videos.

Nothing partial ever looks complete: every file goes through :func:`bgmatting.data.io.atomic_path` (a
hidden temporary name, renamed when complete): PNGs through :func:`bgmatting.data.io.write_image`, a video
is renamed by :meth:`AtomicVideoWriter.close` (an interrupted run deletes it); ``summary.json`` is written
last, so a folder without it is an unfinished run.

Layout of an output folder::

    alpha/<frame>.png        8-bit alpha
    foreground/<frame>.png   RGBA: the foreground colours with alpha as the 4th channel
    composite/<frame>.png    alpha * F + (1 - alpha) * target background
    <input>_composite.mp4    videos only: the composite, encoded
    <input>_alpha.mp4        videos only: the alpha, encoded (gray in 3 channels)
    summary.json             written when the run is complete
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bgmatting.data.io import atomic_path, to_uint8, write_alpha, write_image, write_json

SUMMARY_NAME = "summary.json"
DEFAULT_FOURCC = "mp4v"


class _Aborted(Exception):
    """Thrown into the atomic path of an aborted video so that it deletes the temporary file."""


class AtomicVideoWriter:
    """cv2.VideoWriter that encodes into a hidden temporary file (:func:`bgmatting.data.io.atomic_path`, with
    the video's extension) and renames it to ``path`` on :meth:`close`.

    Frames: RGB H x W x 3 (uint8, or float in [0, 1]) or gray H x W; all of the size given at construction.
    Used as a context manager, an exception inside the block deletes the partial file instead.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], fourcc: str = DEFAULT_FOURCC):
        self.path = Path(path)
        self._target = atomic_path(self.path, keep_extension=True)
        self.partial = self._target.__enter__()
        self.height, self.width = size
        self.frames = 0
        self._writer = cv2.VideoWriter(
            str(self.partial), cv2.VideoWriter_fourcc(*fourcc), float(fps), (self.width, self.height)
        )
        if not self._writer.isOpened():
            self.abort()
            raise RuntimeError(
                f"{self.path}: OpenCV cannot encode fourcc {fourcc!r} into {self.path.suffix!r}; "
                "try --video-codec MJPG with an .avi name"
            )

    def write(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8:
            frame = to_uint8(frame)
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        else:
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        if frame.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"{self.path}: frame is {frame.shape[1]}x{frame.shape[0]}, the video is {self.width}x{self.height}"
            )
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish encoding and move the file to its final name."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        self._target.__exit__(None, None, None)

    def abort(self) -> None:
        """Stop and delete the partial file."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        self._target.__exit__(_Aborted, _Aborted(), None)

    def __enter__(self) -> AtomicVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class ResultWriter:
    """Writes each frame's alpha, foreground and composite into an output folder (layout: module docstring).

    ``pngs``: write the per-frame PNGs. ``video``: (fps, stem) to also encode ``<stem>_composite<ext>`` and
    ``<stem>_alpha<ext>``; the videos are opened lazily on the first frame (its size fixes theirs).
    Use as a context manager; :meth:`finish` writes ``summary.json``.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        *,
        pngs: bool = True,
        video: tuple[float, str] | None = None,
        video_extension: str = ".mp4",
        fourcc: str = DEFAULT_FOURCC,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / SUMMARY_NAME).unlink(missing_ok=True)  # a rerun is unfinished until it finishes
        self.pngs = pngs
        self.video = video
        self.video_extension = video_extension
        self.fourcc = fourcc
        self._videos: dict[str, AtomicVideoWriter] = {}
        self.frames = 0
        self.outputs: list[str] = []

    def _open_videos(self, height: int, width: int) -> None:
        fps, stem = self.video
        for kind in ("composite", "alpha"):
            path = self.output_dir / f"{stem}_{kind}{self.video_extension}"
            self._videos[kind] = AtomicVideoWriter(path, fps, (height, width), self.fourcc)

    def write(self, name: str, alpha: np.ndarray, foreground: np.ndarray, composite: np.ndarray) -> None:
        """alpha H x W, foreground and composite H x W x 3, float in [0, 1]."""
        if self.pngs:
            write_alpha(self.output_dir / "alpha" / f"{name}.png", alpha)
            write_image(self.output_dir / "foreground" / f"{name}.png", np.dstack([foreground, alpha]))
            write_image(self.output_dir / "composite" / f"{name}.png", composite)
        if self.video is not None:
            if not self._videos:
                self._open_videos(*alpha.shape)
            self._videos["composite"].write(composite)
            self._videos["alpha"].write(to_uint8(alpha))
        self.frames += 1

    def finish(self, summary: dict[str, Any]) -> Path:
        """Close the videos (renaming them to their final names), then write ``summary.json`` atomically."""
        for writer in self._videos.values():
            writer.close()
            self.outputs.append(writer.path.name)
        if self.pngs:
            self.outputs += ["alpha/", "foreground/", "composite/"]
        summary = dict(summary, frames=self.frames, outputs=self.outputs)
        return write_json(self.output_dir / SUMMARY_NAME, summary)

    def abort(self) -> None:
        """Delete partial videos (finished PNGs stay; there is no summary.json)."""
        for writer in self._videos.values():
            writer.abort()
        self._videos.clear()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
