"""Score a checkpoint on the capture set at several sizes and inference modes, beside the three baselines.

    python scripts/measure_captures.py --checkpoint ckpt.pt [--sizes 256 512 1080] [--cache DIR] [--json out.json]

Per size the capture set (``bgmatting.inference.captures.capture_test_set``, default counts) is generated if
needed, its baselines are scored once (``bgmatting.evaluation.captures.score_capture_baselines``) and the model is
scored end to end in ``infer``'s default mode (original: the 512 crop) and in refine mode with ``--refine-mode
full`` and ``sampling`` (``score_capture_model``). Prints one Markdown table (band and whole-frame metrics, the
ratios best baseline / model, seconds) and the seconds each step took; ``--json`` also writes the summaries.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from bgmatting.io import write_json
from bgmatting.evaluation.captures import score_capture_baselines, score_capture_model
from bgmatting.evaluation.suite import SetScore
from bgmatting.evaluation.summary import summaries_of
from bgmatting.inference.captures import capture_test_set
from bgmatting.models import load_matting_model

MODES = {"model, original": {"mode": "original"}, "model, refine full": {"mode": "refine", "refine_mode": "full"},
         "model, refine sampling": {"mode": "refine", "refine_mode": "sampling"}}
COLUMNS = ("sad", "sad_frame", "mse", "grad", "fg_mse_frame", "false_fg", "dtssd")


def _cells(summary: dict) -> list[str]:
    scale = {"mse": 1e3, "fg_mse_frame": 1e3}
    return [f"{summary[k] * scale.get(k, 1.0):.3f}" if k in summary else "" for k in COLUMNS]


def measure(checkpoint: Path, size: int, cache: Path | None) -> tuple[list[str], dict]:
    """Table lines and summaries of one size."""
    start = time.perf_counter()
    captures = capture_test_set(size, cache_dir=cache)
    seconds = {"generate": time.perf_counter() - start}
    start = time.perf_counter()
    baselines, _ = score_capture_baselines(captures)
    seconds["baselines"] = time.perf_counter() - start
    model = load_matting_model(checkpoint)
    lines, out = [], {"frames": captures.frame_count, "seconds": seconds, "modes": {}}
    for label, options in MODES.items():
        start = time.perf_counter()
        rows, _ = score_capture_model(model, capture_test_set(size, cache_dir=cache, **options))
        seconds[label] = time.perf_counter() - start
        score = SetScore(f"captures_{size}", summaries_of(rows, baselines))
        out["modes"][label] = score.as_dict()
        if not lines:
            lines += [f"| {size} | {kind} | " + " | ".join(_cells(s)) + " | | | |" for kind, s in score.baselines.items()]
        lines.append(f"| {size} | {label} | " + " | ".join(_cells(score.summaries["model"]))
                     + f" | {score.ratio():.2f}× | {score.ratio(metric='sad_frame'):.2f}× | {seconds[label]:.0f} |")
    return lines, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1080])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    lines = ["| size | method | band SAD | frame SAD | MSE ×10³ | Grad | frame fg MSE ×10³ | false fg | dtSSD "
             "| band ratio | frame ratio | s |", "|---|---|" + "---:|" * 10]
    results = {}
    for size in args.sizes:
        size_lines, results[size] = measure(args.checkpoint, size, args.cache)
        lines += size_lines
        print("\n".join(lines), flush=True)
        print(json.dumps({size: results[size]["seconds"]}), flush=True)
    if args.json is not None:
        write_json(args.json, {"cpu": platform.processor() or platform.machine(), "checkpoint": str(args.checkpoint),
                               "sizes": results})


if __name__ == "__main__":
    main()
