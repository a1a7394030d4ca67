"""``python -m bgmatting.train`` end to end on tiny synthetic data: both stages, and DDP under torchrun."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bgmatting.engine.checkpointing import load_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"


def tiny_overrides(cache: Path, outputs: Path) -> list[str]:
    """A tiny model on tiny synthetic data (both stages' data configs shrunk)."""
    return [
        f"outputs_root={outputs}",
        f"data.cache_dir={cache}",
        "model=tiny",
        "logging.progress=false",
        "logging.log_every=1",
        "evaluation.limit=2",
        "trainer.val_limit=2",
        "trainer.batch_size=2",
        "cpu_threads=1",
    ]


ADOBE_DATA = [
    "data.generation.n_fg=3", "data.generation.n_bg=4", "data.generation.size=48",
    "data.generation.n_test_fg=1", "data.generation.n_test_bg=2",
    "data.train.samples_per_fg=2", "data.train.augment.output_size=32",
]
REAL_DATA = [
    "data.generation.n_clips=2", "data.generation.n_frames=6", "data.generation.frame_size=[48,64]",
    "data.generation.n_targets=2", "data.train.size=32", "data.train.motion_offsets=[-2,-1,1,2]",
    "data.val.n_clips=1", "data.val.n_targets=2", "data.val.size=32",
]


def run_cli(args: list[str], cwd: Path, torchrun_procs: int | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    env.pop("BGM_RUN_STAMP", None)
    if torchrun_procs:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun_procs}",
                   "-m", "bgmatting.train", *args]
    else:
        command = [sys.executable, "-m", "bgmatting.train", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bgm_cache")


def only_run(stage_dir: Path) -> Path:
    runs = [p for p in stage_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_cli_trains_adobe_then_real_with_the_teacher_found_automatically(tmp_path, cache):
    outputs = tmp_path / "outputs"
    adobe = run_cli([*tiny_overrides(cache, outputs), *ADOBE_DATA, "trainer.max_steps=3",
                     "logging.tensorboard=true", "logging.image_every=1"], tmp_path)
    assert "baseline: segmentation" in adobe.stdout and "baseline: background_difference" in adobe.stdout
    run = only_run(outputs / "adobe")
    assert (run / ".hydra" / "config.yaml").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and set(summary["evaluation"]) == {
        "model", "baseline: segmentation", "baseline: background_difference"}
    assert (run / "eval" / "summary.md").is_file() and (run / "eval" / "per_image.csv").is_file()

    real = run_cli(["stage=real", *tiny_overrides(cache, outputs), *REAL_DATA, "trainer.max_steps=2",
                    "stage.discriminator_every=1"], tmp_path)
    assert "baseline: segmentation" in real.stdout and "baseline: teacher (adobe stage)" in real.stdout
    real_run = only_run(outputs / "real")
    real_summary = json.loads((real_run / "summary.json").read_text())["evaluation"]
    teacher_row = real_summary["baseline: teacher (adobe stage)"]
    assert teacher_row["images"] > 0 and real_summary["model"]["images"] == teacher_row["images"]
    checkpoint = load_checkpoint(real_run / "checkpoints" / "step_00000002.pt")
    assert Path(checkpoint["config"]["teacher"]).parent == run / "checkpoints"
    assert "discriminator" in checkpoint["modules"] and checkpoint["step"] == 2


def test_torchrun_two_processes_train_identical_replicas(tmp_path, cache):
    outputs = tmp_path / "outputs"
    common = [*tiny_overrides(cache, outputs), "distributed.backend=gloo", "logging.tensorboard=false",
              "evaluation.enabled=false"]
    run_cli([*common, *ADOBE_DATA, "trainer.epochs=2"], tmp_path, torchrun_procs=2)  # 6 samples: 1 step/epoch/rank
    run = only_run(outputs / "adobe")  # both ranks share rank 0's run folder
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    fingerprints = summary["generator_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    checkpoint = load_checkpoint(run / "checkpoints" / "step_00000002.pt")
    assert len(checkpoint["rng"]) == 2  # per-rank RNG states for an exact resume

    run_cli(["stage=real", *common, *REAL_DATA, "trainer.max_steps=2", "stage.discriminator_every=1", "trainer.validate_every=0"],
            tmp_path, torchrun_procs=2)
    real_summary = json.loads((only_run(outputs / "real") / "summary.json").read_text())
    assert real_summary["world_size"] == 2
    assert real_summary["generator_fingerprints"][0] == real_summary["generator_fingerprints"][1]
    assert torch.isfinite(torch.tensor(real_summary["last_losses"]["loss/discriminator"]))
