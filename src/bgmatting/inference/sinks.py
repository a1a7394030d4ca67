"""Where results go: per-frame PNGs (alpha, foreground RGBA, composite) and encoded composite videos.

Nothing partial ever looks complete, and a failed run loses nothing of an earlier one: a run writes into a
hidden staging folder inside the output folder (``.staging-<random>.tmp/``, every file through
:func:`bgmatting.io.atomic_path`); only when every frame succeeded are its files moved into place and
``summary.json`` written last, so a folder without it is an unfinished run. A failed run deletes its staging
folder and leaves the output folder as it was. One run per output folder at a time: a run holds the folder's
lock (:mod:`bgmatting.inference.output_folder`) from before it touches anything in the folder until it ends, and a
second run is refused up front; the lock holder first removes the staging folders and temporary files that
killed runs left behind. Files of an earlier run that a new run does not write again stay.

Nothing is written through a symbolic link: a link where the run writes (an output subfolder or a file in one,
``summary.json``, the videos, the lock file) is refused before anything is written, naming the link, and files
are moved into place relative to folder descriptors opened without following links. The output folder itself
may be a link (its path is the one the user named). Errors while writing (a full disk: "no space left on device
writing PATH", a read-only folder, an output path that is a file) are :class:`bgmatting.io.DataError`
naming the path.

Layout of an output folder::

    alpha/<frame>.png        8-bit alpha
    foreground/<frame>.png   RGBA: the foreground colours with alpha as the 4th channel
    composite/<frame>.png    alpha * F + (1 - alpha) * target background
    <input>_composite.mp4    videos only: the composite, encoded
    <input>_alpha.mp4        videos only: the alpha, encoded (gray in 3 channels)
    summary.json             written when the run is complete
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bgmatting.io import DataError, atomic_path, to_uint8, write_alpha, write_image, write_json
from bgmatting.inference.output_folder import (
    LOCK_NAME,
    OUTPUT_FOLDERS,
    STAGING_PREFIX,
    OutputLock,
    check_output_folder,
    link_error,
    output_error,
    refuse_links,
    remove_stale_temporaries,
)
from bgmatting.preprocess.capture import VIDEO_EXTENSIONS

SUMMARY_NAME = "summary.json"
DEFAULT_FOURCC = "mp4v"
#: Flags of a folder opened as an anchor for moves: never through a symbolic link.
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for the block: OpenCV and FFmpeg print their own lines about codecs there."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def video_fourcc(codec: str) -> int:
    """OpenCV's code of a fourcc such as ``"mp4v"``; a DataError naming the value unless it is 4 printable ASCII
    characters."""
    if not (isinstance(codec, str) and len(codec) == 4 and codec.isascii() and codec.isprintable()):
        raise DataError(f"video codec {codec!r}: a fourcc is 4 characters, e.g. mp4v or MJPG")
    return cv2.VideoWriter_fourcc(*codec)


def check_video_extension(extension: str) -> None:
    """A DataError naming ``extension`` unless it is a video container's (:data:`VIDEO_EXTENSIONS`)."""
    if not isinstance(extension, str) or extension.lower() not in VIDEO_EXTENSIONS:
        raise DataError(f"video extension {extension!r} is not a video container; use one of "
                        f"{', '.join(VIDEO_EXTENSIONS)}")


def _cannot_encode(codec: str, extension: str) -> str:
    return (f"OpenCV cannot encode video codec {codec!r} into {extension!r} files here; try --video-codec MJPG "
            "with --video-extension .avi")


def check_video_encoder(codec: str, extension: str) -> None:
    """Whether OpenCV can encode ``codec`` into ``extension`` files: a writer is opened on a scratch file in the
    system's temporary folder (never the output folder) and closed again; a DataError naming both when not."""
    check_video_extension(extension)
    fourcc = video_fourcc(codec)
    with tempfile.TemporaryDirectory(prefix="bgmatting-codec-") as folder, _quiet_stderr():
        writer = cv2.VideoWriter(str(Path(folder, "probe" + extension)), fourcc, 25.0, (64, 64))
        opened = writer.isOpened()
        writer.release()
    if not opened:
        raise DataError(_cannot_encode(codec, extension))


class _Aborted(Exception):
    """Thrown into the atomic path of an aborted video so that it deletes the temporary file."""


