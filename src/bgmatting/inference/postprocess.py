"""The original test-time clean-up of the network's alpha and foreground.

Rules (public code, test_background-matting_image.py), all on float arrays in [0, 1]:

* F = I where alpha > 0.975 (``matte_from_raw`` does this at the network's resolution; the full-frame mode
  repeats it with the full-resolution image, see :func:`foreground_cleanup`);
* keep only the largest 8-connected component of ``alpha > 0.05``; alpha is zeroed elsewhere;
* F = 0 where alpha <= 0.01.

When ``alpha > 0.05`` has no pixel at all, the original skips the frame and writes nothing; we return an
all-zero alpha instead, so every input frame gets its outputs.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Alpha above which the foreground is the input image itself.
OPAQUE_ALPHA = 0.975
#: Alpha threshold of the connected-component mask.
COMPONENT_ALPHA = 0.05
#: Alpha at or below which the foreground is set to 0.
CLEAR_ALPHA = 0.01


def largest_component_mask(mask: np.ndarray) -> np.ndarray:
    """Boolean H x W: the largest 8-connected component of the boolean ``mask`` (all False if empty)."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    if count == 2:  # one component: the mask itself
        return mask
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def keep_largest_component(alpha: np.ndarray, threshold: float = COMPONENT_ALPHA, *, copy: bool = True) -> np.ndarray:
    """Alpha (H x W float32) with everything outside the largest component of ``alpha > threshold`` set to 0.

    ``copy=False`` writes into ``alpha`` (a float32 array the caller owns) instead of a new array.
    """
    alpha = np.array(alpha, dtype=np.float32, copy=copy or None)
    mask = largest_component_mask(alpha > threshold)
    return _zero_where(alpha, ~mask)


def _zero_where(array: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``array`` (H x W or H x W x C) with 0 where the H x W bool ``where`` holds, in place; returns it."""
    np.copyto(array, 0.0, where=where if array.ndim == where.ndim else where[..., None])
    return array


def foreground_cleanup(
    foreground: np.ndarray,
    alpha: np.ndarray,
    image: np.ndarray | None = None,
    opaque_above: float = OPAQUE_ALPHA,
    clear_at_or_below: float = CLEAR_ALPHA,
    *,
    copy: bool = True,
) -> np.ndarray:
    """F (H x W x 3) with F = ``image`` where alpha > ``opaque_above`` (skipped when ``image`` is None) and
    F = 0 where alpha <= ``clear_at_or_below``. Returns a new float32 array, or with ``copy=False`` writes into
    ``foreground`` (a float32 array the caller owns)."""
    fg = np.array(foreground, dtype=np.float32, copy=copy or None)
    alpha = np.asarray(alpha, dtype=np.float32)
    if image is not None:
        np.copyto(fg, np.asarray(image, dtype=np.float32), where=(alpha > opaque_above)[..., None])
    return _zero_where(fg, alpha <= clear_at_or_below)


def postprocess_matte(
    alpha: np.ndarray,
    foreground: np.ndarray,
    image: np.ndarray | None = None,
    largest_component: bool = True,
    *,
    copy: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The original order: (F = I where opaque), largest component of alpha, then F = 0 where transparent.

    ``alpha`` H x W, ``foreground`` and ``image`` H x W x 3, float in [0, 1]; returns (alpha, foreground) float32,
    new arrays, or with ``copy=False`` the given ones (float32, owned by the caller) written in place.
    """
    alpha = np.array(alpha, dtype=np.float32, copy=copy or None)
    foreground = np.array(foreground, dtype=np.float32, copy=copy or None)
    if image is not None:
        foreground_cleanup(foreground, alpha, image, clear_at_or_below=-1.0, copy=False)
    if largest_component:
        keep_largest_component(alpha, copy=False)
    return alpha, foreground_cleanup(foreground, alpha, copy=False)
