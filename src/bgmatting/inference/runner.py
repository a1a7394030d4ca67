"""Running a :class:`Matter` over a whole input: backgrounds per frame, motion cues, batching, outputs, speed.

:func:`matte_sequence` is what ``python -m bgmatting.infer`` calls; it takes ready objects (frames, captured
backgrounds, target backgrounds, a writer), not command-line options.
"""
from __future__ import annotations

import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from bgmatting.data.io import DataError
from bgmatting.inference.pipeline import Matter
from bgmatting.inference.sinks import ResultWriter
from bgmatting.inference.sources import (
    CapturedBackgrounds,
    Frame,
    Segmentations,
    TargetBackgrounds,
    as_float,
    resize_to,
)
from bgmatting.preprocess.align import align_background
from bgmatting.preprocess.motion import video_motion_cues

ALIGNMENTS = ("none", "per_frame", "once")

#: The original's motion-cue frames for video: i - 40, i - 20, i + 20, i + 40.
MOTION_OFFSETS = (-40, -20, 20, 40)


class BackgroundPlates:
    """The captured background for each frame, at the frame's size, optionally aligned to it.

    ``alignment``: ``"none"`` (fixed camera, plate already registered), ``"per_frame"`` (hand-held: AKAZE +
    RANSAC homography to every frame) or ``"once"`` (fixed camera: align each plate to the first frame that
    uses it, then reuse). A plate of another size than the frames is resized to the frame size first, with a
    warning (alignment, when on, then corrects the remaining misregistration).
    """

    def __init__(self, captured: CapturedBackgrounds, alignment: str = "none") -> None:
        if alignment not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
        self.captured = captured
        self.alignment = alignment
        self._aligned: dict[Path, np.ndarray] = {}
        self._warned: set[Path] = set()
        self.reports: list[Any] = []

    def for_frame(self, frame: Frame, image: np.ndarray, subject_mask: np.ndarray | None = None) -> np.ndarray:
        """Background H x W x 3 float32 for ``frame`` (``image`` is its float RGB). ``subject_mask`` (H x W, e.g. a
        precomputed segmentation) keeps the subject's features out of the alignment."""
        background, path = self.captured.for_frame(frame)
        if self.alignment == "once" and path in self._aligned:
            return self._aligned[path]
        height, width = image.shape[:2]
        if background.shape[:2] != (height, width):
            if path not in self._warned:
                self._warned.add(path)
                warnings.warn(
                    f"{path}: captured background is {background.shape[1]}x{background.shape[0]} but the frames "
                    f"are {width}x{height}; resizing it"
                    + ("" if self.alignment != "none" else " (use --handheld or --align-once to also align it)"),
                    stacklevel=2,
                )
            background = resize_to(background, height, width)
        if self.alignment != "none":
            aligned, report = align_background(image, background, subject_mask=subject_mask)
            self.reports.append(report)
            background = as_float(np.asarray(aligned))
        if self.alignment == "once":
            self._aligned[path] = background
        return background


def _gray(image: np.ndarray) -> np.ndarray:
    """RGB -> gray, keeping uint8 frames uint8 (as the original computes it) to keep the buffer small."""
    if image.dtype == np.uint8:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2GRAY)


def frames_with_motion(
    frames: Iterable[Frame], offsets: Sequence[int] = MOTION_OFFSETS
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
        gray[frame.index] = _gray(frame.image)
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


def matte_sequence(
    matter: Matter,
    frames: Iterable[Frame],
    plates: BackgroundPlates,
    targets: TargetBackgrounds,
    writer: ResultWriter,
    *,
    segmentations: Segmentations | None = None,
    clip: bool = False,
    motion_offsets: Sequence[int] = MOTION_OFFSETS,
    batch_size: int = 1,
    total: int | None = None,
    progress: bool = True,
    source_name: str = "input",
) -> dict[str, Any]:
    """Matte every frame, write its outputs, and return a summary (frames, seconds, frames/s).

    ``clip``: the frames are consecutive video frames; motion cues then come from neighbouring frames at
    ``motion_offsets`` (skipped when the generator cannot see them, see :attr:`Matter.uses_motion`), else each
    frame gets 4 x gray(I). ``writer.finish`` (summary.json) is called only when every frame succeeded.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if clip and matter.uses_motion:
        stream: Iterable[tuple[Frame, np.ndarray | None]] = frames_with_motion(frames, motion_offsets)
    else:
        stream = ((frame, None) for frame in frames)
    done = 0
    bar = tqdm(total=total or None, unit="frame", desc=source_name, disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    network_seconds = 0.0
    with writer:
        for batch in _batches(stream, batch_size):
            images = [as_float(frame.image) for frame, _ in batch]
            masks = [segmentations.for_frame(frame) if segmentations else None for frame, _ in batch]
            backgrounds = [
                plates.for_frame(frame, image, mask) for (frame, _), image, mask in zip(batch, images, masks)
            ]
            tick = time.perf_counter()
            results = matter.matte_batch(images, backgrounds, masks, [motion for _, motion in batch])
            network_seconds += time.perf_counter() - tick
            for (frame, _), result in zip(batch, results):
                height, width = frame.shape
                composite = result.composite(targets.for_frame(frame.index, height, width))
                writer.write(frame.name, result.alpha, result.foreground, composite)
            done += len(batch)
            elapsed = time.perf_counter() - start
            bar.update(len(batch))
            bar.set_postfix(fps=f"{done / elapsed:.2f}")
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
            "target_background": targets.describe(),
        }
        writer.finish(summary)
    return summary
