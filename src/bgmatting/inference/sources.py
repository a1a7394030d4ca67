"""Where frames come from: input frames (image, folder, video), captured backgrounds, segmentations and
target backgrounds.

Frames carry RGB pixels as read: uint8 from videos (kept small while buffered for motion cues), float32
[0, 1] from image files. :func:`as_float` turns either into float32 H x W x 3 in [0, 1].
Every error is a :class:`bgmatting.data.io.DataError` naming the file.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bgmatting.data.io import IMAGE_EXTENSIONS, DataError, list_images, read_alpha, read_image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")

#: The original's green-screen colour (RGB, 0..255).
GREEN_SCREEN = (120, 255, 155)

#: Name suffixes of the public code's sample layout: ``0001_img.png`` with ``0001_back.png`` and ``0001_masksDL.png``.
ORIGINAL_IMAGE_SUFFIX = "_img"
ORIGINAL_BACKGROUND_SUFFIX = "_back"
ORIGINAL_SEGMENTATION_SUFFIX = "_masksDL"


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


def as_float(image: np.ndarray) -> np.ndarray:
    """uint8 or float RGB -> float32 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) * np.float32(1.0 / 255.0)
    return np.asarray(image, dtype=np.float32)


def is_video_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an H x W (x C) array to ``height x width`` (no-op when already that size)."""
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


# ----------------------------------------------------------------------------------------------- input frames
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
    """Frames of a video file, decoded in order with OpenCV (RGB uint8), named ``00000``, ``00001`` ..."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
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
        """The container's frame count (may be approximate for some formats)."""
        return self.frame_count_hint

    def __iter__(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    break
                yield Frame(index, f"{index:05d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise DataError(f"{self.path}: video has no readable frames")


def open_input(path: str | os.PathLike) -> ImageFrames | VideoFrames:
    """An image file, a folder of images, or a video file."""
    path = Path(path)
    if path.is_dir():
        return ImageFrames(list_images(path), str(path))
    if not path.exists():
        raise DataError(f"{path}: input does not exist")
    if is_video_file(path):
        return VideoFrames(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageFrames([path], str(path))
    raise DataError(
        f"{path}: unknown input type; expected an image ({', '.join(IMAGE_EXTENSIONS)}), a folder of images, "
        f"or a video ({', '.join(VIDEO_EXTENSIONS)})"
    )


# ---------------------------------------------------------------------------------- per-frame companion files
def _index_by_stem(files: Sequence[Path]) -> dict[str, Path]:
    return {p.stem: p for p in files}


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
        self.by_stem = _index_by_stem(self.files)
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
        return self.single is not None

    def for_frame(self, frame: Frame) -> tuple[np.ndarray, Path]:
        """(background H' x W' x 3 float32, its file) for ``frame``; sizes are reconciled by the caller."""
        if self.single is not None:
            return self.single, self.path
        path = self.folder.path_for(frame)
        return read_image(path), path


class Segmentations:
    """Precomputed soft segmentations (H x W in [0, 1]) in a folder, matched per frame."""

    def __init__(self, folder: str | os.PathLike, by_order: bool = False) -> None:
        self.files = CompanionFiles(folder, ORIGINAL_SEGMENTATION_SUFFIX, "segmentation", by_order)

    def for_frame(self, frame: Frame) -> np.ndarray:
        path = self.files.path_for(frame)
        segmentation = read_alpha(path)
        height, width = frame.shape
        if segmentation.shape != (height, width):
            warnings.warn(
                f"{path}: segmentation is {segmentation.shape[1]}x{segmentation.shape[0]} but the frame is "
                f"{width}x{height}; resizing it",
                stacklevel=2,
            )
            segmentation = resize_to(segmentation, height, width)
        return segmentation


# ------------------------------------------------------------------------------------------ target backgrounds
def parse_colour(text: str) -> tuple[int, int, int]:
    """``"R,G,B"`` with 0..255 integers -> tuple; ValueError otherwise."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ValueError(f"colour must be R,G,B with integers in 0..255, got {text!r}")
    return values  # type: ignore[return-value]


class TargetBackgrounds:
    """What the subject is composited over, per frame, resized (stretched, as the original) to the frame.

    Kinds: a solid colour (default: the original's green ``(120, 255, 155)``), one image, a folder of images
    (frame i takes the i-th image, cycling), or a video (frame i takes video frame i, looping).
    """

    def __init__(self, path: str | os.PathLike | None = None, colour: tuple[int, int, int] | None = None) -> None:
        if path is not None and colour is not None:
            raise ValueError("give a target background path or a colour, not both")
        self.path = Path(path) if path is not None else None
        self.colour = np.asarray(colour if colour is not None else GREEN_SCREEN, np.float32) / 255.0
        self._image: np.ndarray | None = None
        self._files: list[Path] | None = None
        self._video: cv2.VideoCapture | None = None
        self._video_index = -1
        self._video_frame: np.ndarray | None = None
        self._video_length: int | None = None
        if self.path is None:
            return
        if self.path.is_dir():
            self._files = list_images(self.path)
        elif not self.path.exists():
            raise DataError(f"{self.path}: target background does not exist")
        elif is_video_file(self.path):
            VideoFrames(self.path)  # validates: opens and has a frame
        else:
            self._image = read_image(self.path)

    def describe(self) -> str:
        if self.path is None:
            return "colour " + ",".join(str(int(round(c * 255))) for c in self.colour)
        return str(self.path)

    def for_frame(self, index: int, height: int, width: int) -> np.ndarray:
        """Target background for frame ``index`` as float32 ``height x width x 3`` in [0, 1]."""
        if self.path is None:
            return np.broadcast_to(self.colour, (height, width, 3)).copy()
        if self._image is not None:
            image = self._image
        elif self._files is not None:
            image = read_image(self._files[index % len(self._files)])
        else:
            image = as_float(self._video_frame_at(index))
        return np.ascontiguousarray(resize_to(image, height, width), dtype=np.float32)

    def _video_frame_at(self, index: int) -> np.ndarray:
        if self._video_length:
            index %= self._video_length  # loop: frame i of a shorter video is frame i mod its length
        if self._video is None or index < self._video_index:
            self._open_video()
        while self._video_index < index:
            ok, bgr = self._video.read()
            if not ok:
                if self._video_index < 0:
                    raise DataError(f"{self.path}: video has no readable frames")
                self._video_length = self._video_index + 1
                return self._video_frame_at(index)
            self._video_index += 1
            self._video_frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return self._video_frame

    def _open_video(self) -> None:
        self.close()
        self._video = cv2.VideoCapture(str(self.path))
        if not self._video.isOpened():
            raise DataError(f"{self.path}: cannot open target background video")
        self._video_index = -1

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
