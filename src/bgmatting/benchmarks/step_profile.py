"""What limits a training step: one supervised step (forward, loss, backward, Adam) in the default training mode,
its time split by operator kind, its rate against the machine's measured convolution peak, and Adam's fused
kernels against the default ones on the whole step.

The split comes from ``torch.profiler`` (CPU self time per operator): convolutions (forward and backward), batch
norm, the optimiser step (its ``Optimizer.step`` region) and everything else (activations, losses, autocast
casts, copies: memory-bound elementwise work). The machine's peak is the measured convolution peak of bf16 on
CPUs where oneDNN has native bf16 (AMX, AVX512-BF16) and on CUDA, of fp32 elsewhere (:mod:`.peak`).
"""
from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from bgmatting.benchmarks.inputs import make_batch
from bgmatting.benchmarks.model import build_model, count_flops, make_runner
from bgmatting.benchmarks.modes import BenchMode
from bgmatting.benchmarks.timing import timed_call
from bgmatting.runtime import cpu_has_native_bf16, resolve_precision


def machine_peak_dtype(device: torch.device) -> str:
    """The dtype whose measured conv peak is the machine's: bf16 with native bf16 (or CUDA), else fp32."""
    return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()) else "fp32"


def _category(name: str) -> str:
    if "conv" in name:
        return "convolution"
    if "batch_norm" in name:
        return "batch_norm"
    return "other"


def _split(step: Callable[[], object]) -> dict[str, float]:
    """Seconds per operator kind of one call of ``step`` (CPU self time), and the optimiser's total."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    seconds = {"convolution": 0.0, "batch_norm": 0.0, "other": 0.0}
    optimizer = 0.0
    for event in prof.key_averages():
        if event.key.startswith("Optimizer.step"):
            optimizer += event.cpu_time_total / 1e6
        elif not event.key.startswith(("Optimizer.", "ProfilerStep")):
            seconds[_category(event.key)] += event.self_cpu_time_total / 1e6
    seconds["other"] = max(0.0, seconds["other"] - optimizer)  # the optimiser's own ops were counted as other
    return {**seconds, "optimizer": optimizer}


def profile_train_step(model_config: str, size: int, batch: int, device: torch.device, peak: dict | None = None,
                       repeats: int = 3, progress: Callable[[str], None] = print) -> dict:
    """The default training mode's step at ``size``: time split by operator kind, achieved conv rate against the
    machine's peak, and the whole step with Adam ``fused=True`` against the default kernels (interleaved)."""
    precision = resolve_precision(device, "auto", purpose="train")
    mode = BenchMode(precision.name, precision)
    data = {key: value.to(device) for key, value in make_batch(batch, size).items()}
    model = build_model(model_config, device=device)
    runners = {impl: make_runner("train", model, mode, data, impl) for impl in ("default", "fused")}
    for runner in runners.values():
        runner.step()
        runner.step()
    times: dict[str, list[float]] = {impl: [] for impl in runners}
    for _ in range(repeats):
        for impl, runner in runners.items():
            times[impl].append(timed_call(runner.step, device)[0])
    split = _split(runners["default"].step) if device.type == "cpu" else {}
    step_s = statistics.median(times["default"])
    flops = count_flops(model_config, "train", batch, size)
    dtype = machine_peak_dtype(device)
    result = {"size": size, "batch": batch, "mode": mode.name, "step_s": step_s,
              "fused_step_s": statistics.median(times["fused"]), "times_s": times, "gflops_per_s": flops / step_s / 1e9,
              "machine_peak_dtype": dtype, "split_s": split}
    result["fused_speedup"] = step_s / result["fused_step_s"]
    add_peak_ratios(result, peak)
    progress(f"[model] train step {size}² {mode.name}: {step_s:.2f} s (fused Adam {result['fused_step_s']:.2f} s); "
             + ", ".join(f"{k} {v:.2f} s" for k, v in split.items()))
    return result


def add_peak_ratios(step: dict, peak: dict | None) -> None:
    """Set the step's ratios to the machine's measured conv peak (whole step; its convolutions alone)."""
    dtype = step["machine_peak_dtype"]
    if not peak or dtype not in peak:
        return
    conv_peak = peak[dtype]["conv_gflops"]
    step["ratio_to_machine_conv_peak"] = step["gflops_per_s"] / conv_peak
    if step["split_s"].get("convolution"):
        conv_rate = step["gflops_per_s"] * step["step_s"] / step["split_s"]["convolution"]
        step["conv_ratio_to_machine_conv_peak"] = conv_rate / conv_peak


def step_lines(step: dict | None) -> list[str]:
    """Summary sentences of :func:`profile_train_step`'s result."""
    if not step:
        return []
    peak = step.get("ratio_to_machine_conv_peak")
    peak_text = f" = {100 * peak:.0f}% of the measured {step['machine_peak_dtype']} conv peak" if peak else ""
    lines = [f"Training step {step['size']}² batch {step['batch']}, default mode {step['mode']}: "
             f"{step['step_s']:.2f} s, {step['gflops_per_s']:.0f} GFLOP/s{peak_text}; Adam fused=True "
             f"{step['fused_step_s']:.2f} s ({step['fused_speedup']:.2f}x the whole step)."]
    split = step.get("split_s")
    if split:
        total = sum(split.values())
        shares = ", ".join(f"{k.replace('_', ' ')} {100 * v / total:.0f}%" for k, v in split.items())
        conv = step.get("conv_ratio_to_machine_conv_peak")
        conv_text = f"; the convolutions alone run at {100 * conv:.0f}% of that peak" if conv else ""
        lines.append(f"Where the step's time goes: {shares}{conv_text}.")
    return lines
