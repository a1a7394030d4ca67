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
    mask = np.asarray(mask, dtype=bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def keep_largest_component(alpha: np.ndarray, threshold: float = COMPONENT_ALPHA) -> np.ndarray:
    """Alpha (H x W float) with everything outside the largest component of ``alpha > threshold`` set to 0."""
    alpha = np.asarray(alpha, dtype=np.float32)
    return alpha * largest_component_mask(alpha > threshold)


def foreground_cleanup(
    foreground: np.ndarray,
    alpha: np.ndarray,
    image: np.ndarray | None = None,
    opaque_above: float = OPAQUE_ALPHA,
    clear_at_or_below: float = CLEAR_ALPHA,
) -> np.ndarray:
    """F (H x W x 3) with F = ``image`` where alpha > ``opaque_above`` (skipped when ``image`` is None) and
    F = 0 where alpha <= ``clear_at_or_below``. Returns a new float32 array."""
    fg = np.array(foreground, dtype=np.float32, copy=True)
    alpha = np.asarray(alpha, dtype=np.float32)
    if image is not None:
        opaque = alpha > opaque_above
        fg[opaque] = np.asarray(image, dtype=np.float32)[opaque]
    fg[alpha <= clear_at_or_below] = 0.0
    return fg


def postprocess_matte(
    alpha: np.ndarray,
    foreground: np.ndarray,
    image: np.ndarray | None = None,
    largest_component: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The original order: (F = I where opaque), largest component of alpha, then F = 0 where transparent.

    ``alpha`` H x W, ``foreground`` and ``image`` H x W x 3, float in [0, 1]; returns (alpha, foreground) float32.
    """
    alpha = np.asarray(alpha, dtype=np.float32)
    if image is not None:
        foreground = foreground_cleanup(foreground, alpha, image, clear_at_or_below=-1.0)
    if largest_component:
        alpha = keep_largest_component(alpha)
    return alpha, foreground_cleanup(foreground, alpha)
