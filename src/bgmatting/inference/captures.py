"""Capture sets matted end to end, exactly as ``python -m bgmatting.infer`` mattes a user's files, for scoring.

:class:`CapturePipeline` holds the inference options a capture set is scored with (``mode`` and the refine
options; every other option is ``infer``'s default: automatic plate alignment, exposure correction, the
background-difference segmenter on the aligned plate, the original's post-process, for clips motion cues and
temporal smoothing). :meth:`CapturePipeline.matte` runs :func:`~bgmatting.inference.job.run_job` on a unit's JPEG
files (a still's photo, or a clip's frame folder as a sequence, with its plate) into memory;
:meth:`CapturePipeline.plates` gives, without a model, the plate as that run aligns it and the segmenter's S on
it (the inputs of the baselines). :func:`capture_test_set` makes a capture set carrying its pipeline: the
``_target_`` of a capture set in ``evaluation.sets``, since evaluation itself never imports inference.

The model is used where it is (its device); its training mode, precision and refine options are restored after
each unit, so that training's validation can call this mid-run.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bgmatting.io import to_float
from bgmatting.data.synthetic.capture_set import CaptureSet, CaptureUnit, capture_dataset
from bgmatting.data.synthetic.capture_set.build import N_CLIPS, N_FRAMES, N_STILLS, SEED
from bgmatting.inference.job import DEFAULT_SEGMENTER, InferenceJob, check_options, run_job
from bgmatting.inference.sinks import MemoryWriter
from bgmatting.models import MattingModel
from bgmatting.preprocess.capture import BackgroundPlates, CapturedBackgrounds, open_input
from bgmatting.preprocess.segment import get_segmenter

PathLike = str | os.PathLike


@dataclass
class MattedUnit:
    """What the pipeline made of a unit, per frame in order: ``alphas`` (H x W), ``foregrounds`` and
    ``composites`` (H x W x 3, over infer's default green), float32 in [0, 1]; ``plates``: infer's per-frame
    record of what it did with the plate (``PlateRecord.as_dict``); ``seconds``: the run's wall time."""

    alphas: list[np.ndarray]
    foregrounds: list[np.ndarray]
    composites: list[np.ndarray]
    plates: list[dict]
    seconds: float


@contextlib.contextmanager
def _model_state_kept(model: MattingModel) -> Iterator[None]:
    """Restore the model's training mode, precision and refine options after the block (the pipeline sets them)."""
    training, precision = model.training, model.precision
    refine = model.refine_options if model.refiner is not None else None
    try:
        yield
    finally:
        model.train(training)
        model.set_precision(precision)
        if refine is not None:
            model.set_refine_options(**refine)


@dataclass(frozen=True)
class CapturePipeline:
    """``infer``'s options for scoring a capture set: ``mode`` (original / full / refine), ``size`` (the network
    side in original mode, the processing long side in full mode), ``refine_mode``, ``refine_pixels`` and
    ``downsample_ratio`` (refine mode; None: infer's automatic ratio), ``precision``; all others are ``infer``'s
    defaults (:class:`InferenceJob`)."""

    mode: str | None = None  # None: infer's default (refine with a refiner, else original)
    size: int | None = 512
    refine_mode: str = "sampling"
    refine_pixels: int = 80_000
    precision: str = "auto"
    downsample_ratio: float | None = None

    def __post_init__(self) -> None:
        check_options(self.job(None))  # a DataError naming a bad option, before any unit is matted

    def job(self, unit: CaptureUnit | None, model: MattingModel | None = None) -> InferenceJob:
        """The :class:`InferenceJob` of ``infer --input <unit's photo or frame folder> --background <plate>``
        (``unit`` None: the options alone)."""
        device = str(next(model.parameters()).device) if model is not None else "auto"
        paths = {"input": str(unit.input_path), "background": str(unit.plate_path)} if unit is not None else {"input": ""}
        return InferenceJob(**paths, checkpoint=model, mode=self.mode, size=self.size, refine_mode=self.refine_mode,
                            refine_pixels=self.refine_pixels, downsample_ratio=self.downsample_ratio,
                            sequence=unit is not None and unit.is_clip,
                            device=device, precision=self.precision, progress=False)

    def matte(self, model: MattingModel, unit: CaptureUnit) -> MattedUnit:
        """Run ``infer`` on the unit with ``model`` into memory (its warnings, e.g. about the plate, are muted)."""
        memory = MemoryWriter()
        start = time.perf_counter()
        with _model_state_kept(model), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = run_job(self.job(unit, model), memory)
        frames = list(memory.frames.values())
        return MattedUnit([f[0] for f in frames], [f[1] for f in frames], [f[2] for f in frames],
                          list(summary["plates"]), time.perf_counter() - start)

    def plates(self, unit: CaptureUnit) -> list[tuple[np.ndarray, np.ndarray]]:
        """(plate H x W x 3 as ``infer`` aligns and exposure-corrects it, S H x W: ``infer``'s segmenter on that
        plate, with its post-process) per frame; no model needed. The same code and options as :meth:`matte`'s
        run, so the same plates (alignment is deterministic)."""
        job = self.job(unit)
        plates = BackgroundPlates(CapturedBackgrounds(job.background, by_order=job.sequence), job.alignment,
                                  exposure=job.exposure)
        segmenter = get_segmenter(job.segmenter or DEFAULT_SEGMENTER)
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for frame in open_input(job.input):
                image = to_float(frame.image, frame.path or job.input)
                plate = plates.for_frame(frame, image)
                out.append((plate, segmenter(image, plate)))
        return out


def capture_test_set(size: int = 256, *, n_stills: int = N_STILLS, n_clips: int = N_CLIPS, n_frames: int = N_FRAMES,
                     seed: int = SEED, cache_dir: PathLike | None = None, workers: int = 2, mode: str | None = None,
                     network_size: int | None = 512, refine_mode: str = "sampling", refine_pixels: int = 80_000,
                     precision: str = "auto", downsample_ratio: float | None = None) -> CaptureSet:
    """The capture set at ``size`` (:func:`bgmatting.data.synthetic.capture_set.capture_dataset`: generated on
    first use) with the :class:`CapturePipeline` of ``mode``, ``network_size`` (infer's ``--size``),
    ``refine_mode``, ``refine_pixels``, ``downsample_ratio`` and ``precision``: ready to be scored end to end."""
    pipeline = CapturePipeline(mode, network_size, refine_mode, refine_pixels, precision, downsample_ratio)
    return capture_dataset(size, n_stills=n_stills, n_clips=n_clips, n_frames=n_frames, seed=seed,
                           cache_dir=cache_dir, workers=workers, pipeline=pipeline)
