"""The original test pipeline's crop: a square box around the subject plus 10%, resized to the network size.

The rule (public code, ``get_bbox`` / ``create_bbox``), with rows as y and columns as x:

1. take the pixels where the segmentation is above ``threshold``; ``(top, left)`` is their smallest row and
   column, ``side = max(bottom - top, right - left)`` (extents without the +1);
2. the box spans rows ``[top - 0.1·side, top + 1.1·side]`` and columns ``[left - 0.1·side, left + 1.1·side]``:
   a square anchored at the subject's top-left corner (not centred), so for a tall subject the square
   extends to the right of it;
3. the box is clipped to the frame and rounded (numpy half-to-even on top, left, height, width).

One deliberate difference: the public code clips the end to ``H - 1`` / ``W - 1`` and so always drops the
last row and column of the frame; a subject cut by the bottom edge (most portraits) would get a one-pixel
line of zero alpha. We clip to ``H`` / ``W``. Everywhere else the box equals the original's.

The crop is resized to ``size x size`` with bilinear interpolation (aspect ratio not kept, as in the
original); :func:`uncrop` resizes the network output back to the box and pastes it into a zero frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Fraction of the subject's size added on each side (the original's "+10%").
CROP_MARGIN = 0.1


@dataclass(frozen=True)
class CropBox:
    """A crop rectangle in frame pixels: rows ``top:top+height``, columns ``left:left+width``."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    @classmethod
    def full_frame(cls, height: int, width: int) -> CropBox:
        return cls(0, 0, height, width)


def subject_box(
    segmentation: np.ndarray, threshold: float = 0.0, margin: float = CROP_MARGIN
) -> CropBox | None:
    """The original's square crop box around the pixels of ``segmentation`` (H x W) above ``threshold``.

    Returns None when no pixel is above the threshold (no subject). The original thresholds at 0 (any
    non-zero pixel of its binary DeepLab mask counts).
    """
    segmentation = np.asarray(segmentation)
    if segmentation.ndim != 2:
        raise ValueError(f"segmentation must be H x W, got shape {segmentation.shape}")
    rows, cols = np.nonzero(segmentation > threshold)
    if rows.size == 0:
        return None
    frame_h, frame_w = segmentation.shape
    top0, left0 = int(rows.min()), int(cols.min())
    side = max(int(rows.max()) - top0, int(cols.max()) - left0)
    top = max(top0 - margin * side, 0.0)
    left = max(left0 - margin * side, 0.0)
    bottom = min(top0 + (1.0 + margin) * side, float(frame_h))
    right = min(left0 + (1.0 + margin) * side, float(frame_w))
    t, l, h, w = (int(v) for v in np.around([top, left, bottom - top, right - left]))
    h = min(max(h, 1), frame_h - t)
    w = min(max(w, 1), frame_w - l)
    return CropBox(t, l, h, w)


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an H x W (x C) array to ``height x width`` (no-op when already that size; a single
    trailing channel is kept). The dtype is kept."""
    if image.shape[:2] == (height, width):
        return image
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if image.ndim == 3 and resized.ndim == 2:  # cv2 drops a single trailing channel
        resized = resized[:, :, None]
    return resized


def crop_to_network(array: np.ndarray, box: CropBox, size: int | tuple[int, int]) -> np.ndarray:
    """The network's input crop: cut ``box`` out of ``array`` (H x W or H x W x C) and resize it bilinearly (as
    the original, whatever the scale) to ``size`` (side, or (h, w)). Returns float32 (h x w or h x w x C).
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    rows, cols = box.slices
    return resize_to(np.ascontiguousarray(array[rows, cols], dtype=np.float32), out_h, out_w)


def resize_to_box(array: np.ndarray, box: CropBox) -> np.ndarray:
    """Resize an h x w (x C) network-size array bilinearly to the box's size. Returns float32."""
    return resize_to(np.asarray(array, dtype=np.float32), box.height, box.width)


def paste(array: np.ndarray, box: CropBox, frame_shape: tuple[int, int]) -> np.ndarray:
    """A zero frame of ``frame_shape`` (H, W) with the box-sized ``array`` (height x width [x C]) at ``box``."""
    array = np.asarray(array, dtype=np.float32)
    if array.shape[:2] != (box.height, box.width):
        raise ValueError(f"array is {array.shape[:2]} but the box is {(box.height, box.width)}")
    out = np.zeros(tuple(frame_shape) + array.shape[2:], np.float32)
    rows, cols = box.slices
    out[rows, cols] = array
    return out


def uncrop(array: np.ndarray, box: CropBox, frame_shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`crop_to_network`: resize ``array`` (h x w [x C]) to the box and paste it into zeros.

    ``frame_shape`` is (H, W) of the frame; pixels outside the box are 0. Returns float32.
    """
    return paste(resize_to_box(array, box), box, frame_shape)


def processing_size(height: int, width: int, long_side: int | None, multiple: int = 4) -> tuple[int, int]:
    """(h, w) for the full-frame mode: the frame scaled so its long side is ``long_side`` (None or 0:
    native size), each side rounded to the nearest multiple of ``multiple`` (at least ``multiple``)."""
    scale = 1.0 if not long_side else long_side / max(height, width)
    h = max(multiple, int(height * scale / multiple + 0.5) * multiple)  # nearest, halves up
    w = max(multiple, int(width * scale / multiple + 0.5) * multiple)
    return h, w
