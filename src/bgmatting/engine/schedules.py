"""Learning-rate schedules: a factor of the base learning rate per training step, as ``LambdaLR`` s.

Configs name them with ``_partial_: true`` (``configs/optim/*.yaml``); the engine calls the partial with the
optimiser and the run's total steps. ``last_step`` places a new schedule at a step already taken (a resumed run
whose learning rate changed: the optimiser's param groups must hold ``initial_lr``).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR


def _warmed_up(warmup_steps: int, factor: Callable[[int], float]) -> Callable[[int], float]:
    """``factor`` after a linear warmup: (step + 1) / warmup_steps for the first ``warmup_steps`` steps."""
    def with_warmup(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        return factor(step)
    return with_warmup


def constant(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
             last_step: int = -1) -> LambdaLR:
    """Factor 1 (after an optional linear warmup): the public code's constant learning rate."""
    return LambdaLR(optimizer, _warmed_up(int(warmup_steps), lambda step: 1.0), last_epoch=last_step)


def cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, final_factor: float = 0.05,
           last_step: int = -1) -> LambdaLR:
    """Cosine decay from 1 to ``final_factor`` over the steps after the warmup (ours, for short CPU runs)."""
    warmup, final = int(warmup_steps), float(final_factor)

    def decay(step: int) -> float:
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, _warmed_up(warmup, decay), last_epoch=last_step)
