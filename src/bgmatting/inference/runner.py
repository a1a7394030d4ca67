"""Running a :class:`Matter` over a whole input: backgrounds per frame, motion cues, batching, temporal
smoothing, outputs, speed.

:func:`matte_sequence` is what ``python -m bgmatting.infer`` calls; it takes ready objects (frames, captured
backgrounds, target backgrounds, a writer), not command-line options.
"""
from __future__ import annotations

import contextvars
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from bgmatting.io import DataError, to_float
from bgmatting.inference.pipeline import Matte, Matter
from bgmatting.models import NonFiniteOutputError
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


class _Loaded(NamedTuple):
    """One batch read and prepared for the network: its frames, float images H x W x 3 and the matter's prepared
    inputs (:meth:`Matter.prepare_batch`)."""

    frames: list[Frame]
    images: list[np.ndarray]
    prepared: list[Any]


def _load_batch(matter: Matter, batch: list[tuple[Frame, np.ndarray | None]], plates: BackgroundPlates,
                segmentations: Segmentations | None, source_name: str) -> _Loaded:
    """Everything of one batch that comes before the network (float images, plates aligned as ``plates`` decides,
    segmentations, the matter's preparation), so that it can run ahead on the reader thread."""
    images = [to_float(frame.image, frame.path or source_name) for frame, _ in batch]
    masks = [segmentations.for_frame(frame) if segmentations else None for frame, _ in batch]
    backgrounds = [plates.for_frame(frame, image, mask) for (frame, _), image, mask in zip(batch, images, masks)]
    if matter.segmenter is not None:
        masks = [matter.segmenter(image, background) if mask is None else mask
                 for image, background, mask in zip(images, backgrounds, masks)]
    prepared = matter.prepare_batch(images, backgrounds, masks, [motion for _, motion in batch])
    return _Loaded([frame for frame, _ in batch], images, prepared)


def _run_network(matter: Matter, loaded: _Loaded,
                 source_name: str) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    """The network on one loaded batch: its seconds and the raw outputs per frame. A non-finite output is an error
    naming the frame."""
    tick = time.perf_counter()
    try:
        outputs = matter.run_network(loaded.prepared)
    except NonFiniteOutputError as error:
        frame = loaded.frames[error.index]
        where = f"{frame.path}" if frame.path is not None else f"{source_name} frame {frame.name}"
        raise NonFiniteOutputError(f"{where}: {error}", error.index) from None
    return time.perf_counter() - tick, outputs


def _write(writer: ResultWriter, targets: TargetBackgrounds, frame: Frame, result: Matte) -> None:
    height, width = frame.shape
    composite = result.over(targets.for_frame(frame.index, height, width))
    writer.write(frame.name, result.alpha, result.foreground, composite)


def _finish_and_write(matter: Matter, smoothing: TemporalFilter, writer: ResultWriter, targets: TargetBackgrounds,
                      loaded: _Loaded | None, outputs: list[tuple[np.ndarray, np.ndarray]] | None) -> None:
    """Finish a batch (:meth:`Matter.finish_batch`), push its frames through the temporal filter and write those
    it releases; ``loaded`` None: the clip ended, flush the filter."""
    if loaded is None:
        ready = smoothing.flush()
    else:
        results = matter.finish_batch(loaded.images, loaded.prepared, outputs)
        ready = [out for item in zip(loaded.frames, loaded.images, results) for out in smoothing.push(*item)]
    for ready_frame, result in ready:
        _write(writer, targets, ready_frame, result)


