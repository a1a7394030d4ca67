"""What inference reads besides the capture (frames and plates: :mod:`bgmatting.preprocess.capture`):
precomputed segmentations matched per frame, and the target backgrounds the subject is composited over.

Every error is a :class:`bgmatting.io.DataError` naming the file.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from bgmatting.io import DataError, check_video_size, list_images, read_alpha, read_image, to_float
from bgmatting.inference.crop import resize_to
from bgmatting.preprocess.capture import (
    ORIGINAL_SEGMENTATION_SUFFIX,
    CompanionFiles,
    Frame,
    VideoFrames,
    check_rgb,
    is_video_file,
)

#: The original's green-screen colour (RGB, 0..255).
GREEN_SCREEN = (120, 255, 155)


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

    @classmethod
    def from_array(cls, image: np.ndarray) -> TargetBackgrounds:
        """One target image given as pixels (H x W x 3 RGB, uint8 or float in [0, 1])."""
        check_rgb(image, "target background")
        targets = cls()
        targets.path, targets._image = Path("<array>"), to_float(np.asarray(image), "target background")
        return targets

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
            image = to_float(self._video_frame_at(index), self.path)
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
        check_video_size(self._video, self.path)
        self._video_index = -1

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
