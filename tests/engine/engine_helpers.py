"""Helpers for engine tests: a Trainer built in process from the composed tiny config, state snapshots."""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from bgmatting.engine.recipe import build_trainer
from bgmatting.engine.run_folder import Resume
from bgmatting.engine.training import configure_process
from bgmatting.engine.distributed import DistContext, unwrap
from bgmatting.engine.loop import Trainer
from bgmatting.runtime import resolve_precision


def make_trainer(cfg, run_dir: Path, dataset) -> Trainer:
    """The Trainer ``run_training`` would build for ``cfg`` (single process, CPU, a fresh run in ``run_dir``)."""
    device = torch.device("cpu")
    precision = resolve_precision(device, cfg.precision, purpose="train")
    seed = configure_process(cfg, DistContext(), device)
    trainer = build_trainer(cfg, DistContext(), device, precision, Resume(None, None, Path(run_dir)), seed,
                            train_dataset=dataset)
    trainer._set_train_mode(True)
    return trainer


def first_batch(trainer: Trainer) -> dict:
    return next(iter(trainer.data.loader))


def training_state(trainer: Trainer) -> dict:
    """A deep copy of every trained network's state dict (parameters and buffers) and of every optimiser's state."""
    return {
        "networks": {name: {k: v.detach().clone() for k, v in unwrap(m).state_dict().items()}
                     for name, m in trainer.stage.trained.items()},
        "optimizers": {name: copy.deepcopy(opt.state_dict()) for name, opt in trainer.optimizers.items()},
    }


def assert_same_state(before: dict, after: dict) -> None:
    """Bitwise equality of two :func:`training_state` snapshots (nested dicts / lists of tensors and numbers)."""
    def compare(a, b, where: str) -> None:
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), f"{where} changed"
        elif isinstance(a, dict):
            assert a.keys() == b.keys(), where
            for key in a:
                compare(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b)):
                compare(x, y, f"{where}[{i}]")
        else:
            assert a == b, f"{where}: {a!r} != {b!r}"

    compare(before, after, "state")


def nonfinite_names(obj, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors with NaN or infinity in a nested checkpoint (the test's own walk)."""
    if isinstance(obj, torch.Tensor):
        return [prefix] if obj.is_floating_point() and not torch.isfinite(obj).all() else []
    if isinstance(obj, dict):
        return [n for k, v in obj.items() for n in nonfinite_names(v, f"{prefix}.{k}")]
    if isinstance(obj, (list, tuple)):
        return [n for i, v in enumerate(obj) for n in nonfinite_names(v, f"{prefix}[{i}]")]
    return []