class AtomicVideoWriter:
    """cv2.VideoWriter that encodes into a hidden temporary file (:func:`bgmatting.io.atomic_path`, with
    the video's extension) and renames it to ``path`` on :meth:`close`.

    Frames: RGB H x W x 3 (uint8, or float in [0, 1]) or gray H x W; all of the size given at construction.
    Used as a context manager, an exception inside the block deletes the partial file instead.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], fourcc: str = DEFAULT_FOURCC):
        self.path = Path(path)
        code = video_fourcc(fourcc)
        self._target = atomic_path(self.path, keep_extension=True)
        self.partial = self._target.__enter__()
        self.height, self.width = size
        self.frames = 0
        self._writer = cv2.VideoWriter(str(self.partial), code, float(fps), (self.width, self.height))
        if not self._writer.isOpened():
            self.abort()
            raise DataError(f"{self.path}: {_cannot_encode(fourcc, self.path.suffix)}")

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
    Construction refuses symbolic links where the run writes, then takes the folder's lock (a DataError when
    another run holds it); :meth:`finish` and :meth:`abort` release it. ``summary_fields``: a function returning
    more fields for ``summary.json``, called by :meth:`finish` (after the last frame).
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
        self.output_dir = Path(output_dir)
        self.pngs = pngs
        self.video = video
        self.video_extension = video_extension
        self.fourcc = fourcc
        refuse_links(self.output_dir, self._written_names())  # before anything is written
        check_output_folder(self.output_dir)
        self.lock = OutputLock(self.output_dir)
        self.lock.acquire()
        self.staging = self.output_dir / f"{STAGING_PREFIX}{secrets.token_hex(4)}.tmp"
        try:
            remove_stale_temporaries(self.output_dir)
            self.staging.mkdir()
        except OSError as error:
            self.lock.release()
            raise output_error(error, self.output_dir) from None
        self._videos: dict[str, AtomicVideoWriter] = {}
        self._staged: list[Path] = []  # paths relative to the output folder
        self.frames = 0
        self.outputs: list[str] = []
        self.summary_fields: Callable[[], dict[str, Any]] | None = None

    def _written_names(self) -> list[str]:
        """What this run writes directly in the output folder (files, and folders it writes into)."""
        names = [SUMMARY_NAME, LOCK_NAME] + (list(OUTPUT_FOLDERS) if self.pngs else [])
        if self.video is not None:
            names += [f"{self.video[1]}_{kind}{self.video_extension}" for kind in ("composite", "alpha")]
        return names

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
        """Close the videos, move the run's files into the output folder, write ``summary.json``, release the
        folder's lock."""
        for kind, writer in self._videos.items():
            relative = writer.path.relative_to(self.staging)
            self._guarded(relative, lambda path: (writer.close(), check_video(writer.path, writer.frames)))
            self.outputs.append(writer.path.name)
        if self.pngs:
            self.outputs += [f"{name}/" for name in OUTPUT_FOLDERS]
        (self.output_dir / SUMMARY_NAME).unlink(missing_ok=True)  # the folder is unfinished while files move
        self._move_into_place()
        shutil.rmtree(self.staging, ignore_errors=True)
        extra = self.summary_fields() if self.summary_fields is not None else {}
        summary = {**summary, **extra, "frames": self.frames, "outputs": self.outputs}
        try:
            path = write_json(self.output_dir / SUMMARY_NAME, summary)
        except OSError as error:
            raise output_error(error, self.output_dir / SUMMARY_NAME) from None
        self.release()
        return path

    def _move_into_place(self) -> None:
        """Move the staged files into the output folder by renames relative to folder descriptors opened without
        following symbolic links: no move goes through a link, also one made after the check at the start."""
        anchors = {Path("."): os.open(self.output_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)}
        try:
            for relative in self._staged:
                folder = self._anchor(anchors, relative.parent)
                try:
                    os.replace(self.staging / relative, relative.name, dst_dir_fd=folder)
                except OSError as error:
                    raise output_error(error, self.output_dir / relative) from None
        finally:
            for fd in anchors.values():
                os.close(fd)

    def _anchor(self, anchors: dict[Path, int], relative: Path) -> int:
        """Descriptor of the output subfolder ``relative`` (created if needed, never a link), cached in ``anchors``."""
        if relative in anchors:
            return anchors[relative]
        parent = self._anchor(anchors, relative.parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(relative.name, dir_fd=parent)
        try:
            anchors[relative] = os.open(relative.name, _FOLDER_FLAGS, dir_fd=parent)
        except OSError as error:
            if (self.output_dir / relative).is_symlink():
                raise link_error(self.output_dir / relative) from None
            raise output_error(error, self.output_dir / relative) from None
        return anchors[relative]

    def abort(self) -> None:
        """Stop the videos, delete the staging folder and release the lock: the output folder stays as it was
        before the run."""
        for writer in self._videos.values():
            writer.abort()
        self._videos.clear()
        shutil.rmtree(self.staging, ignore_errors=True)
        self.release()

    def release(self) -> None:
        """Release the output folder's lock (idempotent; :meth:`finish` and :meth:`abort` do it)."""
        self.lock.release()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        self.release()


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
        self.summary_fields: Callable[[], dict[str, Any]] | None = None  # as ResultWriter's

    def write(self, name: str, alpha: np.ndarray, foreground: np.ndarray, composite: np.ndarray) -> None:
        self.frames[name] = (alpha, foreground, np.asarray(composite, np.float32))

    def finish(self, summary: dict[str, Any]) -> None:
        extra = self.summary_fields() if self.summary_fields is not None else {}
        self.summary = {**summary, **extra, "frames": len(self.frames), "outputs": []}

    def abort(self) -> None:
        self.frames.clear()

    def __enter__(self) -> MemoryWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
