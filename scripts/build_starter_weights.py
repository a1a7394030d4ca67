#!/usr/bin/env python
"""Build the starter weights the package ships (src/bgmatting/models/weights/starter.pt and its card starter.json).

    python scripts/build_starter_weights.py [--work DIR] [--skip-training]

Runs the project's own quickstart with fixed seeds, fp32 and two CPU threads (so the same CPU kind gives the same
weights): ``python -m bgmatting.train stage=adobe``, then ``stage=real`` taught by its best checkpoint. The real
stage's student ships if it beats its teacher on the capture set (band and whole-frame SAD, at every size), else
the teacher. The weights are stored without optimiser or random state (our checkpoint format: generator, refiner,
their configs and refine options; fp32), with a card: command, commit, seed, CPU, precision, steps, wall times,
SHA-256 and the final tables of both stages (docs/MODEL_CARD.md).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "bgmatting" / "models" / "weights"
FIXED = ["seed=0", "precision=fp32", "cpu_threads=2", "logging.progress=false", "resume=false"]
CAPTURE_SETS = ("captures_256", "captures_512")


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _train(stage: str, run_dir: Path, *extra: str) -> dict:
    """One stage of the quickstart into ``run_dir``; returns its summary.json, with the wall time added."""
    command = [sys.executable, "-m", "bgmatting.train", f"stage={stage}", *FIXED, f"outputs_root={run_dir.parent}",
               f"hydra.run.dir={run_dir}", *extra]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["wall_seconds"] = time.perf_counter() - start
    summary["command"] = "python " + " ".join(command[1:])
    return summary


def _student_wins(real: dict) -> bool:
    """The student beats its teacher on every capture set in band and whole-frame SAD."""
    for name in CAPTURE_SETS:
        summaries = real["evaluation"][name]["summaries"]
        student, teacher = summaries["model"], summaries["reference: teacher (adobe stage)"]
        if not (student["sad"] < teacher["sad"] and student["sad_frame"] < teacher["sad_frame"]):
            return False
    return True


def _tables(summary: dict) -> dict:
    """{set: {method: {sad, mse, grad, sad_frame, false_fg ...}}} of a stage's final evaluation."""
    return {name: {method: {k: v for k, v in values.items() if isinstance(v, (int, float))}
                   for method, values in result["summaries"].items()}
            for name, result in summary["evaluation"].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(REPO / "outputs" / "starter"), help="folder for the two runs")
    parser.add_argument("--skip-training", action="store_true", help="reuse the runs already in --work")
    parser.add_argument("--out", default=str(OUT), help="folder for starter.pt and starter.json (default: the package's)")
    args = parser.parse_args(argv)
    work = Path(args.work)
    adobe_dir, real_dir = work / "adobe", work / "real"
    if args.skip_training:
        adobe, real = (json.loads((d / "summary.json").read_text()) for d in (adobe_dir, real_dir))
    else:
        adobe = _train("adobe", adobe_dir)
        real = _train("real", real_dir, f"teacher={adobe_dir / 'checkpoints' / 'best.pt'}")
    chosen = real_dir if _student_wins(real) else adobe_dir
    from bgmatting.benchmarks.environment import describe_environment
    from bgmatting.models import load_matting_model

    model = load_matting_model(chosen / "checkpoints" / "best.pt")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "starter.pt"
    torch.save(model.checkpoint_state(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    card = {
        "weights": weights.name, "sha256": digest, "bytes": weights.stat().st_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "stage": "real" if chosen == real_dir else "adobe",
        "chosen_because": ("the real stage's student beats its teacher on the capture set" if chosen == real_dir else
                           "the real stage's student did not beat its teacher on the capture set"),
        "model_config": model.config, "commit": _commit(), "cpu": describe_environment(torch.device("cpu"))["cpu"],
        "torch": torch.__version__,
        "precision": "fp32", "cpu_threads": 2, "seed": 0,
        "stages": {name: {"command": s.get("command"), "steps": s["steps"], "wall_seconds": s.get("wall_seconds"),
                          "tables": _tables(s)} for name, s in (("adobe", adobe), ("real", real))},
    }
    (out / "starter.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"{weights}: {card['bytes'] / 2**20:.2f} MiB, sha256 {digest[:16]}..., stage {card['stage']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
