"""The run folder: which checkpoint a launch resumes, which teacher stage real finds."""
from __future__ import annotations

import pytest

from bgmatting.engine.run_checkpoints import CheckpointError, CheckpointManager
from bgmatting.engine.run_folder import find_resume_checkpoint, resolve_teacher


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
