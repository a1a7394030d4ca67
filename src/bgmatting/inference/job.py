"""One inference run from its options: what ``python -m bgmatting.infer`` and :func:`bgmatting.matte` both call.

:class:`InferenceJob` holds every option (paths, or arrays for library callers); :func:`run_job` checks them
all before any output is touched (:func:`check_job`), opens the inputs, loads the model and runs
:func:`~bgmatting.inference.runner.matte_sequence` into an output folder
(:class:`~bgmatting.inference.sinks.ResultWriter`) or into memory (:class:`~bgmatting.inference.sinks.MemoryWriter`).

Checks: paths are not empty strings (``""`` would mean the current folder), the device exists here and the
precision suits it, motion offsets are non-zero and distinct (and as many as the network's motion frames, when it
sees them), a clip's frames have one size and its video codec and container can be encoded (a writer opened on a
scratch file in the system's temporary folder). A video whose container declares more frames than can be decoded
is reported in the summary (``video_frames``: declared and decoded, and a line in ``warnings``).

Defaults: an input folder in the public code's layout (``0001_img.png`` next to ``0001_back.png`` and
``0001_masksDL.png``) is its own plate folder when no background is given, and its masks are the segmentations
when neither a segmentation folder nor a segmenter is given. Every user error is a
:class:`bgmatting.io.DataError` with one line naming the file or value.
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

from bgmatting.io import DataError, image_pixel_limit, list_images, pixel_limit_for_memory
from bgmatting.inference.pipeline import MATTING_MODES, Matter
from bgmatting.inference.runner import matte_sequence
from bgmatting.inference.sinks import (
    DEFAULT_FOURCC,
    MemoryWriter,
    ResultWriter,
    check_video_encoder,
    check_video_extension,
    video_fourcc,
)
from bgmatting.inference.sources import Segmentations, TargetBackgrounds
from bgmatting.inference.temporal import DEFAULT_TEMPORAL, TEMPORAL_FILTERS, TemporalOptions
from bgmatting.models import CheckpointError, load_matting_model
from bgmatting.models.refiner import REFINE_MODES
from bgmatting.models.starter import STARTER_NOTE, is_starter, resolve_checkpoint, starter_path
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
    check_given,
    is_original_layout,
    is_video_file,
    open_input,
)
from bgmatting.preprocess.motion import DEFAULT_OFFSETS
from bgmatting.preprocess.segment import SEGMENTERS, get_segmenter
from bgmatting.runtime import resolve_device, resolve_precision

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
    ``checkpoint``: a checkpoint path, or a ready :class:`MattingModel` / generator; None or ``"starter"``: the
    starter weights the package ships (:mod:`bgmatting.models.starter`). ``output``: a folder, or None
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
    mode: str | None = None  # None: refine for a checkpoint with a refiner, else original (default_mode)
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
    for name, value, choices in (("mode", job.mode or MATTING_MODES[0], MATTING_MODES),
                                 ("alignment", job.alignment, ALIGNMENTS),
                                 ("exposure", job.exposure, EXPOSURES), ("temporal", job.temporal, TEMPORAL_FILTERS),
                                 ("refine mode", job.refine_mode, REFINE_MODES)):
        if value not in choices:
            raise DataError(f"{name} {value!r} is not one of {', '.join(choices)}")
    if job.segmenter is not None and job.segmenter not in SEGMENTERS:
        raise DataError(f"segmenter {job.segmenter!r} is not one of {', '.join(sorted(SEGMENTERS))}")


def _check_numbers(job: InferenceJob) -> None:
    if not isinstance(job.batch_size, int) or job.batch_size < 1:
        raise DataError(f"batch size must be a positive integer, got {job.batch_size}")
    if job.mode in (None, "original") and (not job.size or job.size < 0 or job.size % 4):
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


def _check_offsets(job: InferenceJob) -> None:
    offsets = list(job.motion_offsets)
    if not offsets or not all(isinstance(v, (int, np.integer)) and v != 0 for v in offsets) \
            or len(set(offsets)) != len(offsets):
        raise DataError(f"motion offsets {','.join(str(v) for v in offsets) or '(none)'}: must be non-zero, "
                        "distinct integers (frames before and after the current one, e.g. -40,-20,20,40)")


#: Path options that an empty string would silently turn into the current folder.
_PATH_OPTIONS = ("input", "background", "checkpoint", "output", "target_background", "segmentation",
                 "segmenter_weights")


def _check_paths(job: InferenceJob) -> None:
    for name in _PATH_OPTIONS:
        check_given(getattr(job, name), name.replace("_", " "))


def _check_runtime(job: InferenceJob) -> None:
    """The device exists on this machine and the precision suits it."""
    name = str(job.device)
    try:
        device = resolve_device(name)
    except RuntimeError:
        raise DataError(f"device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DataError(f"device {name!r}: no CUDA GPU is available on this machine; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DataError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type != "cpu":
        raise DataError(f"device {name!r}: only cpu and cuda devices are supported")
    try:
        resolve_precision(device, job.precision)
    except ValueError as error:
        raise DataError(str(error)) from None


def _encodes_video(job: InferenceJob) -> bool:
    """The run encodes videos: a clip (a video file or a sequence) written into an output folder."""
    return job.output is not None and (job.sequence or (_is_path(job.input) and is_video_file(job.input)))


def _check_video(job: InferenceJob) -> None:
    """The fourcc's form and the extension always; that OpenCV can encode them only when the run will."""
    if _encodes_video(job):
        check_video_encoder(job.video_codec, job.video_extension)
    else:
        video_fourcc(job.video_codec)
        check_video_extension(job.video_extension)


