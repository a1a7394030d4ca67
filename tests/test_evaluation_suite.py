"""One model on several named sets: per-set scores beside the baselines, the ratio and target, validation keys,
the tables and files, and `evaluate dataset.heldout=true`."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

from bgmatting.data.synthetic.photo_set import heldout_dataset
from bgmatting.evaluation import (BASELINES, SetScore, SuiteValidation, evaluate_suite, score_baseline, suite_table,
                                  summarize, write_learning_curves)
from bgmatting.models import Generator, MattingModel


REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = (32, 48)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return {f"photo_{s}": heldout_dataset(s, n_scenes=2, cache_dir=cache) for s in SIZES}


@pytest.fixture(scope="module")
def model():
    generator = Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1, rng=torch.Generator().manual_seed(0))
    return MattingModel(generator).eval()


def test_every_set_is_scored_beside_both_baselines_and_the_references(sets, model, tmp_path):
    teacher = MattingModel(Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1)).eval()
    scores = evaluate_suite(model, sets, references={"teacher": teacher}, output_dir=tmp_path, gallery=2, title="t")
    assert list(scores) == list(sets)
    for name, score in scores.items():
        assert list(score.summaries) == ["model", "baseline: segmentation", "baseline: background_difference",
                                         "reference: teacher"]
        for kind in BASELINES:
            assert score.baselines[kind] == summarize(score_baseline(sets[name], kind))
        best = min(b["sad"] for b in score.baselines.values())
        assert score.ratio() == pytest.approx(best / score.summaries["model"]["sad"])
        assert score.ratio("reference: teacher") == pytest.approx(best / score.summaries["reference: teacher"]["sad"])
        assert score.images == 2 and score.target_met is False  # an untrained model
        gallery = cv2.imread(str(tmp_path / name / "gallery.png"))
        assert gallery is not None and (tmp_path / name / "per_image.csv").is_file()
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert [s["set"] for s in saved["sets"]] == list(sets) and saved["target_ratio"] == 2.0
    table = (tmp_path / "summary.md").read_text()
    assert table.count("| photo_32 |") == 4 and "reference: teacher" in table


def test_target_needs_twice_better_sad_and_lower_mse_and_grad():
    base = {"sad": 1.0, "mse": 0.1, "grad": 2.0, "conn": 1.0, "images": 4}
    other = dict(base, sad=2.0)

    def score(**model):
        return SetScore("s", {"model": dict(base, **model), "baseline: a": base, "baseline: b": other})

    good = score(sad=0.5, mse=0.05, grad=1.0)
    assert good.ratio() == 2.0 and good.best_baseline == "a" and good.target_met
    assert not score(sad=0.5, mse=0.05, grad=2.5).target_met  # Grad not below both
    assert not score(sad=0.5, mse=0.2, grad=1.0).target_met  # MSE not below both
    assert not score(sad=0.51, mse=0.05, grad=1.0).target_met  # ratio just under 2
    assert score(sad=0.0).ratio() == math.inf
    assert math.isnan(SetScore("s", {"model": base}).ratio()) and not SetScore("s", {"model": base}).target_met


def test_table_has_a_line_per_set_and_method(sets, model):
    table = suite_table(evaluate_suite(model, sets))
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 3 * len(sets)
    assert lines[2].startswith("| photo_32 | model | 2 |") and lines[2].rstrip().endswith("| not met |")
    assert lines[3].startswith("| photo_32 | baseline: segmentation | 2 |")


def test_validation_logs_each_set_its_baselines_once_and_the_relative_sad(sets, model, monkeypatch, tmp_path):
    import bgmatting.evaluation.suite as suite

    calls = []
    monkeypatch.setattr(suite, "score_baseline", lambda ds, kind: calls.append(kind) or score_baseline(ds, kind))
    validate = SuiteValidation(sets, limit=1)
    first, second = validate(model), validate(model)
    assert first == second and len(calls) == len(sets) * len(BASELINES)  # baselines scored once
    for name in sets:
        assert first[f"val/{name}/images"] == 1
        assert {f"val/{name}/{k}" for k in ("sad", "mse", "grad", "conn")} <= set(first)
        assert {f"val/{name}/{kind}/sad" for kind in BASELINES} <= set(first)
    expected = sum(first[f"val/{n}/sad"] / min(first[f"val/{n}/{k}/sad"] for k in BASELINES) for n in sets) / len(sets)
    assert first["val/relative_sad"] == pytest.approx(expected)
    rows = [{"step": 10, **first}, {"step": 20, **second}]
    assert cv2.imread(str(write_learning_curves(rows, tmp_path / "curves.png"))) is not None


def test_evaluate_command_scores_the_heldout_set_at_every_asked_scale(model, tmp_path, run_module):
    checkpoint = tmp_path / "tiny.pt"
    torch.save(model.checkpoint_state(), checkpoint)
    out = tmp_path / "report"
    result = run_module("bgmatting.evaluate", [f"checkpoint={checkpoint}", "dataset.heldout=true",
                        "dataset.heldout_scenes=2", "dataset.heldout_sizes=[32]", f"data.cache_dir={tmp_path / 'c'}",
                        f"output_dir={out}", "gallery=2", "progress=false", "device=cpu"], cwd=tmp_path)
    assert "| photo_32 | model | 2 |" in result.stdout
    assert json.loads((out / "summary.json").read_text())["sets"][0]["images"] == 2
    assert cv2.imread(str(out / "photo_32" / "gallery.png")) is not None
    both = subprocess.run([sys.executable, "-m", "bgmatting.evaluate", f"checkpoint={checkpoint}", "dataset.heldout=true",
                           "dataset.synthetic=true", f"output_dir={tmp_path / 'x'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")})
    assert both.returncode == 2 and "dataset.synthetic" in both.stderr and "Traceback" not in both.stderr
