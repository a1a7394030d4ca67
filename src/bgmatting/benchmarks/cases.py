"""One benchmark case (kind, size, batch): every mode side by side on the same weights and inputs.

Within a case every mode starts from a copy of the same initial weights and sees the same batch; timed
repeats are interleaved across modes (A, B, C, A, B, C, ...) so machine noise hits all modes alike, and
every speed is also given as a ratio to the fp32 NCHW eager baseline.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bgmatting.benchmarks.inputs import make_batch
from bgmatting.benchmarks.memory import PeakMemory, release_free_memory
from bgmatting.benchmarks.model import (
    KINDS,
    ModeRunner,
    build_model,
    calibrate_batchnorm,
    count_flops,
    make_runner,
)
from bgmatting.benchmarks.modes import BASELINE_MODE, BenchMode, compiled_variant
from bgmatting.benchmarks.peak import ratios_to_peak
from bgmatting.benchmarks.timing import synchronize, timed_call


def _rate_key(kind: str, mode: BenchMode) -> str:
    return f"{kind}/{mode.name}"


def estimate_seconds(kind: str, mode: BenchMode, flops: int, history: dict[str, float],
                     peak: dict | None) -> float | None:
    """Expected seconds per call: from this mode's achieved FLOP/s in earlier cases, else a lower bound from
    the measured conv peak of its dtype; None when nothing is known."""
    rate = history.get(_rate_key(kind, mode))
    if rate is None and peak and mode.peak_dtype in peak:
        rate = peak[mode.peak_dtype]["conv_gflops"] * 1e9
    return flops / rate if rate else None


@dataclass
class CaseSettings:
    """How to run one case; ``max_step_seconds`` skips a mode whose estimated call time exceeds it."""

    device: torch.device
    model_config: str = "default"
    warmup: int = 1
    repeats: int = 2
    max_step_seconds: float | None = None
    optimizer_impl: str = "default"
    inference_freezing: bool = True
    measure_memory: bool = True
    seed: int = 0


def bench_case(kind: str, size: int, batch: int, modes: list[BenchMode], settings: CaseSettings,
               peak: dict | None = None, history: dict[str, float] | None = None,
               progress: Callable[[str], None] = print) -> dict:
    """Benchmark every mode on one (kind, size, batch) case; returns a JSON-ready dict.

    Speed-ups and output differences are relative to the fp32 baseline when it is among ``modes`` (it is
    then run first and never skipped). Each mode gets ``warmup`` untimed calls (the first one's alpha is
    the output compared with fp32), then ``repeats`` interleaved timed calls; peak memory is taken on the
    first timed call. A ``compile`` mode compiles the fastest eager mode of this case: its compile time
    (first call minus a steady call) is reported apart from its call time, its base mode is timed again
    alongside it (interleaved) so ``speedup_vs_base`` is noise-robust, and its ``speedup_vs_fp32`` chains
    that ratio with the base's ratio to fp32. ``history`` (kind/mode -> achieved FLOP/s) is read for time
    estimates and updated with this case's results.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if not modes:
        raise ValueError("no modes to benchmark")
    case = _Case(kind, size, batch, settings, peak, {} if history is None else history, progress)
    return case.run(sorted(modes, key=lambda m: m.name != BASELINE_MODE))  # baseline first, others in order


