"""``python -m bgmatting.train`` end to end on tiny synthetic data: both stages, DDP under torchrun, --help, --cfg."""
from __future__ import annotations

import json
from pathlib import Path

import cv2

import pytest
import torch
import yaml

from bgmatting.engine.checkpointing import load_checkpoint


@pytest.fixture
def run_cli(run_module):
    """``run_cli(args, cwd, torchrun_procs=None)``: ``python -m bgmatting.train args``, under torchrun if asked."""

    def run(args: list[str], cwd: Path, torchrun_procs: int | None = None):
        launcher = ()
        if torchrun_procs:
            launcher = ("-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun_procs}")
        return run_module("bgmatting.train", args, cwd, launcher=launcher)

    return run


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bgm_cache")


def only_run(stage_dir: Path) -> Path:
    runs = [p for p in stage_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_cli_trains_adobe_then_real_with_the_teacher_found_automatically(tmp_path, cache, tiny_train_overrides, run_cli):
    outputs = tmp_path / "outputs"
    adobe = run_cli([*tiny_train_overrides("adobe", outputs, cache), "trainer.max_steps=3",
                     "logging.tensorboard=true", "logging.image_every=1"], tmp_path)
    assert "baseline: segmentation" in adobe.stdout and "baseline: background_difference" in adobe.stdout
    run = only_run(outputs / "adobe")
    assert (run / ".hydra" / "config.yaml").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and set(summary["evaluation"]) == {"held_out", "photo_96"}
    assert set(summary["evaluation"]["photo_96"]["summaries"]) == {
        "model", "baseline: segmentation", "baseline: background_difference"}
    assert "3 of 3 steps" in adobe.stdout and "| photo_96 | model | 2 |" in adobe.stdout
    assert (run / "eval" / "summary.md").is_file() and (run / "eval" / "photo_96" / "per_image.csv").is_file()
    assert cv2.imread(str(run / "eval" / "photo_96" / "gallery.png")) is not None
    assert cv2.imread(str(run / "learning_curves.png")) is not None

    real = run_cli([*tiny_train_overrides("real", outputs, cache), "trainer.max_steps=2", "stage.discriminator_every=1"],
                   tmp_path)
    assert "baseline: segmentation" in real.stdout and "reference: teacher (adobe stage)" in real.stdout
    real_run = only_run(outputs / "real")
    real_summary = json.loads((real_run / "summary.json").read_text())["evaluation"]["held_out"]["summaries"]
    teacher_row = real_summary["reference: teacher (adobe stage)"]
    assert teacher_row["images"] > 0 and real_summary["model"]["images"] == teacher_row["images"]
    checkpoint = load_checkpoint(real_run / "checkpoints" / "step_00000002.pt")
    assert Path(checkpoint["config"]["teacher"]).parent == run / "checkpoints"
    assert "discriminator" in checkpoint["modules"] and checkpoint["step"] == 2


def test_torchrun_two_processes_train_identical_replicas(tmp_path, cache, tiny_train_overrides, run_cli):
    outputs = tmp_path / "outputs"
    common = ["distributed.backend=gloo", "evaluation.enabled=false"]
    # 6 samples: 1 step per epoch and rank
    run_cli([*tiny_train_overrides("adobe", outputs, cache), *common, "trainer.epochs=2"], tmp_path, torchrun_procs=2)
    run = only_run(outputs / "adobe")  # both ranks share rank 0's run folder
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    fingerprints = summary["generator_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    checkpoint = load_checkpoint(run / "checkpoints" / "step_00000002.pt")
    assert len(checkpoint["rng"]) == 2  # per-rank RNG states for an exact resume

    run_cli([*tiny_train_overrides("real", outputs, cache), *common, "trainer.max_steps=2", "stage.discriminator_every=1",
             "trainer.validate_every=0"], tmp_path, torchrun_procs=2)
    real_summary = json.loads((only_run(outputs / "real") / "summary.json").read_text())
    assert real_summary["world_size"] == 2
    assert real_summary["generator_fingerprints"][0] == real_summary["generator_fingerprints"][1]
    assert torch.isfinite(torch.tensor(real_summary["last_losses"]["loss/discriminator"]))


def test_help_is_a_short_page_and_cfg_job_prints_the_whole_config(tmp_path, run_cli):
    page = run_cli(["--help"], tmp_path).stdout
    assert len(page.splitlines()) < 60
    assert "experiment: paper_adobe, paper_real, public_code_real, quickstart_adobe, quickstart_real" in page
    assert "stage: adobe, real" in page and "python -m bgmatting.train stage=real" in page
    full = yaml.safe_load(run_cli(["stage=real", "--cfg", "job"], tmp_path).stdout)
    assert full["stage"]["_target_"] == "bgmatting.engine.stages.RealStage"
    assert full["trainer"]["max_steps"] == 300 and full["data"]["train"]["size"] == 96
    assert {"seed", "model", "optim", "checkpoint", "evaluation"} <= set(full)
