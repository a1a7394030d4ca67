"""Validation during training, scored the way ``python -m bgmatting.evaluate`` scores a checkpoint.

The model trains in the training precision (e.g. bf16 autocast on a CPU with native bf16); validation and the
final evaluation score it in the inference precision that ``evaluate`` and ``infer`` pick on the same machine
(``runtime.resolve_precision(device, "auto", purpose="infer")``: fp32 on every CPU), on a copy, so that the score
``best.pt`` records is what ``evaluate`` reproduces from the file.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn

from bgmatting.engine.distributed import unwrap
from bgmatting.engine.settings import ConfigError
from bgmatting.runtime import resolve_precision


def for_inference(model: nn.Module, device: torch.device | str) -> nn.Module:
    """A copy of the bare matting ``model`` in eval mode, in the inference precision of ``device``."""
    copied = copy.deepcopy(unwrap(model)).eval()
    return copied.set_precision(resolve_precision(device, "auto", purpose="infer"))


class Validation:
    """``callable(model) -> {"val/...": value}``: ``score`` (e.g. :class:`bgmatting.evaluation.SuiteValidation`)
    of an inference copy of the model; the first call checks that ``best_metric`` is among the values (a
    ConfigError naming the known keys otherwise, so that a mistyped metric never leaves a run without best.pt)."""

    def __init__(self, score: Callable[[nn.Module], dict[str, float]], device: torch.device | str,
                 best_metric: str) -> None:
        self.score, self.device, self.best_metric = score, device, best_metric
        self._checked = False

    def __call__(self, model: nn.Module) -> dict[str, float]:
        values = self.score(for_inference(model, self.device))
        if not self._checked:
            require_metric(self.best_metric, values)
            self._checked = True
        return values


def require_metric(name: str, keys: Iterable[str]) -> None:
    """ConfigError when ``checkpoint.best_metric`` ``name`` is not one of the validation ``keys``."""
    keys = sorted(keys)
    if name not in keys:
        shown = ", ".join(k for k in keys if k.endswith(("relative_sad", "/sad", "/mse")))[:300]
        raise ConfigError(f"checkpoint.best_metric={name}: validation logs no such value; e.g. {shown}")
