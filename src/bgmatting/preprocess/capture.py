"""Captures: input frames (an image, a folder of images, a video) and the captured background plates, at the
frames' size and aligned to them. Shared by inference (``python -m bgmatting.infer``) and real-capture
preparation (``python -m bgmatting.prepare_real``), so both read and align the same way.

Frames carry RGB pixels as read: uint8 from videos (kept small while buffered for motion cues), float32
[0, 1] from image files; :func:`bgmatting.data.io.to_float` turns either into float32 H x W x 3 in [0, 1].
Plates are float32 H x W x 3 in [0, 1]. Every error is a :class:`bgmatting.data.io.DataError` naming the file.

Alignment of a plate to the frames (``ALIGNMENTS``): ``"once"`` (the default, :data:`DEFAULT_ALIGNMENT`: a
fixed camera; each plate is aligned to the first frame that uses it, then reused), ``"per_frame"`` (hand-held:
aligned to every frame) or ``"none"`` (already registered: only resized to the frames' size).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bgmatting.data.io import IMAGE_EXTENSIONS, DataError, list_images, read_image
from bgmatting.preprocess.align import AlignmentReport, AlignOptions, align_background

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")

ALIGNMENTS = ("none", "once", "per_frame")
#: How plates are aligned unless asked otherwise, by inference and real-capture preparation alike.
DEFAULT_ALIGNMENT = "once"

#: Name suffixes of the public code's sample layout: ``0001_img.png`` with ``0001_back.png`` and ``0001_masksDL.png``.
ORIGINAL_IMAGE_SUFFIX = "_img"
ORIGINAL_BACKGROUND_SUFFIX = "_back"
ORIGINAL_SEGMENTATION_SUFFIX = "_masksDL"

#: A plate whose aspect ratio differs from the frames' by more than this is not stretched without alignment.
ASPECT_TOLERANCE = 0.02


def choose_alignment(*, handheld: bool = False, align_once: bool = False, no_align: bool = False) -> str:
    """The alignment a command's flags ask for (at most one set): per frame, once, none, else the default."""
    if handheld + align_once + no_align > 1:
        raise ValueError("choose at most one of hand-held (per-frame), align-once and no-align")
    if handheld:
        return "per_frame"
    if no_align:
        return "none"
    return "once" if align_once else DEFAULT_ALIGNMENT


# ----------------------------------------------------------------------------------------------- input frames
@dataclass
class Frame:
    """One input frame: position in its sequence, a name for output files, RGB pixels, and its file if any."""

    index: int
    name: str
    image: np.ndarray  # H x W x 3 RGB, uint8 or float32 in [0, 1]
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


def is_video_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _check_selection(every: int, max_frames: int | None) -> None:
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")


class ImageFrames:
    """Frames from image files (one image, or a folder's images in sorted order). ``fps`` is None."""

    fps: float | None = None

    def __init__(self, paths: Sequence[Path], name: str) -> None:
        if not paths:
            raise DataError(f"{name}: no input images")
        self.paths = [Path(p) for p in paths]
        self.name = name

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            yield Frame(index, path.stem, read_image(path), path)


