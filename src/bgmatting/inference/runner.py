"""Running a :class:`Matter` over a whole input: backgrounds per frame, motion cues, batching, temporal
smoothing, outputs, speed.

:func:`matte_sequence` is what ``python -m bgmatting.infer`` calls; it takes ready objects (frames, captured
backgrounds, target backgrounds, a writer), not command-line options.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from bgmatting.data.io import DataError, to_float
from bgmatting.inference.pipeline import Matter, MatteResult, NonFiniteOutputError
from bgmatting.inference.sinks import ResultWriter
from bgmatting.inference.sources import Segmentations, TargetBackgrounds
from bgmatting.inference.temporal import TemporalFilter, TemporalOptions
from bgmatting.preprocess.capture import BackgroundPlates, Frame
from bgmatting.preprocess.motion import DEFAULT_OFFSETS, to_gray, video_motion_cues

def frames_with_motion(
    frames: Iterable[Frame], offsets: Sequence[int] = DEFAULT_OFFSETS
) -> Iterator[tuple[Frame, np.ndarray]]:
    """Yield (frame, motion cues K x H x W float32 in [0, 1]) in order, cue k being the gray frame at
    ``index + offsets[k]`` clamped to the clip (:func:`bgmatting.preprocess.motion.video_motion_cues`).

    Streams: only the gray frames within the offsets' reach and the frames still waiting for their future
    neighbours are held in memory.
    """
    ahead = max(max(offsets), 0)
    behind = max(-min(offsets), 0)
    gray: dict[int, np.ndarray] = {}
    pending: deque[Frame] = deque()

    def cues(frame: Frame, count: int) -> np.ndarray:
        motion = video_motion_cues(gray.__getitem__, frame.index, count, offsets, boundary="clamp")
        for old in [k for k in gray if k < frame.index + 1 - behind]:
            del gray[old]
        return motion

    count = 0
    for frame in frames:
        gray[frame.index] = to_gray(frame.image, keep_uint8=True)  # uint8 as the original; a small buffer
        pending.append(frame)
        count = frame.index + 1
        while pending and pending[0].index + ahead < count:
            first = pending.popleft()
            yield first, cues(first, count)
    while pending:
        first = pending.popleft()
        yield first, cues(first, count)


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _matte_batch(matter: Matter, batch: list[tuple[Frame, np.ndarray | None]], plates: BackgroundPlates,
                 segmentations: Segmentations | None,
                 source_name: str) -> tuple[float, list[tuple[Frame, np.ndarray, MatteResult]]]:
    """Matte one batch of (frame, motion cues): the matting seconds (network and clean-up), and (frame, float
    image, result) per frame. A non-finite network output is an error naming the frame."""
    images = [to_float(frame.image, frame.path or source_name) for frame, _ in batch]
    masks = [segmentations.for_frame(frame) if segmentations else None for frame, _ in batch]
    backgrounds = [plates.for_frame(frame, image, mask) for (frame, _), image, mask in zip(batch, images, masks)]
    tick = time.perf_counter()
    try:
        results = matter.matte_batch(images, backgrounds, masks, [motion for _, motion in batch])
    except NonFiniteOutputError as error:
        frame = batch[error.index][0]
        where = f"{frame.path}" if frame.path is not None else f"{source_name} frame {frame.name}"
        raise NonFiniteOutputError(f"{where}: {error}", error.index) from None
    seconds = time.perf_counter() - tick
    return seconds, [(frame, image, result) for (frame, _), image, result in zip(batch, images, results)]


def _write(writer: ResultWriter, targets: TargetBackgrounds, frame: Frame, result: MatteResult) -> None:
    height, width = frame.shape
    composite = result.composite(targets.for_frame(frame.index, height, width))
    writer.write(frame.name, result.alpha, result.foreground, composite)


def matte_sequence(
    matter: Matter,
    frames: Iterable[Frame],
    plates: BackgroundPlates,
    targets: TargetBackgrounds,
    writer: ResultWriter,
    *,
    segmentations: Segmentations | None = None,
    clip: bool = False,
    motion_offsets: Sequence[int] = DEFAULT_OFFSETS,
    temporal: TemporalOptions | None = None,
    batch_size: int = 1,
    total: int | None = None,
    progress: bool = True,
    source_name: str = "input",
) -> dict[str, Any]:
    """Matte every frame, write its outputs, and return a summary (frames, seconds, frames/s, what was done with
    the plate per frame).

    ``clip``: the frames are consecutive video frames; motion cues then come from neighbouring frames at
    ``motion_offsets`` (skipped when the generator cannot see them, see :attr:`Matter.uses_motion`), else each
    frame gets 4 x gray(I); ``temporal`` smooths a clip's alpha (:mod:`bgmatting.inference.temporal`; ignored for
    stills). ``writer.finish`` (summary.json) is called only when every frame succeeded.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if clip and matter.uses_motion:
        stream: Iterable[tuple[Frame, np.ndarray | None]] = frames_with_motion(frames, motion_offsets)
    else:
        stream = ((frame, None) for frame in frames)
    smoothing = TemporalFilter(temporal if clip and temporal is not None else TemporalOptions("none"))
    done = 0
    bar = tqdm(total=total or None, unit="frame", desc=source_name, disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    network_seconds = 0.0
    with writer:
        for batch in _batches(stream, batch_size):
            seconds, matted = _matte_batch(matter, batch, plates, segmentations, source_name)
            network_seconds += seconds
            for frame, image, result in matted:
                for ready_frame, ready in smoothing.push(frame, image, result):
                    _write(writer, targets, ready_frame, ready)
            done += len(batch)
            bar.update(len(batch))
            bar.set_postfix(fps=f"{done / (time.perf_counter() - start):.2f}")
        for ready_frame, ready in smoothing.flush():
            _write(writer, targets, ready_frame, ready)
        bar.close()
        targets.close()
        if done == 0:
            raise DataError(f"{source_name}: no frames to process")
        elapsed = time.perf_counter() - start
        summary = {
            "input": source_name,
            "frames": done,
            "seconds": round(elapsed, 3),
            "frames_per_second": round(done / elapsed, 3),
            "matting_seconds": round(network_seconds, 3),
            "mode": matter.mode,
            "size": matter.size,
            "precision": matter.precision.name,
            "device": str(matter.device),
            "batch_size": batch_size,
            "alignment": plates.alignment,
            "exposure": plates.exposure,
            "temporal": smoothing.options.kind,
            "target_background": targets.describe(),
            "plate_summary": plates.summary(),
            "plates": [record.as_dict() for record in plates.records],
        }
        writer.finish(summary)
    return summary
