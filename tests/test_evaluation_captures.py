"""Capture sets scored end to end: the model through infer's own pipeline (the same alpha `bgmatting.matte` gives),
band and whole-frame metrics, dtSSD on clips, three baselines, inside the suite, per-epoch validation and
`evaluate dataset.captures=true`."""
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

import bgmatting
from bgmatting import metrics
from bgmatting.io import DataError
from bgmatting.data.synthetic.capture_set import CaptureSet
from bgmatting.data.synthetic.photo_set import heldout_dataset
from bgmatting.evaluate import run as run_evaluate
from bgmatting.evaluation import SuiteValidation, evaluate, evaluate_suite, suite_table
from bgmatting.evaluation.captures import CAPTURE_BASELINES, score_captures
from bgmatting.inference.captures import CapturePipeline, capture_test_set
from bgmatting.models import Generator, MattingModel

REPO_ROOT = Path(__file__).resolve().parents[1]
SET = dict(n_stills=2, n_clips=2, n_frames=3, network_size=64)  # 2 stills, a fixed and a hand-held clip
METRIC_KEYS = ("sad", "mse", "grad", "conn", "sad_frame", "mse_frame", "false_fg")


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    return capture_test_set(64, cache_dir=tmp_path_factory.mktemp("cache"), workers=1, **SET)


@pytest.fixture(scope="module")
def model():
    generator = Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1, rng=torch.Generator().manual_seed(0))
    return MattingModel(generator).eval()


@pytest.fixture(scope="module")
def scores(model, captures):
    return score_captures(model, captures, gallery=2)


def test_every_frame_gets_finite_band_and_whole_frame_metrics(scores, captures):
    assert [r["name"] for r in scores.rows] == [f.name for u in captures for f in u.frames]
    assert list(scores.baselines) == list(CAPTURE_BASELINES)
    for rows in (scores.rows, *scores.baselines.values()):
        assert len(rows) == captures.frame_count == 8
        for row in rows:
            assert all(math.isfinite(row[k]) for k in METRIC_KEYS), row
            assert row["sad_frame"] >= row["sad"] - 1e-9  # the whole frame holds the band
            assert 0.0 <= row["false_fg"] <= 1.0
            assert ("dtssd" in row) == (row["kind"] != "still")
    for row in scores.rows:
        assert math.isfinite(row["fg_mse_frame"]) and row["seconds"] > 0
    clip = [r["dtssd"] for r in scores.rows if r["unit"] == "clip_01"]
    assert len(clip) == 3 and len(set(clip)) == 1 and clip[0] > 0


@pytest.mark.filterwarnings("ignore::bgmatting.preprocess.AlignmentWarning")  # 64 px: too few features to align
def test_the_model_is_scored_on_exactly_what_infer_gives(scores, captures, model):
    """The row of a still is the metric of `bgmatting.matte` on the same JPEG files (infer's defaults, --size 64)."""
    unit = captures[0]
    result = bgmatting.matte(str(unit.input_path), str(unit.plate_path), checkpoint=model, size=64, progress=False)
    frame = unit.frames[0]
    assert scores.rows[0]["sad"] == metrics.sad(result.alpha, frame.alpha(), frame.trimap())
    assert scores.rows[0]["sad_frame"] == metrics.sad(result.alpha, frame.alpha())
    clip = captures[3]
    results = bgmatting.matte_frames(str(clip.input_path), str(clip.plate_path), checkpoint=model, size=64,
                                     sequence=True, progress=False)
    assert scores.rows[-1]["sad_frame"] == metrics.sad(results[-1].alpha, clip.frames[-1].alpha())


def test_infer_aligns_a_stills_plate_and_keeps_a_fixed_cameras_plate(scores):
    actions = {r["name"]: r["plate_action"] for r in scores.rows}
    assert actions["still_0000"] in ("aligned", "fell_back") and actions["still_0001"] in ("aligned", "fell_back")
    assert {actions[f"clip_00_f0{i}"] for i in (1, 2)} == {"reused"}  # the tripod's plate: aligned (or kept) once


def test_scoring_restores_the_models_training_mode_precision_and_refine_options(captures):
    generator = Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1, refine_head=True, refine_hidden=4)
    from bgmatting.models import Refiner
    refining = MattingModel(generator, Refiner(hidden_channels=4, channels=(6, 5, 4))).train()
    refining.set_refine_options(refine_pixels=123)
    before = refining.refine_options
    pipeline = CapturePipeline(mode="refine", refine_mode="full")
    matted = pipeline.matte(refining, captures[0])
    assert refining.training and refining.precision is None and refining.refine_options == before
    assert len(matted.alphas) == 1 and matted.alphas[0].shape == (48, 64)


