"""The machine's measured peak: large matmuls and convolutions in fp32 and the low-precision dtypes.

Every ratio "achieved / peak" in the report divides by numbers measured here, in the same run, so the
ratio says how well the network uses what this machine actually delivers (not a datasheet figure).
Problem sizes grow until one call takes ``target_seconds``, so a slow (emulated) dtype does not stall the run.
The convolution is the network's dominant layer: 3x3, 256 -> 256 channels (the residual blocks at H/4).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from bgmatting.benchmarks.timing import time_until, timed_call

CONV_CHANNELS = 256
CONV_KERNEL = 3


def low_precision_dtypes(device: torch.device) -> list[torch.dtype]:
    """Dtypes measured besides fp32: bf16 everywhere, fp16 on CUDA."""
    return [torch.bfloat16, torch.float16] if device.type == "cuda" else [torch.bfloat16]


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def _grow_and_measure(make: Callable[[int], tuple[Callable[[], object], float]], sizes: list[int],
                      device: torch.device, target_seconds: float, min_seconds: float) -> tuple[float, int]:
    """Try ``sizes`` in order until one call takes ``target_seconds``; return (FLOP/s, size) of that size."""
    for index, size in enumerate(sizes):
        fn, flops = make(size)
        timed_call(fn, device)
        seconds, _ = timed_call(fn, device)
        if seconds >= target_seconds or index == len(sizes) - 1:
            best = min(seconds, time_until(fn, device, min_seconds))
            return flops / best, size
    raise ValueError("no sizes given")


def matmul_flops_per_second(device: torch.device, dtype: torch.dtype, target_seconds: float = 0.1,
                            min_seconds: float = 0.5) -> tuple[float, int]:
    """Best FLOP/s of an n x n @ n x n matmul (2 n^3 FLOP) and the n it was measured at."""
    sizes = [256, 512, 1024, 2048, 4096] + ([8192] if device.type == "cuda" else [])
    generator = torch.Generator(device="cpu").manual_seed(0)

    def make(n: int):
        a = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
        return (lambda: torch.mm(a, b)), 2.0 * n**3

    with torch.inference_mode():
        return _grow_and_measure(make, sizes, device, target_seconds, min_seconds)


def conv_flops_per_second(device: torch.device, dtype: torch.dtype, channels_last: bool,
                          target_seconds: float = 0.1, min_seconds: float = 0.5) -> tuple[float, int]:
    """Best FLOP/s of a 3x3 256->256 convolution (padding 1) on a batch-1 square input; returns (FLOP/s, side)."""
    sides = [16, 32, 64, 128] + ([256, 512] if device.type == "cuda" else [])
    batch = 8 if device.type == "cuda" else 1
    generator = torch.Generator(device="cpu").manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    weight = torch.randn(CONV_CHANNELS, CONV_CHANNELS, CONV_KERNEL, CONV_KERNEL, generator=generator) * 0.02
    weight = weight.to(device=device, dtype=dtype).contiguous(memory_format=memory_format)

    def make(side: int):
        x = torch.randn(batch, CONV_CHANNELS, side, side, generator=generator)
        x = x.to(device=device, dtype=dtype).contiguous(memory_format=memory_format)
        flops = 2.0 * batch * CONV_CHANNELS * CONV_CHANNELS * CONV_KERNEL**2 * side * side
        return (lambda: F.conv2d(x, weight, padding=1)), flops

    with torch.inference_mode():
        return _grow_and_measure(make, sides, device, target_seconds, min_seconds)


def measure_peak(device: torch.device, min_seconds: float = 0.5, progress: Callable[[str], None] = print) -> dict:
    """Peak GFLOP/s per dtype: matmul, conv NCHW, conv channels_last, and the best conv.

    Returns ``{"fp32": {"matmul_gflops", "matmul_n", "conv_nchw_gflops", "conv_channels_last_gflops",
    "conv_gflops", "conv_side"}, "bf16": {...}, ...}``.
    """
    result: dict[str, dict] = {}
    for dtype in [torch.float32, *low_precision_dtypes(device)]:
        name = dtype_name(dtype)
        entry: dict[str, float | int] = {}
        rate, n = matmul_flops_per_second(device, dtype, min_seconds=min_seconds)
        entry.update(matmul_gflops=rate / 1e9, matmul_n=n)
        best_conv, best_side = 0.0, 0
        for channels_last in (False, True):
            rate, side = conv_flops_per_second(device, dtype, channels_last, min_seconds=min_seconds)
            entry["conv_channels_last_gflops" if channels_last else "conv_nchw_gflops"] = rate / 1e9
            if rate > best_conv:
                best_conv, best_side = rate, side
        entry.update(conv_gflops=best_conv / 1e9, conv_side=best_side)
        progress(f"[peak] {name}: matmul {entry['matmul_gflops']:.1f} GFLOP/s (n={n}), conv NCHW "
                 f"{entry['conv_nchw_gflops']:.1f}, channels_last {entry['conv_channels_last_gflops']:.1f} GFLOP/s")
        result[name] = entry
    return result


def merge_peaks(first: dict, second: dict) -> dict:
    """Per dtype and field, the larger of two peak measurements (a busy machine only ever lowers a peak)."""
    merged = {}
    for dtype in [*first, *(d for d in second if d not in first)]:
        a, b = first.get(dtype, {}), second.get(dtype, {})
        entry = dict(a or b)
        for key in ("matmul", "conv_nchw", "conv_channels_last", "conv"):
            field = f"{key}_gflops"
            if field in a and field in b:
                entry[field] = max(a[field], b[field])
        merged[dtype] = entry
    return merged


def ratios_to_peak(gflops_per_s: float, dtype: str, peak: dict | None) -> dict:
    """``ratio_to_conv_peak`` and ``ratio_to_matmul_peak`` of an achieved rate against the ``dtype`` peak."""
    if not peak or dtype not in peak:
        return {}
    return {"ratio_to_conv_peak": gflops_per_s / peak[dtype]["conv_gflops"],
            "ratio_to_matmul_peak": gflops_per_s / peak[dtype]["matmul_gflops"]}
