"""``torch.compile`` of the training step against eager, on the models and crops the quickstarts train.

For each (model config, crop side): the supervised stage's training step (forward + loss + backward + Adam,
:func:`bgmatting.benchmarks.model.make_runner`) in the device's automatic training precision, eager and
compiled (inductor), from the same weights on the same batch. The compiled step's first calls (compilation)
are timed apart; then eager and compiled calls alternate. A refining model's step breaks the graph where it
selects patches (data-dependent shapes), so compile sees several graphs there.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable

import torch

from bgmatting.benchmarks.inputs import make_batch
from bgmatting.benchmarks.model import configured_model, make_runner
from bgmatting.benchmarks.modes import BenchMode, compiled_variant
from bgmatting.benchmarks.timing import timed_call
from bgmatting.runtime import resolve_precision


def bench_train_compile(cases: list[tuple[str, int]], batch: int = 4, repeats: int = 3,
                        device: torch.device = torch.device("cpu"),
                        progress: Callable[[str], None] = print) -> list[dict]:
    """One row per (model config name, crop side): eager and compiled seconds per step, compile seconds,
    the speed-up and the largest alpha difference between the two first steps."""
    precision = resolve_precision(device, "auto", purpose="train")
    eager_mode = BenchMode(precision.name, precision)
    rows = []
    for name, side in cases:
        data = {k: v.to(device) for k, v in make_batch(batch, side).items()}
        model = configured_model(name, device=device)
        runners = [make_runner("train", model, mode, data) for mode in (eager_mode, compiled_variant(eager_mode))]
        firsts = [timed_call(runner.step, device) for runner in runners]
        timed_call(runners[1].step, device)  # a compiled step may recompile once more (optimiser state guards)
        for repeat in range(repeats):
            for runner in runners:
                runner.times.append(timed_call(runner.step, device)[0])
            progress(f"[train_compile] {name} {side}px batch {batch} repeat {repeat + 1}/{repeats}: eager "
                     f"{runners[0].times[-1]:.3f} s, compiled {runners[1].times[-1]:.3f} s")
        eager_s, compiled_s = (statistics.median(r.times) for r in runners)
        rows.append({
            "model": name, "side": side, "batch": batch, "precision": precision.name,
            "eager_s": eager_s, "compiled_s": compiled_s, "speedup": eager_s / compiled_s,
            "compile_s": max(0.0, firsts[1][0] - compiled_s), "eager_times_s": runners[0].times,
            "compiled_times_s": runners[1].times,
            "alpha_max_abs_diff": float((firsts[0][1].float() - firsts[1][1].float()).abs().max()),
        })
        progress(f"[train_compile] {name} {side}px: compiled {rows[-1]['speedup']:.2f}x eager "
                 f"(compilation {rows[-1]['compile_s']:.0f} s)")
    return rows
