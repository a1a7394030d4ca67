"""Measure what the plate's exposure correction does to the network's alpha on synthetic captures.

    python scripts/measure_exposure.py --checkpoint ckpt.pt [--size 128] [--clips 8] [--frames 8]

The synthetic real captures (``bgmatting.data.synthetic.clips``) have plates with another exposure (gain,
gamma, colour balance) than their frames. Each clip's first ``--frames`` frames go through the inference
pipeline (``bgmatting.inference.job.run_job``, automatic alignment, the clip's own segmentations so that only
the plate differs) with ``exposure="auto"`` and ``"off"``; prints SAD and MSE of alpha against the truth per
clip and overall, and on how many frames the correction was applied.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

from bgmatting.io import read_alpha, read_image
from bgmatting.data.synthetic.clips import ensure_synthetic_real
from bgmatting.inference.job import InferenceJob, run_job
from bgmatting.inference.sinks import MemoryWriter
from bgmatting.metrics import mse, sad


def run(frames, plate, segmentation: Path, checkpoint: Path, size: int, exposure: str):
    memory = MemoryWriter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_job(InferenceJob(input=frames, background=plate, checkpoint=checkpoint, size=size, sequence=True,
                             segmentation=segmentation, exposure=exposure, temporal="none", progress=False), memory)
    alphas = [alpha for alpha, _, _ in memory.frames.values()]
    return alphas, memory.summary["plate_summary"]["exposure_corrected"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    manifest = ensure_synthetic_real(n_clips=8, handheld_fraction=0.25)
    rows = []
    print("| clip | camera | plates corrected | SAD off | SAD auto | MSE off | MSE auto |\n|---|---|---:|---:|---:|---:|---:|")
    for clip in json.loads(manifest.read_text())["clips"][: args.clips]:
        folder = manifest.parent / clip["path"]
        names = sorted(p.name for p in (folder / "frames").glob("*.png"))[: args.frames]
        frames = [read_image(folder / "frames" / n) for n in names]
        truth = [read_alpha(manifest.parent / clip["ground_truth"] / "alpha" / n) for n in names]
        plate = read_image(folder / "background.png")
        scores = {}
        for exposure in ("off", "auto"):
            alphas, corrected = run(frames, plate, folder / "segmentation", args.checkpoint, args.size, exposure)
            scores[exposure] = (np.mean([sad(a, t) for a, t in zip(alphas, truth)]),
                                np.mean([mse(a, t) for a, t in zip(alphas, truth)]), corrected)
        rows.append(scores)
        camera = "hand-held" if clip["handheld"] else "fixed"
        print(f"| {clip['name']} | {camera} | {scores['auto'][2]}/{len(names)} | {scores['off'][0]:.4f} | "
              f"{scores['auto'][0]:.4f} | {scores['off'][1]:.5f} | {scores['auto'][1]:.5f} |", flush=True)
    mean = {k: np.mean([r[k][:2] for r in rows], axis=0) for k in ("off", "auto")}
    print(f"| mean | | {sum(r['auto'][2] for r in rows)} | {mean['off'][0]:.4f} | {mean['auto'][0]:.4f} | "
          f"{mean['off'][1]:.5f} | {mean['auto'][1]:.5f} |")


if __name__ == "__main__":
    main()
