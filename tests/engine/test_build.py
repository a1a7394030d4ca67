"""Config-to-object helpers: resume and teacher discovery, optimisers, LR schedules."""
from __future__ import annotations

import pytest
import torch

from bgmatting.engine.build import build_optimizer, build_schedule, find_resume_checkpoint, resolve_teacher
from bgmatting.engine.checkpointing import CheckpointError, CheckpointManager


def _run(root, stage, name, steps, best=None):
    manager = CheckpointManager(root / stage / name / "checkpoints")
    for step in steps:
        manager.save({"step": step}, step, is_best=step == best)
    return root / stage / name


def test_find_resume_checkpoint_modes(tmp_path):
    outputs = tmp_path / "outputs"
    old = _run(outputs, "adobe", "old", [2, 4])
    current = outputs / "adobe" / "current"
    current.mkdir(parents=True)
    assert find_resume_checkpoint("auto", current, outputs / "adobe") is None  # fresh folder: start over
    assert find_resume_checkpoint(False, current, outputs / "adobe") is None
    assert find_resume_checkpoint(True, current, outputs / "adobe") == old / "checkpoints" / "step_00000004.pt"
    assert find_resume_checkpoint(str(old), current, outputs / "adobe").name == "step_00000004.pt"
    assert find_resume_checkpoint("auto", old, outputs / "adobe").name == "step_00000004.pt"
    with pytest.raises(CheckpointError, match="no checkpoint of this stage"):
        find_resume_checkpoint(True, current, outputs / "real")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        find_resume_checkpoint(str(tmp_path / "missing.pt"), current, outputs / "adobe")


def test_resolve_teacher_auto_explicit_and_missing(tmp_path):
    outputs = tmp_path / "outputs"
    with pytest.raises(CheckpointError, match="stage=real needs a teacher.*teacher="):
        resolve_teacher("auto", outputs)
    run = _run(outputs, "adobe", "r1", [3, 6], best=3)
    assert resolve_teacher("auto", outputs) == run / "checkpoints" / "best.pt"
    assert resolve_teacher(str(run), outputs) == run / "checkpoints" / "best.pt"
    explicit = run / "checkpoints" / "step_00000006.pt"
    assert resolve_teacher(str(explicit), outputs) == explicit
    with pytest.raises(CheckpointError, match=r"teacher=.*nope\.pt: checkpoint not found"):
        resolve_teacher(str(tmp_path / "nope.pt"), outputs)


def test_optimizer_skips_frozen_parameters_and_takes_config_values():
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    module[0].requires_grad_(False)
    opt = build_optimizer(module, {"name": "adam", "lr": 1e-4, "betas": [0.5, 0.9], "eps": 1e-8, "weight_decay": 0.0})
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == 6
    assert opt.param_groups[0]["betas"] == (0.5, 0.9)
    with pytest.raises(ValueError, match="unknown optimiser"):
        build_optimizer(module, {"name": "sgd", "lr": 1.0})


def test_cosine_schedule_with_warmup():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1.0)
    sched = build_schedule(opt, {"name": "cosine", "warmup_steps": 2, "final_factor": 0.1}, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(0.9 * torch.pi)).item()))
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    constant = build_schedule(torch.optim.Adam([param], lr=2.0), None, total_steps=5)
    assert constant.get_last_lr() == [2.0]
