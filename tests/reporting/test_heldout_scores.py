"""Scores on the held-out photo set: keys, baselines equal to the evaluation library's, table, command."""
from __future__ import annotations

import json
import math

import cv2
import pytest
import torch

from bgmatting.evaluation import BASELINES, baseline_rows, evaluate_model, summarize
from bgmatting.models import Generator
from bgmatting.reporting import heldout
from bgmatting.reporting.__main__ import main

SIZES = (32, 48)


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    return heldout.SetOptions(n_scenes=2, cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def generator():
    return Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1, rng=torch.Generator().manual_seed(0))


def test_scores_at_every_scale_with_both_baselines(generator, options):
    scores = heldout.score_generator(generator, sizes=SIZES, options=options)
    assert sorted(scores) == list(SIZES)
    for size, score in scores.items():
        dataset = options.dataset(size)
        assert score.size == size and score.images == 2
        assert set(score.baselines) == set(BASELINES)
        for kind in BASELINES:
            assert score.baselines[kind] == summarize(baseline_rows(dataset, kind))
        assert score.model == summarize(evaluate_model(generator, dataset, device="cpu", precision="fp32",
                                                       progress=False))
        best = min(s["sad"] for s in score.baselines.values())
        assert score.ratio == pytest.approx(best / score.model["sad"])
        as_dict = score.as_dict()
        assert {"sad", "mse", "grad", "conn"} <= set(as_dict["model"])
        assert as_dict["best_baseline"] in BASELINES and as_dict["target_met"] is False  # an untrained model
        json.dumps(as_dict)


def test_target_needs_twice_better_sad_and_lower_mse_and_grad():
    base = {"sad": 1.0, "mse": 0.1, "grad": 2.0, "conn": 1.0, "images": 4}
    other = dict(base, sad=2.0)
    good = heldout.ScaleScore(96, dict(base, sad=0.5, mse=0.05, grad=1.0), {"a": base, "b": other})
    assert good.ratio == 2.0 and good.best_baseline == "a" and good.target_met
    assert not heldout.ScaleScore(96, dict(base, sad=0.5, mse=0.05, grad=2.5), {"a": base, "b": other}).target_met
    assert not heldout.ScaleScore(96, dict(base, sad=0.51, mse=0.05, grad=1.0), {"a": base, "b": other}).target_met
    assert heldout.ScaleScore(96, dict(base, sad=0.0), {"a": base}).ratio == math.inf


def test_markdown_table_has_a_line_per_scale(generator, options):
    table = heldout.heldout_table(heldout.score_generator(generator, sizes=SIZES, options=options))
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(SIZES)
    assert lines[2].startswith("| 32 px | 2 |") and lines[3].startswith("| 48 px | 2 |")
    assert "segmentation SAD" in lines[0] and "not met" in lines[2]


def test_gallery_of_the_generator(generator, options, tmp_path):
    rows = heldout.gallery_rows(generator.train(), options.dataset(32), [0, 1])
    assert generator.training  # restored
    assert [r.name for r in rows] == ["#0", "#1"]
    assert list(rows[0].baselines) == [heldout.BASELINE_LABELS[k] for k in BASELINES]
    assert rows[0].predicted.shape == (32, 32) and 0.0 <= rows[0].predicted.min() <= rows[0].predicted.max() <= 1.0
    path = heldout.write_heldout_gallery(generator, tmp_path / "g.png", size=32, indices=(0, 1, 5), options=options)
    assert cv2.imread(str(path)) is not None


def test_command_scores_a_checkpoint(generator, options, tmp_path, monkeypatch, capsys):
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"generator": generator.state_dict(), "model_config": generator.config}, checkpoint)
    monkeypatch.setenv("BGMATTING_CACHE", options.cache_dir)
    out = tmp_path / "report"
    assert main([str(checkpoint), "--sizes", "32", "--scenes", "2", "--gallery", "2", "--out", str(out)]) == 0
    assert "| 32 px | 2 |" in capsys.readouterr().out
    assert json.loads((out / "heldout_scores.json").read_text())["32"]["images"] == 2
    assert (out / "heldout_scores.md").is_file() and cv2.imread(str(out / "gallery_32.png")) is not None


def test_command_bad_checkpoint_is_one_line_and_status_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.pt" in err[0]
