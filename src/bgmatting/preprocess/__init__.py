"""Preprocessors turning captures into network inputs: background alignment, soft segmentation, motion cues.

* ``align_background(image, background, **options) -> (aligned, AlignmentReport)``: AKAZE + RANSAC homography
  (options: the fields of ``AlignOptions``).
* ``get_segmenter(name, **options).segment(image, background) -> S``: "background_difference" (no weights)
  or "deeplabv3" (torchvision); ``postprocess_segmentation`` is the public code's erode/dilate/blur of S.
* ``image_motion_cues`` / ``video_motion_cues`` / ``motion_frame_indices``: motion cues M (4 x H x W).
* ``careful_matte(image, plate) -> (alpha, AlignmentReport)``: a careful classical matte (two-pass alignment with a
  gain fitted outside the subject, a misalignment-tolerant difference ramp, morphology, largest component, feather).
* ``capture``: input frames (images, folders, videos) and captured plates aligned to them (``BackgroundPlates``),
  shared by inference and real-capture preparation.
"""
from __future__ import annotations

from bgmatting.preprocess.align import AlignmentReport, AlignmentWarning, AlignOptions, align_background, fit_gain_bias
from bgmatting.preprocess.classical import careful_matte
from bgmatting.preprocess.motion import (
    image_motion_cues,
    motion_frame_indices,
    to_gray,
    video_motion_cues,
)
from bgmatting.preprocess.segment import (
    BackgroundDifferenceSegmenter,
    DeepLabSegmenter,
    Segmenter,
    SegmenterWeightsError,
    background_difference_matte,
    get_segmenter,
    postprocess_segmentation,
    segmentation_crop_scale,
)

__all__ = [
    "AlignOptions",
    "AlignmentReport",
    "AlignmentWarning",
    "BackgroundDifferenceSegmenter",
    "DeepLabSegmenter",
    "Segmenter",
    "SegmenterWeightsError",
    "align_background",
    "background_difference_matte",
    "careful_matte",
    "fit_gain_bias",
    "get_segmenter",
    "image_motion_cues",
    "motion_frame_indices",
    "postprocess_segmentation",
    "segmentation_crop_scale",
    "to_gray",
    "video_motion_cues",
]