class _Overlap:
    """Reading ahead and writing behind on two helper threads while the caller mattes (``threads=True``), or
    everything in line (``threads=False``: the same calls in the same order).

    One thread per side keeps the order: batches are read in turn by the reader thread (decoding, plates,
    segmentation, preparation) and frames are written in turn by the writer thread (clean-up, temporal filter,
    composite, encoding, PNGs). At most ``ahead`` batches wait on either side, which bounds the memory. An error
    on a helper thread is raised in the caller at its next hand-over; leaving the block on an error cancels what
    is queued and waits for what runs, so the output folder is never written after the run gave up.

    Inside the block a CPU network (``network_on_cpu``) runs on one intra-op thread fewer (at least one), leaving a
    core to the helpers: measured on 2 cores (1080p refine mode), its two OpenMP threads stalled whenever a helper
    took a core, and one thread next to the helpers was faster.
    """

    def __init__(self, threads: bool, ahead: int = 2, network_on_cpu: bool = True) -> None:
        self.threads, self.ahead = threads, ahead
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="bgmatting-read") if threads else None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="bgmatting-write") if threads else None
        self._writes: deque[Future] = deque()
        self._network_on_cpu = network_on_cpu
        self._torch_threads = torch.get_num_threads()

    def read(self, batches: Iterator[Any], load: Callable[[Any], Any]) -> Iterator[Any]:
        """``load(batch)`` for each batch of ``batches``, in order; ``batches`` is advanced on the reader thread."""
        if self._reader is None:
            yield from map(load, batches)
            return

        def next_loaded() -> Any:
            batch = next(batches, None)
            return None if batch is None else load(batch)

        submit = lambda: self._reader.submit(contextvars.copy_context().run, next_loaded)  # noqa: E731
        pending = deque(submit() for _ in range(self.ahead))  # the caller's context (e.g. the image size limit)
        while (loaded := pending.popleft().result()) is not None:
            pending.append(submit())
            yield loaded

    def write(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the writer thread after the earlier ones (in line without threads)."""
        if self._writer is None:
            task()
            return
        self._writes.append(self._writer.submit(contextvars.copy_context().run, task))
        while len(self._writes) > self.ahead:
            self._writes.popleft().result()

    def finish(self) -> None:
        """Wait for every write; raises the first error of one."""
        while self._writes:
            self._writes.popleft().result()

    def __enter__(self) -> _Overlap:
        self._torch_threads = torch.get_num_threads()
        if self.threads and self._network_on_cpu and self._torch_threads > 1:
            torch.set_num_threads(self._torch_threads - 1)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for pool in (self._reader, self._writer):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=exc_type is not None)
        torch.set_num_threads(self._torch_threads)


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
    threads: bool = True,
) -> dict[str, Any]:
    """Matte every frame, write its outputs, and return a summary (frames, seconds, frames/s, what was done with
    the plate per frame).

    ``clip``: the frames are consecutive video frames; motion cues then come from neighbouring frames at
    ``motion_offsets`` (skipped when the generator cannot see them, see :attr:`Matter.uses_motion`), else each
    frame gets 4 x gray(I); ``temporal`` smooths a clip's alpha (:mod:`bgmatting.inference.temporal`; ignored for
    stills). ``writer.finish`` (summary.json) is called only when every frame succeeded.

    ``threads``: read and prepare ahead (decoding, plates, segmentation, crop and resize) and finish and write
    behind (clean-up, temporal filter, composites, encoding, PNGs) on two helper threads while the network runs;
    the same files in the same order as without; with the network on the CPU it runs on one thread fewer meanwhile
    (at least one), leaving a core to the helpers. ``matting_seconds`` in the summary is the network's time.
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
    with writer, _Overlap(threads, network_on_cpu=matter.device.type == "cpu") as overlap:
        def load(batch: list[tuple[Frame, np.ndarray | None]]) -> _Loaded:
            return _load_batch(matter, batch, plates, segmentations, source_name)

        for loaded in overlap.read(_batches(stream, batch_size), load):
            seconds, outputs = _run_network(matter, loaded, source_name)
            network_seconds += seconds
            overlap.write(partial(_finish_and_write, matter, smoothing, writer, targets, loaded, outputs))
            done += len(loaded.frames)
            bar.update(len(loaded.frames))
            bar.set_postfix(fps=f"{done / (time.perf_counter() - start):.2f}")
        overlap.write(partial(_finish_and_write, matter, smoothing, writer, targets, None, None))
        overlap.finish()
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
