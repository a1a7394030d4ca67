"""Network time per video frame: the refining model against the plain network on the native frame and on the
512 x 512 crop of the original mode.

Three ways to matte a ``H x W`` frame with the paper-size network (random weights with calibrated BatchNorm:
speed does not depend on their values):

* ``refine``: ``model=paper_refine`` (the paper's generator as the base, with the refine head, and the refiner);
  base at the automatic resolution (long side 512), refine mode sampling with BackgroundMattingV2's pixel
  budget for the frame (80 000 for HD, 320 000 for 4K);
* ``native``: ``model=paper`` on the whole frame at its native resolution (``infer --mode full --size 0``);
* ``original``: ``model=paper`` on the 512 x 512 crop the original's test pipeline feeds it (its cost does not
  depend on the frame; crop and resize are not counted).

Each is one call of :class:`bgmatting.models.MattingModel` in inference mode, in the device's automatic
inference precision. FLOPs: the plain network's are counted on the meta device and scaled by the pixels;
the refining model's are counted on its (untimed) warm-up call, since its patch count depends on the data.
With ``estimate_native_above`` (the quick preset), the native frame above that many pixels is not run: its
time is estimated from the smaller native frame's measured FLOP rate, and marked so.
"""
from __future__ import annotations

import os
import statistics
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from bgmatting.benchmarks.inputs import make_batch, model_inputs
from bgmatting.benchmarks.model import FLOP_REFERENCE_SIZE, calibrate_batchnorm, configured_model, flops_on_meta
from bgmatting.benchmarks.peak import dtype_name, ratios_to_peak
from bgmatting.benchmarks.timing import timed_call
from bgmatting.models import Generator, MattingModel
from bgmatting.runtime import resolve_precision

#: BackgroundMattingV2's refine budgets (full-resolution pixels per frame) by frame height.
REFINE_PIXELS = {1080: 80_000, 2160: 320_000}
ORIGINAL_SIDE = 512  # the original mode's network input
CALIBRATION_SIDE = 256


def _refine_pixels(height: int, width: int) -> int:
    """BGMv2's budget for HD / 4K, else the HD budget scaled by the frame's pixels."""
    return REFINE_PIXELS.get(height, int(80_000 * height * width / (1080 * 1920)))


class _Method:
    """One way to matte a frame: a model in eval mode on fixed inputs, its FLOPs and its call times."""

    def __init__(self, name: str, model: MattingModel, height: int, width: int, device: torch.device,
                 flops: int | None = None):
        self.name, self.model, self.height, self.width, self.flops = name, model, height, width, flops
        self.inputs = model_inputs(make_batch(1, height, width=width), device)
        self.device = device
        self.times: list[float] = []

    def call(self) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(*self.inputs)[0]

    def warm_up(self) -> float:
        """One untimed call; counts the FLOPs on it when they are not known. Returns its seconds."""
        if self.flops is not None:
            return timed_call(self.call, self.device)[0]
        counter = FlopCounterMode(display=False)
        with counter:
            seconds = timed_call(self.call, self.device)[0]
        self.flops = int(counter.get_total_flops())
        return seconds

    def time(self) -> float:
        seconds = timed_call(self.call, self.device)[0]
        self.times.append(seconds)
        return seconds


def _prepared(model_name: str, device: torch.device, precision_name: str) -> MattingModel:
    """A configured model, BatchNorm calibrated on a photo composite, in eval mode and the given precision."""
    model = configured_model(model_name, device=device)
    calibrate_batchnorm(model, {k: v.to(device) for k, v in make_batch(1, CALIBRATION_SIDE).items()})
    return model.eval().set_precision(resolve_precision(device, precision_name))