def check_options(job: InferenceJob) -> None:
    """The job's choices (mode, alignment, ...), numbers (size, batch size, ...), motion offsets, device and
    precision; a DataError naming the first bad one."""
    _check_choices(job)
    _check_numbers(job)
    _check_offsets(job)
    _check_runtime(job)


def check_job(job: InferenceJob) -> None:
    """Every option that can be checked without reading the inputs; a DataError naming the first bad one."""
    _check_paths(job)
    check_options(job)
    _check_video(job)
    if job.target_background is not None and job.target_color is not None:
        raise DataError("give a target background or a target colour, not both")
    segmenter = job.segmenter or DEFAULT_SEGMENTER
    if job.segmenter_weights is not None and "weights_path" not in inspect.signature(SEGMENTERS[segmenter]).parameters:
        raise DataError(f"{job.segmenter_weights}: segmenter weights are for the deeplabv3 segmenter "
                        f"(the segmenter is {segmenter})")
    if job.segmentation is not None and job.segmenter is not None:
        raise DataError("give precomputed segmentations or a segmenter, not both")
    if is_starter(job.checkpoint):
        starter_path()  # a CheckpointError when this installation has no starter weights
    elif _is_path(job.checkpoint) and not Path(job.checkpoint).is_file():
        raise DataError(f"{job.checkpoint}: checkpoint does not exist")
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
    """Frames, plates, segmentations and targets of the job, each checked (DataError naming the file); the frames
    of a sequence must have one size."""
    if isinstance(job.input, np.ndarray):
        if job.input.ndim == 4:
            raise DataError(f"image: an array of shape {job.input.shape} holds {len(job.input)} frames; give one "
                            "H x W x 3 image, or a list of them")
        frames = ArrayFrames([job.input])
        name = "image"
    elif isinstance(job.input, (list, tuple)):
        frames = ArrayFrames(job.input)
        name = "image"
    else:
        frames = open_input(job.input)
        name = Path(job.input).stem
    clip = isinstance(frames, VideoFrames) or job.sequence
    if clip and not isinstance(frames, VideoFrames):
        frames.check_one_size()
    return _Inputs(frames, clip, _captured(job, clip), _segmentations(job, clip), _targets(job), name)


# ------------------------------------------------------------------------------------------------- the model
def default_memory_limit(device: torch.device) -> int:
    """:data:`DEFAULT_MEMORY_SHARE` of the GPU's memory (CUDA) or of the machine's RAM, in bytes."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(DEFAULT_MEMORY_SHARE * total)


def require_refiner(model: torch.nn.Module, source: Any, option: str = "--mode refine") -> None:
    """A CheckpointError naming ``source`` and the ``option`` that asked for refine mode when ``model`` has no
    refiner."""
    if getattr(model, "refiner", None) is None:
        raise CheckpointError(f"{source}: {option} needs a checkpoint with a refiner (trained with "
                              "model=quickstart_refine or model=paper_refine); this one holds a generator only")


def default_mode(model: torch.nn.Module) -> str:
    """``infer``'s mode when none is given: ``refine`` (the whole frame at its resolution: the base at a long side of
    512, the refiner on the 80 000 highest-error pixels) for a checkpoint with a refiner, ``original`` (the paper's
    512 crop) for one without. Chosen by measurement on the capture set at 256, 512 and 1080p (docs/CAPTURES.md)."""
    return "refine" if getattr(model, "refiner", None) is not None else "original"


def load_model(job: InferenceJob) -> torch.nn.Module:
    """The job's network: the given one, or the checkpoint's (with its refiner, if it has one); in refine mode with
    the job's refine options (mode, pixel budget, downsample ratio; the others as stored). A job without a mode
    gets :func:`default_mode`'s (and a note saying so)."""
    if is_starter(job.checkpoint):
        job.notes.append(STARTER_NOTE)
    checkpoint = resolve_checkpoint(job.checkpoint)
    model = checkpoint if isinstance(checkpoint, torch.nn.Module) else load_matting_model(Path(checkpoint))
    if job.mode is None:
        job.mode = default_mode(model)
        job.notes.append(f"mode: {job.mode} (the default for a checkpoint {'with' if job.mode == 'refine' else 'without'}"
                         " a refiner; --mode chooses)")
    if job.mode != "refine":
        return model
    require_refiner(model, job.checkpoint)
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


