"""Time of the optimiser step alone, per Adam implementation (for-loop, foreach, fused)."""
from __future__ import annotations

import statistics
from collections.abc import Callable

import torch

from bgmatting.benchmarks.model import OPTIMIZER_IMPLEMENTATIONS, build_generator, make_optimizer
from bgmatting.benchmarks.timing import timed_call


def time_optimizer_step(model_config: str, device: torch.device, implementations=OPTIMIZER_IMPLEMENTATIONS,
                        repeats: int = 5, progress: Callable[[str], None] = print) -> dict:
    """Seconds of one Adam step over the generator's trainable parameters (random gradients), per implementation."""
    model = build_generator(model_config).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator(device="cpu").manual_seed(0)
    for p in trainable:
        p.grad = (torch.randn(p.shape, generator=generator) * 1e-3).to(device)
    results = {"parameters": sum(p.numel() for p in trainable)}
    for implementation in implementations:
        if implementation == "fused" and device.type not in ("cpu", "cuda"):
            continue
        try:
            optimizer = make_optimizer(trainable, implementation)
            optimizer.step()  # allocates state
            times = [timed_call(optimizer.step, device)[0] for _ in range(repeats)]
            results[implementation] = {"median_s": statistics.median(times), "min_s": min(times)}
            progress(f"[optim] Adam {implementation}: {statistics.median(times) * 1e3:.1f} ms per step")
        except (RuntimeError, ValueError) as error:
            results[implementation] = {"status": "failed", "reason": str(error)[:300]}
    return results