def test_capture_sets_in_the_suite_write_reports_galleries_and_frame_ratios(model, captures, tmp_path):
    scores = evaluate_suite(model, {"captures_64": captures}, output_dir=tmp_path, gallery=2, title="t")
    score = scores["captures_64"]
    assert list(score.summaries) == ["model", *(f"baseline: {k}" for k in CAPTURE_BASELINES)]
    best_frame = min(b["sad_frame"] for b in score.baselines.values())
    assert score.ratio(metric="sad_frame") == pytest.approx(best_frame / score.summaries["model"]["sad_frame"])
    saved = json.loads((tmp_path / "summary.json").read_text())["sets"][0]
    assert saved["ratio_frame"] == pytest.approx(score.ratio(metric="sad_frame")) and saved["images"] == 8
    folder = tmp_path / "captures_64"
    header = (folder / "per_image.csv").read_text().splitlines()[0].split(",")
    assert {"sad_frame", "false_fg", "dtssd", "plate_action", "unit", "kind"} <= set(header)
    assert all((folder / f"per_image_{k}.csv").is_file() for k in CAPTURE_BASELINES)
    gallery = cv2.imread(str(folder / "gallery.png"))
    assert gallery is not None and gallery.shape[0] > 200
    table = suite_table(scores)
    assert "frame SAD" in table and "best baseline frame SAD / frame SAD" in table and "careful" in table


def test_a_capture_set_inside_per_epoch_validation(model, captures, tmp_path):
    photo = heldout_dataset(32, n_scenes=2, cache_dir=tmp_path)
    validation = SuiteValidation({"captures": captures, "photo": photo}, limit=2)
    model.train()
    first, second = validation(model), validation(model)
    assert model.training  # validation leaves training's mode alone
    assert first == second and first["val/captures/images"] == 2  # the first 2 units: the two stills
    for kind in CAPTURE_BASELINES:
        assert {f"val/captures/{kind}/{k}" for k in ("sad", "mse", "grad", "sad_frame", "false_fg")} <= set(first)
    assert "val/photo/careful/sad" not in first and "val/photo/background_difference/sad" in first
    ratios = [first["val/captures/sad"] / min(first[f"val/captures/{k}/sad"] for k in CAPTURE_BASELINES),
              first["val/photo/sad"] / min(first[f"val/photo/{k}/sad"] for k in ("segmentation", "background_difference"))]
    assert first["val/relative_sad"] == pytest.approx(sum(ratios) / 2)
    assert first["val/captures/sad_frame"] >= first["val/captures/sad"]


def test_a_capture_set_without_a_pipeline_is_a_clear_error(captures, model):
    bare = CaptureSet(captures.manifest)
    with pytest.raises(DataError, match="no inference pipeline"):
        evaluate(model, bare)
    with pytest.raises(DataError, match="mode 'bogus'"):
        CapturePipeline(mode="bogus")


def _evaluate(args, tmp_path):
    return subprocess.run([sys.executable, "-m", "bgmatting.evaluate", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"),
                                                       "OMP_NUM_THREADS": "1"})


def test_evaluate_command_scores_the_capture_set(model, tmp_path, run_module, compose_config):
    checkpoint = tmp_path / "tiny.pt"
    torch.save(model.checkpoint_state(), checkpoint)
    out = tmp_path / "report"
    common = [f"checkpoint={checkpoint}", "dataset.captures=true", "dataset.capture_sizes=[48]",
              "dataset.capture_stills=2", "dataset.capture_clips=1", "dataset.capture_frames=2", "network_size=64",
              f"data.cache_dir={tmp_path / 'c'}", "progress=false", "device=cpu"]
    result = run_module("bgmatting.evaluate", [*common, f"output_dir={out}", "gallery=2"], cwd=tmp_path)
    assert "| captures_48 | model | 4 |" in result.stdout and "| captures_48 | baseline: careful | 4 |" in result.stdout
    saved = json.loads((out / "summary.json").read_text())["sets"][0]
    assert saved["set"] == "captures_48" and math.isfinite(saved["ratio_frame"])
    assert cv2.imread(str(out / "captures_48" / "gallery.png")) is not None
    refused = _evaluate([*common, f"output_dir={tmp_path / 'x'}", "mode=refine"], tmp_path)  # no refiner
    assert refused.returncode == 2 and "needs a checkpoint with a refiner" in refused.stderr, refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    for bad, says in (("mode=bogus", "mode 'bogus'"), ("dataset.heldout=true", "test set of its own; drop dataset.captures")):
        with pytest.raises(DataError, match=says):
            run_evaluate(compose_config("evaluate", [*common, f"output_dir={tmp_path / 'x'}", bad]))
    assert not any((tmp_path / "x").rglob("*"))  # nothing written
