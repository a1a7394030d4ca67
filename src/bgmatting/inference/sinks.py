"""Where results go: per-frame PNGs (alpha, foreground RGBA, composite) and encoded composite videos.

Nothing partial ever looks complete, and a failed run loses nothing of an earlier one: a run writes into a
hidden staging folder inside the output folder (``.staging-<random>.tmp/``, every file through
:func:`bgmatting.data.io.atomic_path`); only when every frame succeeded are its files moved into place and
``summary.json`` written last, so a folder without it is an unfinished run. A failed run deletes its staging
folder and leaves the output folder as it was. A new run first removes the staging folders and temporary files
that killed runs left behind (one run per output folder at a time). Files of an earlier run that a new run does
not write again stay. Errors while writing (a full disk: "no space left on device writing PATH", a read-only
folder, an output path that is a file) are :class:`bgmatting.data.io.DataError` naming the path.

Layout of an output folder::

    alpha/<frame>.png        8-bit alpha
    foreground/<frame>.png   RGBA: the foreground colours with alpha as the 4th channel
    composite/<frame>.png    alpha * F + (1 - alpha) * target background
    <input>_composite.mp4    videos only: the composite, encoded
    <input>_alpha.mp4        videos only: the alpha, encoded (gray in 3 channels)
    summary.json             written when the run is complete
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bgmatting.data.io import DataError, atomic_path, to_uint8, write_alpha, write_image, write_json

SUMMARY_NAME = "summary.json"
DEFAULT_FOURCC = "mp4v"
STAGING_PREFIX = ".staging-"
OUTPUT_FOLDERS = ("alpha", "foreground", "composite")


def output_error(error: OSError, path: Path) -> DataError:
    """One line for an OSError while writing ``path``: "no space left on device writing PATH" and the like."""
    if error.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "the output folder is not writable"
    else:
        reason = (error.strerror or str(error)).lower()
    return DataError(f"{reason} writing {path}")


def check_output_folder(folder: str | os.PathLike) -> Path:
    """The output folder, created if needed; a DataError when it is a file or cannot be created."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: the output path is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(error, folder) from None
    return folder


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete what killed runs left in an output folder: staging folders and hidden ``*.tmp*`` files (this
    package's temporary names) in it and its output subfolders. Returns what was removed."""
    removed = []
    for place in [folder] + [folder / name for name in OUTPUT_FOLDERS]:
        if not place.is_dir():
            continue
        for entry in place.iterdir():
            if entry.name.startswith(STAGING_PREFIX) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            elif entry.name.startswith(".") and ".tmp" in entry.name and entry.is_file():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


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
    Use as a context manager; :meth:`finish` moves the run's files into place and writes ``summary.json``.
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
        self.output_dir = check_output_folder(output_dir)
        remove_stale_temporaries(self.output_dir)
        self.staging = self.output_dir / f"{STAGING_PREFIX}{secrets.token_hex(4)}.tmp"
        try:
            self.staging.mkdir()
        except OSError as error:
            raise output_error(error, self.output_dir) from None
        self.pngs = pngs
        self.video = video
        self.video_extension = video_extension
        self.fourcc = fourcc
        self._videos: dict[str, AtomicVideoWriter] = {}
        self._staged: list[Path] = []  # paths relative to the output folder
        self.frames = 0
        self.outputs: list[str] = []

    def _guarded(self, relative: Path, write: Callable[[Path], Any]) -> None:
        """``write(staged path)``; an OSError becomes a DataError naming the final path."""
        try:
            write(self.staging / relative)
        except OSError as error:
            raise output_error(error, self.output_dir / relative) from None
        if relative not in self._staged:
            self._staged.append(relative)

    def _open_videos(self, height: int, width: int) -> None:
        fps, stem = self.video
        for kind in ("composite", "alpha"):
            relative = Path(f"{stem}_{kind}{self.video_extension}")
            self._guarded(relative, lambda path: self._videos.__setitem__(
                kind, AtomicVideoWriter(path, fps, (height, width), self.fourcc)))

    def write(self, name: str, alpha: np.ndarray, foreground: np.ndarray, composite: np.ndarray) -> None:
        """alpha H x W, foreground and composite H x W x 3, float in [0, 1]."""
        if self.pngs:
            self._guarded(Path("alpha", f"{name}.png"), lambda path: write_alpha(path, alpha))
            self._guarded(Path("foreground", f"{name}.png"),
                          lambda path: write_image(path, np.dstack([foreground, alpha])))
            self._guarded(Path("composite", f"{name}.png"), lambda path: write_image(path, composite))
        if self.video is not None:
            if not self._videos:
                self._open_videos(*alpha.shape)
            self._videos["composite"].write(composite)
            self._videos["alpha"].write(to_uint8(alpha))
        self.frames += 1

    def finish(self, summary: dict[str, Any]) -> Path:
        """Close the videos, move the run's files into the output folder, then write ``summary.json``."""
        for kind, writer in self._videos.items():
            relative = writer.path.relative_to(self.staging)
            self._guarded(relative, lambda path: (writer.close(), check_video(writer.path, writer.frames)))
            self.outputs.append(writer.path.name)
        if self.pngs:
            self.outputs += [f"{name}/" for name in OUTPUT_FOLDERS]
        (self.output_dir / SUMMARY_NAME).unlink(missing_ok=True)  # the folder is unfinished while files move
        for relative in self._staged:
            target = self.output_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.staging / relative, target)
        shutil.rmtree(self.staging, ignore_errors=True)
        summary = dict(summary, frames=self.frames, outputs=self.outputs)
        try:
            return write_json(self.output_dir / SUMMARY_NAME, summary)
        except OSError as error:
            raise output_error(error, self.output_dir / SUMMARY_NAME) from None

    def abort(self) -> None:
        """Stop the videos and delete the staging folder: the output folder stays as it was before the run."""
        for writer in self._videos.values():
            writer.abort()
        self._videos.clear()
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def check_video(path: Path, frames: int) -> None:
    """An encoded video that cannot be decoded again (e.g. cut short by a full disk) is an OSError."""
    capture = cv2.VideoCapture(str(path))
    try:
        ok = capture.isOpened() and capture.read()[0]
    finally:
        capture.release()
    if frames and not ok:
        free = shutil.disk_usage(path.parent).free
        raise OSError(errno.ENOSPC if free == 0 else errno.EIO, "cannot decode the encoded video", str(path))


class MemoryWriter:
    """Keeps each frame's outputs in memory instead of writing files (for library calls that return results):
    ``frames`` maps a frame's name to (alpha H x W, foreground H x W x 3, composite H x W x 3) float32 in
    [0, 1], in order; ``summary`` is set by :meth:`finish`."""

    def __init__(self) -> None:
        self.frames: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.summary: dict[str, Any] | None = None

    def write(self, name: str, alpha: np.ndarray, foreground: np.ndarray, composite: np.ndarray) -> None:
        self.frames[name] = (alpha, foreground, np.asarray(composite, np.float32))

    def finish(self, summary: dict[str, Any]) -> None:
        self.summary = dict(summary, frames=len(self.frames), outputs=[])

    def abort(self) -> None:
        self.frames.clear()

    def __enter__(self) -> MemoryWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
