"""Atomic checkpoint files, retention, best tracking, RNG capture and discovery."""
from __future__ import annotations

import os
import random
import time

import numpy as np
import pytest
import torch

from bgmatting import models
from bgmatting.engine.run_checkpoints import (
    CheckpointError,
    CheckpointManager,
    atomic_save,
    capture_rng_state,
    latest_run_checkpoint,
    load_checkpoint,
    require_training_checkpoint,
    restore_rng_state,
    run_dir_of,
)


def test_atomic_save_leaves_no_temporary_and_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "a.pt"
    atomic_save({"x": torch.arange(3)}, path)
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"x": Unpicklable()}, path)
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3))  # previous content intact
    assert sorted(os.listdir(tmp_path)) == ["a.pt"]


def test_manager_keeps_last_n_and_best(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=2, mode="min")
    best = None
    for step, value in [(1, 0.5), (2, 0.3), (3, 0.4), (4, 0.6)]:
        is_best = manager.is_better(value, best)
        best = value if is_best else best
        manager.save({"step": step, "value": value}, step, is_best=is_best)
    assert [s for s, _ in manager.step_files()] == [3, 4]
    assert manager.latest().name == "step_00000004.pt"
    assert load_checkpoint(manager.best_path)["step"] == 2
    assert not manager.is_better(float("nan"), best)


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not a bgmatting training checkpoint"):
        require_training_checkpoint({"generator": {}}, bad)
    assert CheckpointError is models.CheckpointError  # one error type for every checkpoint problem


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    atomic_save({"rng": state}, tmp_path / "rng.pt")
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_latest_run_checkpoint_picks_newest_run_and_prefers_best(tmp_path):
    stage_dir = tmp_path / "outputs" / "adobe"
    old, new = stage_dir / "2024-01-01", stage_dir / "2024-01-02"
    CheckpointManager(old / "checkpoints").save({"s": 1}, 5)
    time.sleep(0.01)
    manager = CheckpointManager(new / "checkpoints")
    manager.save({"s": 2}, 3, is_best=True)
    manager.save({"s": 3}, 4)
    assert latest_run_checkpoint(stage_dir).name == "step_00000004.pt"
    assert latest_run_checkpoint(stage_dir, prefer_best=True).name == "best.pt"
    assert latest_run_checkpoint(stage_dir, exclude=new).parent.parent == old
    assert run_dir_of(manager.latest()) is None  # a checkpoints/ folder alone does not make a run folder
    (new / "metrics.jsonl").write_text("")
    assert run_dir_of(manager.latest()) == new.resolve()
    assert latest_run_checkpoint(tmp_path / "nothing") is None
