"""Wall-clock timing of callables, with device synchronisation."""
from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for queued work on ``device`` (a no-op on CPU) so a timer measures finished work."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(fn: Callable[[], object], device: torch.device | str) -> tuple[float, object]:
    """Run ``fn()`` once and return (seconds, its result), synchronising ``device`` before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def time_until(fn: Callable[[], object], device: torch.device | str, min_seconds: float,
               max_calls: int = 1000) -> float:
    """Best seconds per call of ``fn`` over a run of calls lasting at least ``min_seconds`` (one untimed warm-up)."""
    timed_call(fn, device)
    best = float("inf")
    total = 0.0
    for _ in range(max_calls):
        seconds, _ = timed_call(fn, device)
        best = min(best, seconds)
        total += seconds
        if total >= min_seconds:
            break
    return best