def check_offsets_fit(job: InferenceJob, matter: Matter, clip: bool) -> None:
    """A clip's motion cues are one per offset: as many as the network's motion frames, when it sees them."""
    frames = matter.model.motion_frames
    if clip and matter.uses_motion and len(job.motion_offsets) != frames:
        raise DataError(f"motion offsets {','.join(str(v) for v in job.motion_offsets)}: this checkpoint's network "
                        f"takes {frames} motion frames; give {frames} offsets")


# --------------------------------------------------------------------------------------------------- the run
def decoding_report(frames: ImageFrames | VideoFrames | ArrayFrames) -> dict[str, Any]:
    """Summary fields once the frames were read: ``warnings`` (lines for the caller; empty when all is well) and,
    for a video read to its end, ``video_frames``: the frame count its container declares (None when it declares
    none) and the frames decoded; fewer decoded than declared is a warning."""
    if not isinstance(frames, VideoFrames) or frames.decoded is None:
        return {"warnings": []}
    declared, decoded = frames.frame_count_hint or None, frames.decoded
    lines = []
    if declared is not None and decoded < declared:
        lines.append(f"{frames.path}: the video declares {declared} frames but only {decoded} could be decoded "
                        f"(a truncated or damaged file?); the outputs hold those {decoded}")
    return {"video_frames": {"declared": declared, "decoded": decoded}, "warnings": lines}


def run_job(job: InferenceJob, writer: ResultWriter | MemoryWriter | None = None) -> dict[str, Any]:
    """Check, open, load and run (module docstring); returns the summary (also in ``summary.json``), with
    ``notes`` (what the defaults chose) and ``warnings`` (what the caller should be told)."""
    check_job(job)
    job.notes.clear()
    if job.max_memory_gb is None:
        return _run(job, writer)
    budget = pixel_limit_for_memory(job.max_memory_gb * 2**30)  # decoding to float32 within the budget too
    with image_pixel_limit(budget, hint=f"what --max-memory-gb {job.max_memory_gb:g} allows for decoding it"):
        return _run(job, writer)


def _run(job: InferenceJob, writer: ResultWriter | MemoryWriter | None) -> dict[str, Any]:
    """:func:`run_job` after its checks."""
    inputs = open_inputs(job)
    matter = load_matter(job, inputs.segmentations)
    check_offsets_fit(job, matter, inputs.clip)
    own = writer is None
    if own:
        if job.output is None:
            raise DataError("no output folder given")
        video = (inputs.frames.fps or job.fps, inputs.name) if inputs.clip else None
        writer = ResultWriter(job.output, pngs=not inputs.clip or job.png_sequences, video=video,
                              video_extension=job.video_extension, fourcc=job.video_codec)
    writer.summary_fields = lambda: decoding_report(inputs.frames)
    try:
        summary = matte_sequence(
            matter, inputs.frames, BackgroundPlates(inputs.captured, job.alignment, exposure=job.exposure),
            inputs.targets, writer, segmentations=inputs.segmentations, clip=inputs.clip,
            motion_offsets=job.motion_offsets, temporal=TemporalOptions(job.temporal), batch_size=job.batch_size,
            total=len(inputs.frames) or None, progress=job.progress,
            source_name=str(job.input) if _is_path(job.input) else inputs.name,
        )
    finally:
        if own:
            writer.release()  # the output folder's lock, also when the run failed before it started writing
    summary.update(decoding_report(inputs.frames))
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
