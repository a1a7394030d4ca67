"""Start a model from another model's weights as far as they fit: ``init_from=PATH`` and the real stage's
student initialised from its teacher.

A trained plain generator can start a refining model: its base takes every tensor the checkpoint has, the
refine head and the refiner keep their fresh initialisation. What was loaded and what is new is reported in
one line. A tensor whose shape differs (another architecture) is an error, never silently skipped.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgmatting.models import CheckpointError, MattingModel, load_matting_model

NETWORKS = ("generator", "refiner")  # the MattingModel.checkpoint_state entries that hold weights


@dataclass
class InitReport:
    """Which tensors (``network.key``) an initialisation loaded, which the model has but the source lacks
    (``new``: they keep their initialisation) and which the source has but the model lacks (``unused``)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    total: Counter = field(default_factory=Counter)  # tensors per network of the model

    def line(self) -> str:
        """One log line, e.g. ``init from X: loaded generator 322/324, refiner 0/8 tensors; new: generator.error_head
        (2), refiner.coarse_stage (4), refiner.fine_stage (4); unused: none``."""
        loaded = Counter(key.split(".", 1)[0] for key in self.loaded)
        counts = ", ".join(f"{net} {loaded[net]}/{self.total[net]}" for net in NETWORKS if self.total[net])
        return (f"init from {self.source}: loaded {counts} tensors; new: {_modules(self.new)}; "
                f"unused: {_modules(self.unused)}")


def _modules(keys: list[str]) -> str:
    """``generator.error_head.conv.weight``, ... -> ``generator.error_head (2)``, ...; ``none`` when empty."""
    groups = Counter(".".join(key.split(".")[:2]) for key in keys)
    return ", ".join(f"{name} ({count})" for name, count in groups.items()) or "none"


def load_matching_weights(model: MattingModel, state: Mapping[str, Any], source: str) -> InitReport:
    """Copy into ``model`` every tensor of ``state`` (entries as :meth:`MattingModel.checkpoint_state` gives
    them: ``generator`` and optionally ``refiner`` state dicts) whose name it has; returns the report.

    Raises :class:`~bgmatting.models.CheckpointError` when a shared name has another shape or nothing at all
    was loaded (not the same kind of network).
    """
    report = InitReport(source)
    for name in NETWORKS:
        module = getattr(model, name)
        given = dict(state.get(name) or {})
        if module is None:
            report.unused += [f"{name}.{key}" for key in given]
            continue
        target = module.state_dict()
        report.total[name] = len(target)
        mismatched = [f"{name}.{k}: {tuple(given[k].shape)} vs {tuple(v.shape)}"
                      for k, v in target.items() if k in given and given[k].shape != v.shape]
        if mismatched:
            raise CheckpointError(f"{source} does not fit the model ({len(mismatched)} shape mismatch(es): "
                                  f"{'; '.join(mismatched[:5])}); it holds another architecture")
        matching = {k: given[k] for k in target if k in given}
        module.load_state_dict({**target, **matching})
        report.loaded += [f"{name}.{k}" for k in matching]
        report.new += [f"{name}.{k}" for k in target if k not in given]
        report.unused += [f"{name}.{k}" for k in given if k not in target]
    if not report.loaded:
        raise CheckpointError(f"{source}: none of its tensors fits the model (unused: {_modules(report.unused)})")
    return report


def initialize_from(model: MattingModel, path: str | os.PathLike) -> InitReport:
    """:func:`load_matching_weights` from a checkpoint file: ours (with or without a refiner) or an original
    release's generator state dict (read by :func:`bgmatting.models.load_matting_model`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"init_from={path}: no such checkpoint file")
    return load_matching_weights(model, load_matting_model(path).checkpoint_state(), str(path))
