"""Matting your own captures: the per-frame pipeline, its pieces, and whole-input runs.

``Matter(model, mode=..., size=..., segmenter=..., precision=..., device=...)`` mattes frames given as
arrays (``matte`` / ``matte_batch`` -> :class:`Matte`); ``composite_over`` puts the subject over a new
background; ``matte_sequence`` runs a Matter over images or a video, smooths a clip over time
(:class:`TemporalFilter`) and writes the outputs; ``run_job`` does all of it from an :class:`InferenceJob`
(what ``python -m bgmatting.infer`` and ``bgmatting.matte`` call). Frames and plates come from
:mod:`bgmatting.preprocess.capture` (re-exported here).
"""
from __future__ import annotations

from bgmatting.inference.crop import CropBox, crop_to_network, processing_size, subject_box, uncrop
from bgmatting.inference.job import InferenceJob, run_job
from bgmatting.inference.pipeline import MATTING_MODES, Matte, Matter, MemoryLimitError, composite_over
from bgmatting.inference.postprocess import foreground_cleanup, keep_largest_component, postprocess_matte
from bgmatting.inference.runner import frames_with_motion, matte_sequence
from bgmatting.inference.sinks import AtomicVideoWriter, MemoryWriter, ResultWriter
from bgmatting.inference.sources import Segmentations, TargetBackgrounds
from bgmatting.inference.temporal import TEMPORAL_FILTERS, TemporalFilter, TemporalOptions
from bgmatting.preprocess.capture import (  # the capture reader, shared with real-capture preparation
    ArrayFrames,
    BackgroundPlates,
    CapturedBackgrounds,
    Frame,
    ImageFrames,
    PlateRecord,
    VideoFrames,
    open_input,
)

__all__ = [
    "MATTING_MODES",
    "TEMPORAL_FILTERS",
    "ArrayFrames",
    "AtomicVideoWriter",
    "BackgroundPlates",
    "CapturedBackgrounds",
    "CropBox",
    "Frame",
    "ImageFrames",
    "InferenceJob",
    "Matte",
    "Matter",
    "MemoryLimitError",
    "MemoryWriter",
    "PlateRecord",
    "ResultWriter",
    "Segmentations",
    "TargetBackgrounds",
    "TemporalFilter",
    "TemporalOptions",
    "VideoFrames",
    "composite_over",
    "crop_to_network",
    "foreground_cleanup",
    "frames_with_motion",
    "keep_largest_component",
    "matte_sequence",
    "open_input",
    "postprocess_matte",
    "processing_size",
    "run_job",
    "subject_box",
    "uncrop",
]