class VideoFrames:
    """Frames of a video file, decoded in order with OpenCV (RGB uint8), named ``00000``, ``00001`` ...

    ``every``: keep every N-th decoded frame; ``max_frames``: stop after that many kept frames. Frames are
    numbered (and named) by their position among the kept ones.
    """

    def __init__(self, path: str | os.PathLike, every: int = 1, max_frames: int | None = None) -> None:
        _check_selection(every, max_frames)
        self.path = Path(path)
        self.every, self.max_frames = every, max_frames
        if not self.path.is_file():
            raise DataError(f"{self.path}: video file does not exist")
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise DataError(f"{self.path}: cannot open video (unreadable or unsupported format)")
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0
            self.frame_count_hint = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            ok, first = capture.read()
        finally:
            capture.release()
        if not ok or first is None:
            raise DataError(f"{self.path}: video has no readable frames")
        self.height, self.width = first.shape[:2]
        self.name = self.path.stem

    def __len__(self) -> int:
        """The number of frames kept from the container's frame count (may be approximate for some formats)."""
        kept = -(-self.frame_count_hint // self.every)
        return min(kept, self.max_frames) if self.max_frames else kept

    def __iter__(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.path))
        index = decoded = 0
        try:
            while self.max_frames is None or index < self.max_frames:
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    break
                decoded += 1
                if (decoded - 1) % self.every:
                    continue
                yield Frame(index, f"{index:05d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise DataError(f"{self.path}: video has no readable frames")


def open_input(path: str | os.PathLike, every: int = 1, max_frames: int | None = None) -> ImageFrames | VideoFrames:
    """An image file, a folder of images, or a video file; every ``every``-th frame, at most ``max_frames``."""
    _check_selection(every, max_frames)
    path = Path(path)
    if path.is_dir():
        return ImageFrames(list_images(path)[::every][:max_frames], str(path))
    if not path.exists():
        raise DataError(f"{path}: input does not exist")
    if is_video_file(path):
        return VideoFrames(path, every, max_frames)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageFrames([path], str(path))
    raise DataError(
        f"{path}: unknown input type; expected an image ({', '.join(IMAGE_EXTENSIONS)}), a folder of images, "
        f"or a video ({', '.join(VIDEO_EXTENSIONS)})"
    )


# ---------------------------------------------------------------------------------- per-frame companion files
def _companion_names(frame_name: str, suffix: str) -> list[str]:
    names = [frame_name]
    if frame_name.endswith(ORIGINAL_IMAGE_SUFFIX):
        names.append(frame_name[: -len(ORIGINAL_IMAGE_SUFFIX)] + suffix)
    return names


class CompanionFiles:
    """Per-frame files in a folder (captured backgrounds or segmentations), matched to frames by name.

    A frame named ``x`` takes ``x.<ext>``; a frame named ``x_img`` also takes the public code's ``x_back`` /
    ``x_masksDL`` (``suffix``). When no frame name matches any file and ``by_order`` is set (frames of a video),
    the i-th file in sorted order belongs to frame i.
    """

    def __init__(self, folder: str | os.PathLike, suffix: str, what: str, by_order: bool = False) -> None:
        self.folder = Path(folder)
        self.files = list_images(self.folder)
        self.by_stem = {p.stem: p for p in self.files}
        self.suffix = suffix
        self.what = what
        self.by_order = by_order
        self._use_order: bool | None = None

    def path_for(self, frame: Frame) -> Path:
        for name in _companion_names(frame.name, self.suffix):
            if name in self.by_stem:
                self._use_order = False
                return self.by_stem[name]
        if self.by_order and self._use_order is not False:
            self._use_order = True
            if frame.index < len(self.files):
                return self.files[frame.index]
            raise DataError(
                f"{self.folder}: has {len(self.files)} {self.what} files but the input has more frames "
                f"(frame {frame.index} needs one)"
            )
        expected = " or ".join(f"{n}.png" for n in _companion_names(frame.name, self.suffix))
        raise DataError(f"{self.folder}: no {self.what} for frame {frame.name!r} (expected {expected})")


# ------------------------------------------------------------------------------------------------- plates
class CapturedBackgrounds:
    """The captured background plate: one image for every frame (a clip), or a folder matched per frame."""

    def __init__(self, path: str | os.PathLike, by_order: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: captured background does not exist")
        self.single: np.ndarray | None = None
        self.folder: CompanionFiles | None = None
        if self.path.is_dir():
            self.folder = CompanionFiles(self.path, ORIGINAL_BACKGROUND_SUFFIX, "captured background", by_order)
        else:
            self.single = read_image(self.path)

    @property
    def is_single(self) -> bool:
        """One plate for every frame (a clip's plate), not a folder of plates."""
        return self.single is not None

    def for_frame(self, frame: Frame) -> tuple[np.ndarray, Path]:
        """(background H' x W' x 3 float32, its file) for ``frame``; sizes are reconciled by the caller."""
        if self.single is not None:
            return self.single, self.path
        path = self.folder.path_for(frame)
        return read_image(path), path


def fit_plate(plate: np.ndarray, shape: tuple[int, int], path: str | os.PathLike,
              tolerance: float = ASPECT_TOLERANCE) -> np.ndarray:
    """A plate of another size than the frames (H, W) resized to them (area when shrinking, else bilinear),
    with a warning; a plate of another aspect ratio (beyond ``tolerance``) is a DataError naming ``path``."""
    h, w = shape
    ph, pw = plate.shape[:2]
    if (ph, pw) == (h, w):
        return plate
    if abs((pw / ph) / (w / h) - 1.0) > tolerance:
        raise DataError(f"{path}: background is {pw}x{ph} but the frames are {w}x{h} (other aspect ratio); "
                        "align it to the frames (not --no-align) or crop it to the frames' framing")
    warnings.warn(f"{path}: captured background is {pw}x{ph} but the frames are {w}x{h}; resizing it",
                  stacklevel=3)
    interp = cv2.INTER_AREA if ph > h else cv2.INTER_LINEAR
    return cv2.resize(plate, (w, h), interpolation=interp)


class BackgroundPlates:
    """The captured background for each frame, at the frame's size, aligned to it as ``alignment`` says
    (module docstring); ``options`` configure :func:`bgmatting.preprocess.align.align_background`. Aligned
    plates are aligned at their own size (the homography absorbs the scale); unaligned ones go through
    :func:`fit_plate`. ``reports`` collects the alignment reports."""

    def __init__(self, captured: CapturedBackgrounds, alignment: str = DEFAULT_ALIGNMENT,
                 options: AlignOptions | None = None) -> None:
        if alignment not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
        self.captured = captured
        self.alignment = alignment
        self.options = options or AlignOptions()
        self._aligned: dict[Path, np.ndarray] = {}
        self.reports: list[AlignmentReport] = []

    def for_frame(self, frame: Frame, image: np.ndarray, subject_mask: np.ndarray | None = None) -> np.ndarray:
        """Background H x W x 3 float32 for ``frame`` (``image`` is its float RGB). ``subject_mask`` (H x W, e.g. a
        segmentation) keeps the subject's features out of the alignment."""
        background, path = self.captured.for_frame(frame)
        if self.alignment == "once" and path in self._aligned:
            return self._aligned[path]
        if self.alignment == "none":
            return fit_plate(background, image.shape[:2], path)
        aligned, report = align_background(image, background, subject_mask=subject_mask, options=self.options)
        self.reports.append(report)
        if self.alignment == "once":
            self._aligned[path] = aligned
        return aligned
