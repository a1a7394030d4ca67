"""What every stage shares: loss terms, updates, the run's networks and the ``Stage`` base class.

A stage owns its networks and turns a batch into a sequence of :class:`Update` s: named, weighted loss
terms and the optimiser that minimises their sum. The loop (``engine.loop``) runs the updates in order
(backward, clipping, optimiser step, logging, NaN checks), so nothing about optimisation lives here.

Batches hold tensors in [0, 1] (see the sample dicts in the data package). The trained network and the
teacher are :class:`bgmatting.models.MattingModel` s, called with ``raw=True`` for their network-space
outputs (a :class:`~bgmatting.models.RawMatte`); the losses work in network space [-1, 1]
(:mod:`bgmatting.losses`), and the raw outputs bring the targets there (``raw.truth``, ``raw.coarse_truth``).
A stage is built from its config section (``configs/stage/*.yaml``, ``_target_`` = the class) with the
:class:`Networks` of the run, the precision and a seed. Loss weights are config values; the stages' defaults are
the paper's.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from bgmatting.models import RawMatte
from bgmatting.models.blocks import resize_bilinear
from bgmatting.runtime import Precision
from bgmatting.space import from_network

#: Batch keys of the matting model's inputs, in its argument order (all in [0, 1]).
MODEL_INPUTS = ("image", "background", "segmentation", "motion")


@dataclass
class LossTerm:
    """One named term of an objective: ``weight * value`` enters the sum."""

    value: torch.Tensor
    weight: float = 1.0


@dataclass
class Update:
    """An optimiser step the loop should take: minimise the weighted sum of ``terms`` with ``optimizer``.

    ``extra`` holds scalars to log that are not part of the objective (e.g. the discriminator's real and fake parts).
    """

    optimizer: str
    terms: dict[str, LossTerm]
    extra: dict[str, float] = field(default_factory=dict)

    def total(self) -> torch.Tensor:
        """The objective: the weighted sum of the terms of non-zero weight (float32 scalar)."""
        active = [t.weight * t.value for t in self.terms.values() if t.weight != 0]
        if not active:
            raise ValueError(f"update of {self.optimizer!r} has no term with a non-zero weight")
        return torch.stack([a.float() for a in active]).sum()

    def values(self) -> dict[str, float]:
        """Each term's unweighted value as a float (one device transfer for all)."""
        names = list(self.terms)
        return dict(zip(names, torch.stack([self.terms[n].value.detach().float() for n in names]).tolist()))

    def scalars(self, values: dict[str, float], total: torch.Tensor, grad_norm: float | None) -> dict[str, float]:
        """What the loop logs of a step of this update: ``loss/<term>``, ``loss/<optimizer>_total``, the extras
        and, when gradients were clipped, ``grad_norm/<optimizer>``."""
        scalars = {f"loss/{name}": value for name, value in values.items()}
        scalars[f"loss/{self.optimizer}_total"] = float(total.detach())
        scalars.update({f"loss/{k}": v for k, v in self.extra.items()})
        if grad_norm is not None:
            scalars[f"grad_norm/{self.optimizer}"] = grad_norm
        return scalars


def alpha_threshold_raw(alpha_threshold: float) -> float:
    """An alpha threshold given in [0, 1] expressed in network space [-1, 1]."""
    return 2.0 * float(alpha_threshold) - 1.0


def check_weights(weights: Mapping[str, float], allowed: tuple[str, ...], stage: str) -> dict[str, float]:
    unknown = sorted(set(weights) - set(allowed))
    if unknown:
        raise ValueError(f"stage {stage}: unknown loss term(s) {unknown}; known terms: {list(allowed)}")
    return {name: float(weights.get(name, 0.0)) for name in allowed}


@dataclass
class Networks:
    """The networks of a run: the trained matting ``model`` (a :class:`~bgmatting.models.MattingModel`, possibly
    compiled or DDP-wrapped), and for stage real the trained ``discriminator`` and the frozen ``teacher`` (loaded
    from ``teacher_path``)."""

    model: nn.Module
    discriminator: nn.Module | None = None
    teacher: nn.Module | None = None
    teacher_path: str | None = None


class Stage:
    """Base class: the trained networks by optimiser name (``trained``: ``generator`` = the matting model, and
    the discriminator where the stage trains one), the precision of the other networks' inputs, and the last
    batch's visuals. The matting model carries its own precision.

    Subclasses implement :meth:`updates`; ``name`` names the run folder (``outputs/<name>/...``).
    """

    name = "stage"

    def __init__(self, networks: Networks, precision: Precision | None = None, name: str | None = None,
                 required: tuple[str, ...] = ()):
        missing = [k for k in required if getattr(networks, k) is None]
        if missing:
            raise ValueError(f"stage {name or self.name} needs a {' and a '.join(missing)}")
        self.name = name or self.name
        self.trained = {"generator": networks.model}
        if networks.discriminator is not None and "discriminator" in required:
            self.trained["discriminator"] = networks.discriminator
        self.precision = precision
        self._visuals: dict[str, torch.Tensor] = {}

    # -- hooks for the loop
    def updates(self, batch: dict, step: int, epoch: int) -> Iterator[Update]:
        """The optimiser steps of one batch, in order (the loop computes each under autocast, then steps)."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> None:
        """Called by the loop after it set the trained networks' mode (frozen helpers stay in eval)."""

    def scalars(self, epoch: int) -> dict[str, float]:
        """Stage-specific values to log (e.g. the current supervision weight)."""
        return {}

    def visuals(self) -> dict[str, torch.Tensor]:
        """Images of the last training batch (B x C x H x W in [0, 1]) for the TensorBoard grid."""
        return self._visuals

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    # -- helpers
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.precision.prepare_input(x) if self.precision is not None else x

    @staticmethod
    def _raw_matte(model: nn.Module, batch: dict) -> RawMatte:
        """``model``'s network-space outputs for the batch's inputs (float32, see :class:`RawMatte`)."""
        return model(*(batch[key] for key in MODEL_INPUTS), raw=True)

    def _require(self, batch: dict, keys: tuple[str, ...]) -> None:
        missing = [k for k in keys if k not in batch]
        if missing:
            raise KeyError(f"stage {self.name} needs batch keys {missing}; the batch has {sorted(batch)}")


def visuals_of(batch: dict, raw: RawMatte, reference_alpha: torch.Tensor, composite: torch.Tensor) -> dict[str, torch.Tensor]:
    """First samples of the batch for the image grid, all B x C x H x W in [0, 1].

    ``raw``: the trained model's outputs; ``reference_alpha``: true alpha (Adobe) or the teacher's (real), in
    [0, 1]; ``composite``: a composite of the prediction in [0, 1] (over the clean background, or the real
    stage's shifted fake). A refining model adds its error map (resized to the frame).
    """
    n = min(4, raw.alpha.shape[0])
    alpha = from_network(raw.alpha[:n].detach()).clamp(0, 1)
    fg = from_network(raw.foreground[:n].detach()).clamp(0, 1)
    visuals = {
        "image": batch["image"][:n],
        "captured_background": batch["background"][:n],
        "segmentation": batch["segmentation"][:n],
        "motion": batch["motion"][:n, :1],
        "alpha_pred": alpha,
        "alpha_reference": reference_alpha[:n].detach().clamp(0, 1),
        "foreground_pred": fg * alpha,
        "composite_pred": composite[:n].detach().clamp(0, 1),
    }
    if raw.error is not None:
        visuals["error_pred"] = resize_bilinear(raw.error[:n].detach(), tuple(alpha.shape[-2:])).clamp(0, 1)
    return {k: v.detach().float() for k, v in visuals.items()}
