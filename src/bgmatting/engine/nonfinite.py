"""Non-finite training steps: naming the bad loss term, and undoing a step that is skipped.

With ``trainer.nonfinite=stop`` a NaN or infinite loss (or gradient norm) ends the run with
:class:`NonFiniteLossError`; with ``skip`` the step is undone completely (:class:`StepUndo`: weights, BatchNorm
statistics, optimiser and scaler states) and the run goes on.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from bgmatting.engine.distributed import unwrap


class NonFiniteLossError(FloatingPointError):
    """A loss term (or a gradient norm) became NaN or infinite; the message names the step and the term."""


def non_finite_terms(values: dict[str, float], step: int, epoch: int, optimizer: str) -> str | None:
    """A description of the NaN or infinite ``values`` (loss term -> value) of training step ``step`` (1-based),
    or None when all are finite."""
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if not bad:
        return None
    return (f"non-finite loss at step {step} (epoch {epoch}): "
            + ", ".join(f"term '{name}' = {values[name]}" for name in bad) + f" (optimiser '{optimizer}')")


class StepUndo:
    """A copy of everything one training step changes, taken before it, to undo the step exactly."""

    def __init__(self, networks: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                 scalers: dict[str, torch.amp.GradScaler]):
        self.networks, self.optimizers, self.scalers = networks, optimizers, scalers
        self.saved = {
            "networks": {name: {k: v.detach().clone() for k, v in unwrap(m).state_dict().items()}
                         for name, m in networks.items()},
            "optimizers": {name: copy.deepcopy(opt.state_dict()) for name, opt in optimizers.items()},
            "scalers": {name: scaler.state_dict() for name, scaler in scalers.items()},
        }

    def restore(self) -> None:
        """Back to the state at construction, gradients cleared."""
        for name, module in self.networks.items():
            unwrap(module).load_state_dict(self.saved["networks"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(self.saved["optimizers"][name])
            opt.zero_grad(set_to_none=True)
        for name, scaler in self.scalers.items():
            if self.saved["scalers"][name]:
                scaler.load_state_dict(self.saved["scalers"][name])
