"""scripts/cuda_check.sh --dry: the CUDA check's steps, tiny on the CPU, end in a table where every step is ok."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = ("train_adobe_plain", "train_adobe_refine", "make_clip", "bench_model", "train_real_plain",
         "train_real_refine", "torchrun_gloo", "infer_refine", "bench_refine")


def test_dry_cuda_check_runs_every_step(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "BGMATTING_CACHE": str(tmp_path / "cache")}
    env.pop("BGM_RUN_STAMP", None)
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "cuda_check.sh"), "--dry", "--out", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row[0].lstrip("| ") for row in rows[1:]] == list(STEPS)
    assert all(row[1] == "ok" for row in rows[1:]), result.stdout
    assert (tmp_path / "summary.md").read_text().strip() == result.stdout.strip()
    refine_run = json.loads(next((tmp_path / "runs" / "refine" / "real").glob("*/summary.json")).read_text())
    assert refine_run["steps"] == 2 and "loss/error" in refine_run["last_losses"]
    ddp_run = json.loads(next((tmp_path / "runs" / "ddp" / "adobe").glob("*/summary.json")).read_text())
    assert ddp_run["world_size"] == 1 and "loss/coarse_alpha" in ddp_run["last_losses"]
    inferred = json.loads((tmp_path / "infer" / "summary.json").read_text())
    assert inferred["mode"] == "refine" and inferred["frames"] == 3 and inferred["frames_per_second"] > 0
    frames = json.loads((tmp_path / "bench_refine.json").read_text())["refine"]["frames"]
    assert [(f["height"], f["width"]) for f in frames] == [(32, 48), (64, 96)]
