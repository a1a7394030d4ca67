"""Fake images for the real-data stage's discriminator: the predicted subject moved onto another background.

Everything is in network space [-1, 1]; shapes B x C x H x W. Randomness comes from an explicit
``torch.Generator`` so a run (and its resumption) is reproducible.
"""
from __future__ import annotations

import torch

from bgmatting.data.compositing import composite
from bgmatting.space import from_network


def horizontal_shifts(
    segmentation: torch.Tensor, rng: torch.Generator, margin: int = 10, threshold: float = 0.1
) -> list[int]:
    """One random horizontal offset per sample that keeps the subject inside the frame.

    ``segmentation``: B x 1 x H x W in [0, 1]. The subject's columns are those where S > ``threshold``;
    the offset n (positive = right) is drawn uniformly from [-(x1 - margin), W - x2 - margin), as in the
    public code. Samples whose subject is empty or too wide for that range get offset 0.
    """
    width = segmentation.shape[-1]
    columns = (segmentation > threshold).flatten(1, 2).any(dim=1)  # B x W (any over channel and rows)
    shifts = []
    for sample_columns in columns:
        present = torch.nonzero(sample_columns).flatten()
        if present.numel() == 0:
            shifts.append(0)
            continue
        x1, x2 = int(present[0]), int(present[-1])
        low, high = -(x1 - margin), width - x2 - margin
        shifts.append(int(torch.randint(low, high, (1,), generator=rng)) if high > low else 0)
    return shifts


def fake_backgrounds(
    captured: torch.Tensor, targets: torch.Tensor, rng: torch.Generator, target_probability: float = 0.5
) -> torch.Tensor:
    """Per sample: a target background with probability ``target_probability``, else another sample's
    captured background (the batch rolled by a random non-zero offset; the sample's own for batch size 1).

    The public code draws one coin for the whole batch and uses a random permutation; per-sample coins and a
    derangement give the discriminator the same two kinds of fakes with less variance.
    """
    batch = captured.shape[0]
    offset = int(torch.randint(1, batch, (1,), generator=rng)) if batch > 1 else 0
    others = torch.roll(captured, shifts=offset, dims=0)
    use_target = torch.rand(batch, generator=rng) < target_probability
    return torch.where(use_target.view(batch, 1, 1, 1).to(captured.device), targets, others)


def shifted_composite(
    alpha: torch.Tensor, foreground: torch.Tensor, background: torch.Tensor, shifts: list[int]
) -> torch.Tensor:
    """Composite of alpha/foreground rolled horizontally by ``shifts[i]`` pixels over ``background``.

    ``alpha`` B x 1 x H x W and ``foreground`` B x 3 x H x W in network space; differentiable in both.
    """
    rolled_alpha = torch.stack([torch.roll(a, s, dims=-1) for a, s in zip(alpha, shifts)])
    rolled_fg = torch.stack([torch.roll(f, s, dims=-1) for f, s in zip(foreground, shifts)])
    return composite(from_network(rolled_alpha), rolled_fg, background)
