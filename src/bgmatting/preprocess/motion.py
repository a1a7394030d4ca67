"""Motion cues M: grayscale neighbouring frames, 4 x H x W float32 in [0, 1].

For a still image M is 4 copies of gray(I) (as the public code does at test time). For video, M holds the
grayscale frames at offsets -40, -20, +20, +40 around the current frame (the public code's gap of 20).
At clip ends an index is clamped (``boundary="clamp"``, the default here), wrapped around the clip
(``"wrap"``, what the public test script does) or mirrored (``"reflect"``).

Gray uses ITU-R BT.601 luma weights (0.299 R + 0.587 G + 0.114 B), the weights of OpenCV's RGB2GRAY,
everywhere in the project.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from bgmatting.io import to_float

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
DEFAULT_OFFSETS = (-40, -20, 20, 40)
BOUNDARIES = ("clamp", "wrap", "reflect")


def to_gray(image: np.ndarray | torch.Tensor, keep_uint8: bool = False) -> np.ndarray | torch.Tensor:
    """RGB -> BT.601 luma as float in [0, 1].

    numpy: H x W x 3 (uint8, uint16 or float in [0, 1]) -> float32 H x W; an H x W (or H x W x 1) gray input
    is returned as float32 H x W. torch: (B x) 3 x H x W float -> (B x) 1 x H x W.
    ``keep_uint8``: a uint8 H x W x 3 image gives uint8 gray, rounded as OpenCV (and the original code) does;
    a quarter of the memory where many gray frames are buffered.
    """
    if keep_uint8 and isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if isinstance(image, torch.Tensor):
        if image.dim() < 3 or image.shape[-3] != 3:
            raise ValueError(f"to_gray expects a (B x) 3 x H x W tensor, got shape {tuple(image.shape)}")
        weights = torch.tensor(LUMA_WEIGHTS, dtype=image.dtype, device=image.device).view(3, 1, 1)
        return (image * weights).sum(dim=-3, keepdim=True)
    array = to_float(image, "image")
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[2] == 1:
        return np.ascontiguousarray(array[:, :, 0])
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"to_gray expects an H x W x 3 RGB array, got shape {array.shape}")
    return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2GRAY)


def image_motion_cues(image: np.ndarray, frames: int = 4) -> np.ndarray:
    """Motion cues of a still image: ``frames`` copies of gray(image), float32 frames x H x W in [0, 1]."""
    gray = to_gray(image)
    return np.ascontiguousarray(np.broadcast_to(gray, (frames, *gray.shape)), dtype=np.float32)


def motion_frame_indices(
    index: int,
    n_frames: int,
    offsets: Sequence[int] = DEFAULT_OFFSETS,
    boundary: str = "clamp",
) -> list[int]:
    """Frame indices index + offset for each offset, kept inside [0, n_frames) by the boundary rule.

    ``clamp``: to the first/last frame. ``wrap``: modulo n_frames (the public test script's rule).
    ``reflect``: mirrored at the ends without repeating the end frame (-1 -> 1, n -> n - 2).
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if not 0 <= index < n_frames:
        raise ValueError(f"frame index {index} is outside the clip of {n_frames} frames")
    if boundary not in BOUNDARIES:
        raise ValueError(f"unknown boundary {boundary!r}; choose one of {', '.join(BOUNDARIES)}")
    return [_bound(index + int(offset), n_frames, boundary) for offset in offsets]


def _bound(i: int, n: int, boundary: str) -> int:
    if boundary == "clamp":
        return min(max(i, 0), n - 1)
    if boundary == "wrap":
        return i % n
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i %= period
    return i if i < n else period - i


def video_motion_cues(
    frames: Callable[[int], np.ndarray] | Sequence[np.ndarray],
    index: int,
    n_frames: int | None = None,
    offsets: Sequence[int] = DEFAULT_OFFSETS,
    boundary: str = "clamp",
) -> np.ndarray:
    """Motion cues of frame ``index`` of a clip: gray frames at ``offsets``, float32 len(offsets) x H x W.

    ``frames`` is either a function ``get_frame(i) -> RGB H x W x 3`` (uint8 or float in [0, 1]) with
    ``n_frames`` given, or a sequence of such frames (``n_frames`` defaults to its length). Each needed
    frame is fetched once even when several offsets land on it.
    """
    if callable(frames):
        if n_frames is None:
            raise ValueError("n_frames is required when frames is a get_frame function")
        get_frame = frames
    else:
        n_frames = len(frames) if n_frames is None else n_frames
        if n_frames > len(frames):
            raise ValueError(f"n_frames={n_frames} but the sequence holds {len(frames)} frames")
        get_frame = frames.__getitem__
    indices = motion_frame_indices(index, n_frames, offsets, boundary)
    grays: dict[int, np.ndarray] = {}
    for i in indices:
        if i not in grays:
            grays[i] = to_gray(get_frame(i))
    shapes = {g.shape for g in grays.values()}
    if len(shapes) > 1:
        sizes = ", ".join(f"frame {i}: {g.shape}" for i, g in grays.items())
        raise ValueError(f"motion frames differ in size ({sizes})")
    return np.stack([grays[i] for i in indices]).astype(np.float32, copy=False)
