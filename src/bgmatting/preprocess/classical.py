"""A careful classical matte from a photo and its captured plate, with no learning: what a practitioner would
build by hand, and the strongest baseline the capture set scores the network against.

Steps (every one reused from :mod:`bgmatting.preprocess.align` and :mod:`bgmatting.preprocess.segment`):

1. align the plate to the photo: AKAZE features, the best 15 % of the matches, RANSAC homography, refit
   (:func:`~bgmatting.preprocess.align.align_background`), with a per-channel gain and bias fitted robustly;
2. a rough subject mask from that plate (the background-difference segmenter's cleaned binary mask), then align
   again with the subject's features left out and the gain and bias fitted outside the subject;
3. the background-difference matte (:func:`~bgmatting.preprocess.segment.background_difference_matte`) on the
   aligned plate: a difference that tolerates ``tolerance_px`` of residual misalignment (parallax the homography
   leaves), shadows suppressed, a ramp between 0.5 and 2 noise thresholds, morphological open and close, the
   largest component, small holes filled, 1 inside the eroded mask and 0 outside the dilated one;
4. where the moved plate does not cover the frame (a border strip; the alignment fills it from the photo, so
   nothing differs there), the matte of the nearest covered pixel: a subject leaving the frame's edge stays whole;
5. a slight Gaussian feather (``feather_px``).

Images are RGB H x W x 3, uint8 or float in [0, 1]; the plate may have another size. The matte is float32 H x W
in [0, 1].
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from bgmatting.preprocess.align import AlignmentReport, AlignOptions, align_background
from bgmatting.io import to_float
from bgmatting.preprocess.segment import BackgroundDifferenceSegmenter, background_difference_matte

#: Frame pixels (longer side) per pixel of tolerated misalignment and of feather sigma: 1 px up to 1535 px,
#: 2 px at 1920 x 1080.
_PIXELS_PER_UNIT = 1024


def careful_matte(image: np.ndarray, plate: np.ndarray, *, tolerance_px: int | None = None,
                  feather_px: float | None = None, options: AlignOptions | None = None) -> tuple[np.ndarray,
                                                                                               AlignmentReport]:
    """(alpha H x W float32 in [0, 1], the final alignment's report) of the careful classical matte (module
    docstring). ``tolerance_px`` / ``feather_px``: None scales 1 px and 0.5 px with the frame (1 per 1024 px of
    its longer side, rounded, at least 1 for the tolerance); ``options``: the alignment's."""
    image = to_float(image, "image")
    scale = max(image.shape[:2]) / _PIXELS_PER_UNIT
    radius = max(1, round(scale)) if tolerance_px is None else int(tolerance_px)
    feather = 0.5 * max(1.0, scale) if feather_px is None else float(feather_px)
    first, report = align_background(image, plate, options=options, photometric=True)
    rough = BackgroundDifferenceSegmenter(tolerance_px=radius).binary_mask(image, to_float(first, "plate"))
    aligned, second = align_background(image, plate, subject_mask=rough, options=options, photometric=True)
    if not (second.fell_back and not report.fell_back):
        first, report = aligned, second
    alpha = background_difference_matte(image, to_float(first, "plate"), tolerance_px=radius)
    if report.valid_mask is not None and not report.valid_mask.all():
        nearest = ndimage.distance_transform_edt(~report.valid_mask, return_distances=False, return_indices=True)
        alpha = alpha[nearest[0], nearest[1]]
    if feather > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), feather)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32), report
