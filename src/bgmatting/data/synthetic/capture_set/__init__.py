"""The capture set: phone-like captures with known truth, scored end to end through the inference pipeline.

Every set the project learns on is a clean composite (B' = the true background with a gamma change), where a plain
difference matte is near perfect. Here each capture is what a phone stores: a photo I (the subject over a
photographed scene, with the subject's soft shadow, sensor noise, JPEG) and a plate B' of the scene shot from
another pose (a homography plus 0.5-1.5 px of parallax no homography removes), with another exposure and white
balance, its own noise and JPEG (:mod:`bgmatting.data.nuisances`). The truth (alpha, foreground, trimap) never
contains the shadow. Stills, and short clips from a fixed and a hand-held camera (for dtSSD), at one frame size
per set (256 and 512: 4:3 photos; 1080: 1920 x 1080), generated on first use into the cache, seeded.

Scenes reuse the held-out photo set's photographs, people, strands and horse (``photo_set``), with the capture
set's own seeds and a wider view. docs/CAPTURES.md describes the set, its metrics and baselines.

Submodules: ``scene`` (one scene), ``capture`` (a still or a clip with its nuisances), ``build`` (sizes, files,
cache), ``dataset`` (:class:`CaptureSet`: units read back).
"""
from __future__ import annotations

from .build import CAPTURE_SIZES, ensure_capture_set, frame_shape
from .dataset import CaptureFrame, CaptureSet, CaptureUnit, capture_dataset

__all__ = ["CAPTURE_SIZES", "CaptureFrame", "CaptureSet", "CaptureUnit", "capture_dataset", "ensure_capture_set",
           "frame_shape"]