class _Case:
    """The state of one running case: its inputs, weights, FLOP count and per-mode results."""

    def __init__(self, kind: str, size: int, batch: int, settings: CaseSettings, peak: dict | None,
                 history: dict[str, float], progress: Callable[[str], None]):
        self.kind, self.size, self.batch, self.settings = kind, size, batch, settings
        self.peak, self.history, self.progress = peak, history, progress
        self.device = settings.device
        self.label = f"{kind} {size}x{size} batch {batch}"
        self.flops = count_flops(settings.model_config, kind, batch, size)
        self.data = {key: value.to(self.device) for key, value in make_batch(batch, size).items()}
        self.base_model = build_model(settings.model_config, settings.seed, self.device)
        if kind == "infer":
            calibrate_batchnorm(self.base_model, self.data)
        self.results: dict[str, dict] = {}

    def run(self, modes: list[BenchMode]) -> dict:
        runners = self._prepare_all([m for m in modes if not m.compiled])
        self._time_interleaved(runners)
        if any(m.compiled for m in modes):
            if runners:
                base = min(runners, key=lambda r: statistics.median(r.times))
                compiled = self._prepare_all([compiled_variant(base.mode)])
                self._time_interleaved(compiled, companion=base)
                runners += compiled
            else:
                compile_mode = BenchMode("compile", None, True)
                self.results["compile"] = skipped_entry(compile_mode, "no eager mode was measured")
        self._collect(runners)
        order = [m.name for m in modes]
        self.results = dict(sorted(self.results.items(), key=lambda item: order.index(item[0])))
        del runners
        release_free_memory()
        synchronize(self.device)
        return {"kind": self.kind, "size": self.size, "batch": self.batch, "flops": self.flops,
                "gflop": self.flops / 1e9, "model_config": self.settings.model_config, "modes": self.results}

    def _prepare_all(self, modes: list[BenchMode]) -> list[ModeRunner]:
        """A warmed-up runner per mode; modes estimated too slow are skipped, modes that raise are failed."""
        runners = []
        for mode in modes:
            estimate = estimate_seconds(self.kind, mode, self.flops, self.history, self.peak)
            limit = self.settings.max_step_seconds
            if limit is not None and estimate is not None and mode.name != BASELINE_MODE and estimate > limit:
                reason = f"estimated {estimate:.1f} s per call > limit {limit:g} s"
                self.results[mode.name] = skipped_entry(mode, reason)
                self.progress(f"[model] {self.label} {mode.name}: skipped (estimated {estimate:.1f} s per call)")
                continue
            try:
                runners.append(self._prepare(mode))
            except Exception as error:  # a mode that cannot run here is reported, not fatal
                self.results[mode.name] = _failed(mode, error)
                self.progress(f"[model] {self.label} {mode.name}: FAILED ({type(error).__name__}: {error})")
        return runners

    def _prepare(self, mode: BenchMode) -> ModeRunner:
        settings = self.settings
        runner = make_runner(self.kind, self.base_model, mode, self.data, settings.optimizer_impl,
                             settings.inference_freezing)
        seconds, alpha = timed_call(runner.step, self.device)
        runner.first_call_s, runner.first_alpha = seconds, alpha.cpu()
        # a compiled mode may still recompile on its second call (e.g. guards on optimiser state)
        for _ in range(max(1, settings.warmup) if mode.compiled else settings.warmup - 1):
            timed_call(runner.step, self.device)
        self.progress(f"[model] {self.label} {mode.name}: first call {seconds:.2f} s")
        return runner

    def _time_interleaved(self, runners: list[ModeRunner], companion: ModeRunner | None = None) -> None:
        """``repeats`` rounds of one timed call per runner (and of ``companion``, into its paired times)."""
        for repeat in range(self.settings.repeats if runners else 0):
            line = []
            if companion is not None:
                companion.paired_times.append(timed_call(companion.step, self.device)[0])
                line.append(f"{companion.mode.name} {companion.paired_times[-1]:.3f} s")
            for runner in runners:
                if repeat == 0 and self.settings.measure_memory:
                    with PeakMemory(self.device) as memory:
                        seconds = timed_call(runner.step, self.device)[0]
                    runner.memory = {"peak_memory_mib": memory.peak_mib, "memory_method": memory.method}
                else:
                    seconds = timed_call(runner.step, self.device)[0]
                runner.times.append(seconds)
                line.append(f"{runner.mode.name} {seconds:.3f} s")
            self.progress(f"[model] {self.label} repeat {repeat + 1}/{self.settings.repeats}: " + ", ".join(line))

    def _collect(self, runners: list[ModeRunner]) -> None:
        reference = next((r.first_alpha for r in runners if r.mode.name == BASELINE_MODE), None)
        baseline_s = next((statistics.median(r.times) for r in runners if r.mode.name == BASELINE_MODE), None)
        for runner in runners:
            entry = _measured(runner, self.flops, self.batch, self.peak, reference, baseline_s)
            if runner.mode.compiled:
                base = next(r for r in runners if r.mode.name == runner.mode.precision.name and not r.mode.compiled)
                entry["base_mode"] = base.mode.name
                entry["base_paired_times_s"] = base.paired_times
                entry["speedup_vs_base"] = statistics.median(base.paired_times) / entry["median_s"]
                if baseline_s:
                    entry["speedup_vs_fp32"] = entry["speedup_vs_base"] * baseline_s / statistics.median(base.times)
            self.results[runner.mode.name] = entry
            self.history[_rate_key(self.kind, runner.mode)] = self.flops / entry["median_s"]


def _mode_fields(mode: BenchMode) -> dict:
    precision = mode.precision
    return {
        "mode": mode.name,
        "precision": precision.name if precision else None,
        "autocast_dtype": str(precision.dtype).removeprefix("torch.") if precision and precision.dtype else None,
        "channels_last": precision.channels_last if precision else None,
        "compiled": mode.compiled,
    }


def skipped_entry(mode: BenchMode, reason: str) -> dict:
    """The result entry of a mode that was not run, with the reason."""
    return {**_mode_fields(mode), "status": "skipped", "reason": reason}


def _failed(mode: BenchMode, error: Exception) -> dict:
    return {**_mode_fields(mode), "status": "failed", "reason": f"{type(error).__name__}: {error}"[:500]}


def _measured(runner: ModeRunner, flops: int, batch: int, peak: dict | None,
              reference: torch.Tensor | None, baseline_s: float | None) -> dict:
    median = statistics.median(runner.times)
    achieved = flops / median
    entry = {
        **_mode_fields(runner.mode),
        "status": "ok",
        "median_s": median,
        "min_s": min(runner.times),
        "times_s": runner.times,
        "first_call_s": runner.first_call_s,
        "samples_per_s": batch / median,
        "gflops_per_s": achieved / 1e9,
        "peak_dtype": runner.mode.peak_dtype,
        "speedup_vs_fp32": baseline_s / median if baseline_s else None,
        **runner.memory,
    }
    if runner.mode.compiled:
        entry["compile_s"] = max(0.0, runner.first_call_s - median)
    entry.update(ratios_to_peak(achieved / 1e9, runner.mode.peak_dtype, peak))
    if reference is not None and runner.first_alpha is not None:
        difference = (runner.first_alpha.float() - reference.float()).abs()
        entry["alpha_max_abs_diff"] = float(difference.max())
        entry["alpha_mean_abs_diff"] = float(difference.mean())
    return entry