def bench_refine(frame_sizes: list[tuple[int, int]], refine_model: str = "paper_refine", plain_model: str = "paper",
                 device: torch.device = torch.device("cpu"), repeats: int = 2, peak: dict | None = None,
                 estimate_native_above: int | None = None, progress: Callable[[str], None] = print) -> dict:
    """Seconds per frame of ``refine``, ``native`` and ``original`` at each (H, W) of ``frame_sizes``.

    ``refine`` and ``original`` get one warm-up and ``repeats`` timed calls, interleaved; ``native`` one timed
    call (it is the slow one: minutes per 1080p frame on a small CPU). ``peak``: the run's measured peak
    (``peak`` suite) for the ratios to peak. Returns ``{"precision", "frames": [...], "load_average": ...}``.
    """
    precision = resolve_precision(device, "auto").name
    refining = _prepared(refine_model, device, precision)
    plain = _prepared(plain_model, device, precision)
    original = _Method("original", plain, ORIGINAL_SIDE, ORIGINAL_SIDE, device,
                       _plain_flops(plain, ORIGINAL_SIDE, ORIGINAL_SIDE))
    original.warm_up()
    load = {"start": list(os.getloadavg())}
    frames, measured_native = [], None
    for height, width in frame_sizes:
        refining.set_refine_options(**dict(refining.refine_options, downsample_ratio=None, refine_mode="sampling",
                                           refine_pixels=_refine_pixels(height, width)))
        refine = _Method("refine", refining, height, width, device)
        base_h, base_w = refining.base_size(height + (-height) % 4, width + (-width) % 4)
        progress(f"[refine] {width}x{height}: warm-up {refine.warm_up():.2f} s (base {base_w}x{base_h}, "
                 f"{refining.refine_pixels} pixels refined)")
        for repeat in range(repeats):
            progress(f"[refine] {width}x{height} repeat {repeat + 1}/{repeats}: refine {refine.time():.2f} s, "
                     f"original {original.time():.2f} s")
        native = _Method("native", plain, height, width, device, _plain_flops(plain, height, width))
        large = estimate_native_above is not None and height * width > estimate_native_above
        if large and measured_native is not None:
            rate = measured_native.flops / statistics.median(measured_native.times)
            native.times, native_note = [native.flops / rate], "estimated from the smaller frame's FLOP rate"
        else:
            progress(f"[refine] {width}x{height}: native frame {native.time():.1f} s")
            measured_native, native_note = native, "measured"
        frames.append(_frame_entry(refine, native, original, native_note, peak, _dtype_of(refining)))
        frames[-1]["methods"]["refine"]["base_input"] = [base_h, base_w]
        progress(f"[refine] {width}x{height}: refine {frames[-1]['speedup_vs_native']:.1f}x faster than the native "
                 f"frame, {frames[-1]['speedup_vs_original']:.2f}x than the 512 crop")
    load["end"] = list(os.getloadavg())
    return {"precision": precision, "refine_model": refine_model, "plain_model": plain_model,
            "refine_options": refining.refine_options, "frames": frames, "load_average": load}


def _dtype_of(model: MattingModel) -> str:
    """The dtype whose peak a model's FLOP rate is compared with: its autocast dtype, else fp32."""
    dtype = model.precision.dtype if model.precision is not None else None
    return dtype_name(dtype or torch.float32)


def _plain_flops(model: MattingModel, height: int, width: int) -> int:
    """FLOPs of one inference of a plain model at H x W: counted on the meta device at the reference size and
    scaled by the pixels (exact for multiples of 4: every convolution's output has H W / stride^2 pixels)."""
    with torch.device("meta"):
        meta = MattingModel(Generator(**model.generator.config))
    return flops_on_meta(meta, "infer", 1, FLOP_REFERENCE_SIZE) * height * width // FLOP_REFERENCE_SIZE**2


def _frame_entry(refine: _Method, native: _Method, original: _Method, native_note: str, peak: dict | None,
                 dtype: str) -> dict:
    """One frame size's row: per method seconds, GFLOP, GFLOP/s and % of peak; refine's speed-ups."""
    methods = {}
    for method in (refine, native, original):
        seconds = statistics.median(method.times)
        entry = {"seconds": seconds, "times_s": list(method.times), "gflop": method.flops / 1e9,
                 "gflops_per_s": method.flops / seconds / 1e9, "input": [method.height, method.width],
                 "peak_dtype": dtype}
        entry.update(ratios_to_peak(entry["gflops_per_s"], dtype, peak))
        methods[method.name] = entry
    methods["native"]["note"] = native_note
    refine_s = methods["refine"]["seconds"]
    return {"height": refine.height, "width": refine.width, "methods": methods,
            "speedup_vs_native": methods["native"]["seconds"] / refine_s,
            "speedup_vs_original": methods["original"]["seconds"] / refine_s}
