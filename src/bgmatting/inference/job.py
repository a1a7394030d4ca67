"""One inference run from its options: what ``python -m bgmatting.infer`` and :func:`bgmatting.matte` both call.

:class:`InferenceJob` holds every option (paths, or arrays for library callers); :func:`run_job` checks them
all before any output is touched (:func:`check_job`), opens the inputs, loads the model and runs
:func:`~bgmatting.inference.runner.matte_sequence` into an output folder
(:class:`~bgmatting.inference.sinks.ResultWriter`) or into memory (:class:`~bgmatting.inference.sinks.MemoryWriter`).

Defaults: an input folder in the public code's layout (``0001_img.png`` next to ``0001_back.png`` and
``0001_masksDL.png``) is its own plate folder when no background is given, and its masks are the segmentations
when neither a segmentation folder nor a segmenter is given. Every user error is a
:class:`bgmatting.data.io.DataError` with one line naming the file or value.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bgmatting.data.io import DataError, list_images
from bgmatting.inference.pipeline import MODES, Matter
from bgmatting.inference.runner import matte_sequence
from bgmatting.inference.sinks import DEFAULT_FOURCC, MemoryWriter, ResultWriter
from bgmatting.inference.sources import Segmentations, TargetBackgrounds
from bgmatting.inference.temporal import DEFAULT_TEMPORAL, TEMPORAL_FILTERS, TemporalOptions
from bgmatting.models import CheckpointError, load_matting_model
from bgmatting.models.refiner import MODES as REFINE_MODES
from bgmatting.preprocess.capture import (
    ALIGNMENTS,
    DEFAULT_ALIGNMENT,
    EXPOSURES,
    ORIGINAL_IMAGE_SUFFIX,
    ORIGINAL_SEGMENTATION_SUFFIX,
    ArrayFrames,
    BackgroundPlates,
    CapturedBackgrounds,
    ImageFrames,
    PlateRecord,
    VideoFrames,
    is_original_layout,
    open_input,
)
from bgmatting.preprocess.motion import DEFAULT_OFFSETS
from bgmatting.preprocess.segment import SEGMENTERS, get_segmenter

DEFAULT_SEGMENTER = "background_difference"
#: Share of the machine's memory (RAM, or the GPU's) a run may plan to use unless told otherwise.
DEFAULT_MEMORY_SHARE = 0.75

Source = str | os.PathLike | np.ndarray
Input = Source | Sequence[np.ndarray]


@dataclass
class InferenceJob:
    """Every option of one inference run (``python -m bgmatting.infer --help`` explains each).

    ``input``: an image, a folder of images or a video (path), an H x W x 3 array, or a list of them (frames of a
    clip with ``sequence=True``, else stills). ``background``: the
    captured plate (path, folder of plates, or array); None for an input folder in the original layout.
    ``checkpoint``: a checkpoint path, or a ready :class:`MattingModel` / generator. ``output``: a folder, or None
    to keep the results in memory (``run_job`` then needs a :class:`MemoryWriter`). ``target_background``: path
    or array; ``target_color``: (R, G, B) 0..255. ``segmenter``: a name of ``SEGMENTERS`` (None: the default, or
    the original layout's masks). ``max_memory_gb``: None for :data:`DEFAULT_MEMORY_SHARE` of the device's memory.
    """

    input: Input
    background: Source | None = None
    checkpoint: str | os.PathLike | torch.nn.Module | None = None
    output: str | os.PathLike | None = None
    target_background: Source | None = None
    target_color: tuple[int, int, int] | None = None
    mode: str = "original"
    size: int | None = 512
    refine_mode: str = "sampling"
    refine_pixels: int = 80_000
    downsample_ratio: float | None = None
    alignment: str = DEFAULT_ALIGNMENT
    exposure: str = "auto"
    segmenter: str | None = None
    segmenter_weights: str | os.PathLike | None = None
    segmentation: str | os.PathLike | None = None
    sequence: bool = False
    fps: float = 25.0
    motion_offsets: Sequence[int] = DEFAULT_OFFSETS
    temporal: str = DEFAULT_TEMPORAL
    png_sequences: bool = False
    video_codec: str = DEFAULT_FOURCC
    video_extension: str = ".mp4"
    largest_component: bool = True
    batch_size: int = 1
    device: str = "auto"
    precision: str = "auto"
    max_memory_gb: float | None = None
    progress: bool = True
    notes: list[str] = field(default_factory=list)  # what the defaults chose, for the console


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _check_choices(job: InferenceJob) -> None:
    for name, value, choices in (("mode", job.mode, MODES), ("alignment", job.alignment, ALIGNMENTS),
                                 ("exposure", job.exposure, EXPOSURES), ("temporal", job.temporal, TEMPORAL_FILTERS),
                                 ("refine mode", job.refine_mode, REFINE_MODES)):
        if value not in choices:
            raise DataError(f"{name} {value!r} is not one of {', '.join(choices)}")
    if job.segmenter is not None and job.segmenter not in SEGMENTERS:
        raise DataError(f"segmenter {job.segmenter!r} is not one of {', '.join(sorted(SEGMENTERS))}")


def _check_numbers(job: InferenceJob) -> None:
    if not isinstance(job.batch_size, int) or job.batch_size < 1:
        raise DataError(f"batch size must be a positive integer, got {job.batch_size}")
    if job.mode == "original" and (not job.size or job.size < 0 or job.size % 4):
        raise DataError(f"size must be a positive multiple of 4 in original mode (the network side), got {job.size}")
    if job.size is not None and job.size < 0:
        raise DataError(f"size must be 0 (native) or positive, got {job.size}")
    if job.downsample_ratio is not None and not 0.0 < job.downsample_ratio <= 1.0:
        raise DataError(f"downsample ratio must be in (0, 1], got {job.downsample_ratio}")
    if not isinstance(job.refine_pixels, int) or job.refine_pixels < 0:
        raise DataError(f"refine pixels must be an integer >= 0, got {job.refine_pixels}")
    if not job.fps > 0:
        raise DataError(f"fps must be positive, got {job.fps}")
    if job.max_memory_gb is not None and not job.max_memory_gb > 0:
        raise DataError(f"max memory must be positive (GB), got {job.max_memory_gb}")
    if not job.video_extension.startswith("."):
        raise DataError(f"video extension must start with '.', got {job.video_extension!r}")


def check_job(job: InferenceJob) -> None:
    """Every option that can be checked without reading the inputs; a DataError naming the first bad one."""
    _check_choices(job)
    _check_numbers(job)
    if job.target_background is not None and job.target_color is not None:
        raise DataError("give a target background or a target colour, not both")
    segmenter = job.segmenter or DEFAULT_SEGMENTER
    if job.segmenter_weights is not None and "weights_path" not in inspect.signature(SEGMENTERS[segmenter]).parameters:
        raise DataError(f"{job.segmenter_weights}: segmenter weights are for the deeplabv3 segmenter "
                        f"(the segmenter is {segmenter})")
    if job.segmentation is not None and job.segmenter is not None:
        raise DataError("give precomputed segmentations or a segmenter, not both")
    if _is_path(job.checkpoint) and not Path(job.checkpoint).is_file():
        raise DataError(f"{job.checkpoint}: checkpoint does not exist")
    if job.checkpoint is None:
        raise DataError("no checkpoint given")
    if job.output is not None and Path(job.output).exists() and not Path(job.output).is_dir():
        raise DataError(f"{job.output}: the output path is a file, not a folder")


# ------------------------------------------------------------------------------------------------ the inputs
@dataclass
class _Inputs:
    frames: ImageFrames | VideoFrames | ArrayFrames
    clip: bool
    captured: CapturedBackgrounds
    segmentations: Segmentations | None
    targets: TargetBackgrounds
    name: str


def _original_masks(job: InferenceJob) -> Path | None:
    """The input folder, when it holds a ``*_masksDL`` mask for every ``*_img`` input (original layout)."""
    if not (_is_path(job.input) and Path(job.input).is_dir() and is_original_layout(job.input)):
        return None
    stems = {p.stem for p in list_images(job.input)}
    inputs = [s for s in stems if s.endswith(ORIGINAL_IMAGE_SUFFIX)]
    masks = {s[: -len(ORIGINAL_IMAGE_SUFFIX)] + ORIGINAL_SEGMENTATION_SUFFIX for s in inputs}
    return Path(job.input) if masks <= stems else None


def _captured(job: InferenceJob, clip: bool) -> CapturedBackgrounds:
    if isinstance(job.background, np.ndarray):
        return CapturedBackgrounds.from_array(job.background)
    if job.background is not None:
        return CapturedBackgrounds(job.background, by_order=clip)
    if _is_path(job.input) and Path(job.input).is_dir() and is_original_layout(job.input):
        job.notes.append(f"plates: the *_back files of {job.input} (original layout)")
        return CapturedBackgrounds(job.input)
    raise DataError(f"{job.input}: no captured background given (and the input is not a folder in the original "
                    "layout, 0001_img.png with 0001_back.png)")


def _segmentations(job: InferenceJob, clip: bool) -> Segmentations | None:
    if job.segmentation is not None:
        return Segmentations(job.segmentation, by_order=clip)
    masks = _original_masks(job) if job.segmenter is None else None
    if masks is not None:
        job.notes.append(f"segmentation: the *_masksDL files of {masks} (original layout)")
        return Segmentations(masks)
    return None


def _targets(job: InferenceJob) -> TargetBackgrounds:
    if isinstance(job.target_background, np.ndarray):
        return TargetBackgrounds.from_array(job.target_background)
    return TargetBackgrounds(job.target_background, job.target_color)


def open_inputs(job: InferenceJob) -> _Inputs:
    """Frames, plates, segmentations and targets of the job, each checked (DataError naming the file)."""
    if isinstance(job.input, np.ndarray):
        frames = ArrayFrames([job.input])
        name = "image"
    elif isinstance(job.input, (list, tuple)):
        frames = ArrayFrames(job.input)
        name = "image"
    else:
        frames = open_input(job.input)
        name = Path(job.input).stem
    clip = isinstance(frames, VideoFrames) or job.sequence
    return _Inputs(frames, clip, _captured(job, clip), _segmentations(job, clip), _targets(job), name)


# ------------------------------------------------------------------------------------------------- the model
def default_memory_limit(device: torch.device) -> int:
    """:data:`DEFAULT_MEMORY_SHARE` of the GPU's memory (CUDA) or of the machine's RAM, in bytes."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(DEFAULT_MEMORY_SHARE * total)


def load_model(job: InferenceJob) -> torch.nn.Module:
    """The job's network: the given one, or the checkpoint's (with its refiner, if it has one); in refine mode with
    the job's refine options (mode, pixel budget, downsample ratio; the others as stored)."""
    model = job.checkpoint if isinstance(job.checkpoint, torch.nn.Module) else load_matting_model(Path(job.checkpoint))
    if job.mode != "refine":
        return model
    if getattr(model, "refiner", None) is None:
        raise CheckpointError(f"{job.checkpoint}: --mode refine needs a checkpoint with a refiner (trained with "
                              "model=quickstart_refine or model=paper_refine); this one holds a generator only")
    return model.set_refine_options(**dict(model.refine_options, downsample_ratio=job.downsample_ratio,
                                           refine_mode=job.refine_mode, refine_pixels=job.refine_pixels))


def load_matter(job: InferenceJob, segmentations: Segmentations | None = None) -> Matter:
    """The job's :class:`Matter`: its model (:func:`load_model`) and, unless segmentations are given, its
    segmenter (raw masks: the pipeline post-processes them on the network crop)."""
    model = load_model(job)
    matter = Matter(model, mode=job.mode, size=job.size, precision=job.precision, device=job.device,
                    largest_component=job.largest_component)
    limit = job.max_memory_gb * 2**30 if job.max_memory_gb is not None else default_memory_limit(matter.device)
    matter.memory_limit = int(limit)
    if segmentations is None:
        options = {"weights_path": job.segmenter_weights} if job.segmenter_weights is not None else {}
        matter.segmenter = get_segmenter(job.segmenter or DEFAULT_SEGMENTER, postprocess=False,
                                         device=matter.device, **options)
    return matter


# --------------------------------------------------------------------------------------------------- the run
def run_job(job: InferenceJob, writer: ResultWriter | MemoryWriter | None = None) -> dict[str, Any]:
    """Check, open, load and run (module docstring); returns the summary (also in ``summary.json``)."""
    check_job(job)
    job.notes.clear()
    inputs = open_inputs(job)
    matter = load_matter(job, inputs.segmentations)
    if writer is None:
        if job.output is None:
            raise DataError("no output folder given")
        video = (inputs.frames.fps or job.fps, inputs.name) if inputs.clip else None
        writer = ResultWriter(job.output, pngs=not inputs.clip or job.png_sequences, video=video,
                              video_extension=job.video_extension, fourcc=job.video_codec)
    summary = matte_sequence(
        matter, inputs.frames, BackgroundPlates(inputs.captured, job.alignment, exposure=job.exposure),
        inputs.targets, writer, segmentations=inputs.segmentations, clip=inputs.clip,
        motion_offsets=job.motion_offsets, temporal=TemporalOptions(job.temporal), batch_size=job.batch_size,
        total=len(inputs.frames) or None, progress=job.progress,
        source_name=str(job.input) if _is_path(job.input) else inputs.name,
    )
    summary["notes"] = list(job.notes)
    return summary


def _range(names: list[str]) -> str:
    return f"frame {names[0]}" if len(names) == 1 else f"frames {names[0]}-{names[-1]} ({len(names)})"


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.1f} px" if abs(high - low) < 0.05 else f"{low:.1f}-{high:.1f} px"


def plate_lines(records: Sequence[PlateRecord | dict], limit: int = 20) -> list[str]:
    """What was done with the plate, per run of frames with the same action, for the console."""
    rows = [r if isinstance(r, dict) else r.as_dict() for r in records]
    lines = []
    for action, group in groupby(rows, key=lambda r: r["action"]):
        group = list(group)
        details = []
        measured = [r["misalignment_px"] for r in group if r.get("misalignment_px") is not None]
        if measured:
            details.append(f"off by {_span(measured)}")
        residual = [r["residual_px"] for r in group if r.get("residual_px") is not None]
        if residual:
            details.append(f"then {_span(residual)}")
        corrected = sum("exposure" in r for r in group)
        if corrected:
            details.append(f"exposure corrected on {corrected}")
        notes = sorted({r["note"] for r in group if r.get("note") and action == "fell_back"})
        details += notes[:1]
        suffix = f" ({'; '.join(details)})" if details else ""
        lines.append(f"  {_range([r['frame'] for r in group])}: {action}{suffix}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"  ... {len(lines) - limit} more (summary.json lists every frame)"]
    return lines
