"""Config sections to objects: optimisers and learning-rate schedules through their ``_target_``."""
from __future__ import annotations

import math

import pytest
import torch

from bgmatting.engine.recipe import build_optimizer, build_schedule
from bgmatting.engine.settings import ConfigError

ADAM = {"_target_": "torch.optim.Adam", "_partial_": True}
COSINE = {"_target_": "bgmatting.engine.schedules.cosine", "_partial_": True}


def test_optimizer_skips_frozen_parameters_and_takes_config_values():
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    module[0].requires_grad_(False)
    opt = build_optimizer(module, {**ADAM, "lr": 1e-4, "betas": [0.5, 0.9], "eps": 1e-8, "weight_decay": 0.0})
    assert isinstance(opt, torch.optim.Adam) and sum(p.numel() for g in opt.param_groups for p in g["params"]) == 6
    assert tuple(opt.param_groups[0]["betas"]) == (0.5, 0.9) and opt.param_groups[0]["lr"] == 1e-4
    assert isinstance(build_optimizer(module, {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}),
                      torch.optim.AdamW)
    with pytest.raises(ConfigError, match=r"^optim\.generator: .*torch\.optim\.Bogus"):
        build_optimizer(module, {"_target_": "torch.optim.Bogus", "_partial_": True, "lr": 1.0})
    with pytest.raises(ConfigError, match=r"^optim\.discriminator: Invalid learning rate: -0\.001"):
        build_optimizer(module, {**ADAM, "lr": -1e-3}, "discriminator")


def test_cosine_schedule_with_warmup_and_the_constant_one():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1.0)
    sched = build_schedule(opt, {**COSINE, "warmup_steps": 2, "final_factor": 0.1}, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(0.9 * math.pi)))
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    constant = build_schedule(torch.optim.Adam([param], lr=2.0),
                              {"_target_": "bgmatting.engine.schedules.constant", "_partial_": True}, total_steps=5)
    assert constant.get_last_lr() == [2.0]
    with pytest.raises(ConfigError, match=r"^optim\.schedule: .*final_factor"):
        build_schedule(opt, {"_target_": "bgmatting.engine.schedules.constant", "_partial_": True,
                             "final_factor": 0.1}, total_steps=5)


def test_a_schedule_placed_at_a_taken_step_continues_from_the_new_base_rate():
    """What a resumed run with a new learning rate does: the same factor at the resumed step, a new base."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1.0)
    sched = build_schedule(opt, {**COSINE, "warmup_steps": 2, "final_factor": 0.1}, total_steps=12)
    for _ in range(5):
        opt.step()
        sched.step()
    factor = opt.param_groups[0]["lr"]
    for group in opt.param_groups:
        group["initial_lr"] = 0.5
    moved = build_schedule(opt, {**COSINE, "warmup_steps": 2, "final_factor": 0.1}, total_steps=12,
                           last_step=sched.last_epoch - 1)
    assert moved.last_epoch == sched.last_epoch == 5 and opt.param_groups[0]["lr"] == pytest.approx(0.5 * factor)
