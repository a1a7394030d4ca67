"""The starter weights shipped inside the package: the file loads, holds finite weights and matches its card; with no
checkpoint, infer mattes a capture with them (and says so), and ``starter`` names them anywhere a checkpoint goes."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from bgmatting import infer, metrics
from bgmatting.data.synthetic.capture_set import capture_dataset
from bgmatting.io import read_alpha
from bgmatting.models import load_matting_model
from bgmatting.models.starter import STARTER, is_starter, resolve_checkpoint, starter_card, starter_path


def test_the_shipped_weights_load_are_finite_and_match_their_card():
    path, card = starter_path(), starter_card()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["sha256"] and path.stat().st_size == card["bytes"]
    assert card["bytes"] < 3 * 2**20  # the budget for the package
    model = load_matting_model(path)
    assert model.refiner is not None and model.config == json.loads(json.dumps(card["model_config"]))
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    assert card["seed"] == 0 and card["precision"] == "fp32" and card["stages"]["adobe"]["steps"] > 0
    assert {"captures_256", "captures_512"} <= set(card["stages"][card["stage"]]["tables"])


def test_starter_is_what_no_checkpoint_and_the_name_mean():
    assert is_starter(None) and is_starter(STARTER) and not is_starter("ckpt.pt")
    assert resolve_checkpoint(None) == resolve_checkpoint("starter") == starter_path()
    assert resolve_checkpoint("ckpt.pt") == "ckpt.pt"


def test_infer_without_a_checkpoint_mattes_a_capture_with_the_starter_weights(tmp_path, capsys):
    unit = capture_dataset(256, n_stills=1, n_clips=0, cache_dir=tmp_path / "cache", workers=1)[0]
    code = infer.main(["--input", str(unit.input_path), "--background", str(unit.plate_path),
                       "--output", str(tmp_path / "out"), "--no-progress"])
    log = capsys.readouterr()
    assert code == 0, log.err
    assert "starter weights: the project's quickstart" in log.out + log.err
    alpha = read_alpha(next((tmp_path / "out" / "alpha").iterdir()))
    truth = unit.frames[0].alpha()
    inside, outside = alpha[truth > 0.99], alpha[truth < 0.01]
    assert inside.mean() > 0.9 and outside.mean() < 0.05  # the subject, and not the scene
    assert metrics.sad(alpha, truth) < metrics.sad(np.zeros_like(truth), truth) / 5
