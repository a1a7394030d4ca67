"""Inference end to end on a full-HD video: decode, alignment, segmentation, network, post-process, encode.

It runs the library path behind ``python -m bgmatting.infer`` (:class:`bgmatting.inference.Matter`,
:class:`bgmatting.preprocess.capture.BackgroundPlates` and :func:`bgmatting.inference.matte_sequence`) on a synthetic hand-held clip written from scikit-image photos:
a textured background that shifts a few pixels per frame (so AKAZE alignment has work to do) and a
subject moving across it, plus the captured plate. Stage times come from wrapping the pipeline's own
callables (frame iterator, plate alignment, segmenter, generator forward, result writer); "other" is the
rest of the loop (crop and resize, post-process, compositing, conversions).
"""
from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data as skdata

from bgmatting.benchmarks.inputs import make_batch
from bgmatting.benchmarks.model import build_generator, calibrate_batchnorm
from bgmatting.benchmarks.timing import synchronize
from bgmatting.data.io import to_float, write_image
from bgmatting.inference import Matter, ResultWriter, TargetBackgrounds, matte_sequence
from bgmatting.preprocess.capture import BackgroundPlates, CapturedBackgrounds, VideoFrames
from bgmatting.preprocess.segment import get_segmenter

SUBJECT_SIDE_FRACTION = 0.8  # subject height relative to the frame height


def _textured_background(height: int, width: int) -> np.ndarray:
    """uint8 H x W x 3: a 2 x 3 mosaic of scikit-image photos (many features for AKAZE)."""
    names = ("rocket", "coffee", "chelsea", "immunohistochemistry", "hubble_deep_field", "coffee")
    tile_h, tile_w = height // 2 + 1, width // 3 + 1
    tiles = [cv2.resize(getattr(skdata, n)()[..., :3], (tile_w, tile_h), interpolation=cv2.INTER_CUBIC) for n in names]
    rows = [np.concatenate(tiles[r * 3:(r + 1) * 3], axis=1) for r in range(2)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height, :width])


def _subject(side: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 side x side x 3 photo, float32 side x side soft head-and-shoulders alpha)."""
    photo = cv2.resize(skdata.astronaut(), (side, side), interpolation=cv2.INTER_CUBIC)
    alpha = np.zeros((side, side), np.float32)
    cv2.ellipse(alpha, (side // 2, int(side * 0.35)), (int(side * 0.22), int(side * 0.25)), 0, 0, 360, 1.0, -1)
    cv2.ellipse(alpha, (side // 2, side), (int(side * 0.45), int(side * 0.45)), 0, 180, 360, 1.0, -1)
    return photo, cv2.GaussianBlur(alpha, (9, 9), 3.0)


def write_handheld_clip(folder: Path, frames: int, height: int = 1080, width: int = 1920,
                        fps: float = 25.0) -> tuple[Path, Path]:
    """Write ``clip.avi`` (MJPG) and ``plate.png`` into ``folder``; returns (video path, plate path)."""
    margin = 24
    scene = _textured_background(height + 2 * margin, width + 2 * margin)
    plate = scene[margin:margin + height, margin:margin + width]
    write_image(folder / "plate.png", plate)
    side = int(height * SUBJECT_SIDE_FRACTION)
    photo, alpha = _subject(side)
    path = folder / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write MJPG video here")
    try:
        for index in range(frames):
            dx, dy = int(round(6 * np.sin(index / 3.0))), int(round(4 * np.cos(index / 4.0)))
            frame = scene[margin + dy:margin + dy + height, margin + dx:margin + dx + width].astype(np.float32)
            x0 = width // 2 - side // 2 + int((index - frames / 2) * 12)
            y0 = height - side
            region = frame[y0:y0 + side, x0:x0 + side]
            region[:] = alpha[..., None] * photo + (1 - alpha[..., None]) * region
            writer.write(cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path, folder / "plate.png"


class StageClock:
    """Accumulates wall seconds per named stage of wrapped callables and iterators."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, function: Callable, stage: str) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start
        return timed

    def iterate(self, items: Iterable, stage: str) -> Iterator:
        iterator = iter(items)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                self.seconds[stage] += time.perf_counter() - start
            yield item

    def time_module(self, module: torch.nn.Module, stage: str) -> None:
        """Add the module's forward time (device-synchronised) to ``stage`` through forward hooks."""
        starts: list[float] = []

        def before(*_):
            synchronize(self.device)
            starts.append(time.perf_counter())

        def after(*_):
            synchronize(self.device)
            self.seconds[stage] += time.perf_counter() - starts.pop()

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)


def bench_video(frames: int = 6, height: int = 1080, width: int = 1920, model_config: str = "default",
                precision: str = "auto", device: torch.device = torch.device("cpu"), mode: str = "original",
                size: int = 512, alignment: str = "per_frame", segmenter: str = "background_difference",
                progress: Callable[[str], None] = print) -> dict:
    """Frames/s of matting a ``width`` x ``height`` hand-held clip end to end, with a per-stage breakdown.

    The generator has random weights with BatchNorm statistics calibrated on a photo composite (speed does
    not depend on the weights' values; calibrated statistics keep alpha, and so the post-process, realistic).
    One untimed frame warms the pipeline up first.
    """
    generator = build_generator(model_config)
    calibrate_batchnorm(generator, make_batch(1, 256))
    clock = StageClock(device)
    with tempfile.TemporaryDirectory(prefix="bgmatting-bench-video-") as folder:
        folder = Path(folder)
        video_path, plate_path = write_handheld_clip(folder, frames + 1, height, width)
        matter = Matter(generator, mode=mode, size=size, precision=precision, device=device)
        matter.segmenter = get_segmenter(segmenter, postprocess=False, device=matter.device)
        captured = CapturedBackgrounds(plate_path, by_order=True)
        source = VideoFrames(video_path)

        warm = BackgroundPlates(captured, alignment)
        first = next(iter(source))
        image = to_float(first.image)
        matter.matte(image, warm.for_frame(first, image))

        matter.segmenter = clock.wrap(matter.segmenter, "segmentation")
        clock.time_module(matter.model, "network")
        plates = BackgroundPlates(captured, alignment)
        plates.for_frame = clock.wrap(plates.for_frame, "alignment")
        writer = ResultWriter(folder / "out", pngs=False, video=(source.fps, "clip"))
        writer.write = clock.wrap(writer.write, "encode")
        frame_iter = (f for f in clock.iterate(source, "decode") if f.index >= 1)
        start = time.perf_counter()
        summary = matte_sequence(matter, frame_iter, plates, TargetBackgrounds(), writer, clip=True,
                                 progress=False, source_name=video_path.name)
        total = time.perf_counter() - start
    names = ("decode", "alignment", "segmentation", "network", "encode")
    stages = {name: clock.seconds.get(name, 0.0) for name in names}
    stages["other"] = max(0.0, total - sum(stages.values()))
    done = summary["frames"]
    result = {
        "frames": done, "height": height, "width": width, "seconds": total, "frames_per_s": done / total,
        "seconds_per_frame": total / done, "stages_s": stages, "precision": matter.precision.name,
        "mode": mode, "size": size, "alignment": alignment, "segmenter": segmenter, "model_config": model_config,
        "description": f"{mode} mode at {size}, {alignment} alignment, {segmenter} segmentation, "
                       f"{matter.precision.name}",
    }
    progress(f"[video] {width}x{height}, {done} frames: {result['frames_per_s']:.3f} frames/s; per frame "
             + ", ".join(f"{k} {v / done * 1e3:.0f} ms" for k, v in stages.items()))
    return result
