"""Measure the temporal filters of inference (none, ofd, static, ofd+static) on synthetic captures with true alpha.

    python scripts/measure_temporal.py [--checkpoint ckpt.pt] [--size 128] [--clips 8] [--static-frames 12]

Clips: the synthetic real captures (``bgmatting.data.synthetic.clips``: a moving subject, fixed or hand-held
camera, per-frame segmentations), and for each clip a static variant (its first frame repeated with fresh
sensor noise: nothing moves, so every change of alpha is flicker). Alpha per frame from (a) the network in
``--checkpoint`` run by the inference pipeline (``bgmatting.inference.job.run_job``, temporal filter off) and
(b) the background-difference matte (``bgmatting.preprocess.segment.background_difference_matte``), then each
filter applied to the same per-frame results. Prints dtSSD (x100) and SAD (/1000 per frame) against the truth,
mean over clips, as a markdown table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bgmatting.io import read_alpha, read_image
from bgmatting.data.synthetic.clips import ensure_synthetic_real
from bgmatting.inference.job import InferenceJob, run_job
from bgmatting.inference.pipeline import Matte
from bgmatting.inference.sinks import MemoryWriter
from bgmatting.inference.temporal import TEMPORAL_FILTERS, TemporalFilter, TemporalOptions
from bgmatting.metrics import dtssd, sad
from bgmatting.preprocess.capture import BackgroundPlates, CapturedBackgrounds, Frame
from bgmatting.preprocess.segment import background_difference_matte


def clip_frames(manifest: Path, clip: dict) -> tuple[list[np.ndarray], list[np.ndarray], list[Path], Path]:
    root = manifest.parent
    folder = root / clip["path"]
    frames = sorted((folder / "frames").glob("*.png"))
    truth = [read_alpha(root / clip["ground_truth"] / "alpha" / f.name) for f in frames]
    return [read_image(f) for f in frames], truth, frames, folder


def static_variant(image: np.ndarray, alpha: np.ndarray, count: int, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    frames = [np.clip(image + rng.normal(0, 0.01, image.shape), 0, 1).astype(np.float32) for _ in range(count)]
    return frames, [alpha] * count


def network_alphas(frames: list[np.ndarray], plate: np.ndarray, checkpoint: Path, size: int):
    """Per-frame (alpha, foreground) of the inference pipeline on the clip, temporal filter off."""
    memory = MemoryWriter()
    run_job(InferenceJob(input=frames, background=plate, checkpoint=checkpoint, size=size, sequence=True,
                         temporal="none", progress=False), memory)
    return [(alpha, foreground) for alpha, foreground, _ in memory.frames.values()]


def difference_alphas(frames: list[np.ndarray], plate: np.ndarray):
    """Per-frame (alpha, foreground = the frame) of the background-difference matte against the plate aligned
    as inference aligns it."""
    plates = BackgroundPlates(CapturedBackgrounds.from_array(plate), exposure="auto")
    aligned = [plates.for_frame(Frame(i, f"{i:05d}", frame), frame) for i, frame in enumerate(frames)]
    return [(background_difference_matte(frame, b), frame.copy()) for frame, b in zip(frames, aligned)]


def filtered(frames: list[np.ndarray], results, kind: str) -> list[np.ndarray]:
    smoothing = TemporalFilter(TemporalOptions(kind))
    out = []
    for i, (frame, (alpha, foreground)) in enumerate(zip(frames, results)):
        result = Matte(alpha, foreground * (alpha[:, :, None] > 0.01), None, None)
        out += [r.alpha for _, r in smoothing.push(i, frame, result)]
    out += [r.alpha for _, r in smoothing.flush()]
    return out


def scores(alphas: list[np.ndarray], truth: list[np.ndarray]) -> tuple[float, float]:
    return dtssd(np.stack(alphas), np.stack(truth)), float(np.mean([sad(a, t) for a, t in zip(alphas, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a trained generator (without: background difference only)")
    parser.add_argument("--size", type=int, default=128, help="network side in original mode")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--static-frames", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    manifest = ensure_synthetic_real(n_clips=8, handheld_fraction=0.25)
    clips = json.loads(manifest.read_text())["clips"][: args.clips]
    table: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for c, clip in enumerate(clips):
        frames, truth, _, folder = clip_frames(manifest, clip)
        plate = read_image(folder / "background.png")
        variants = {"moving": (frames, truth),
                    "static": static_variant(frames[0], truth[0], args.static_frames, seed=c)}
        for variant, (images, alphas_true) in variants.items():
            predictors = {"background difference": difference_alphas(images, plate)}
            if args.checkpoint:
                predictors["network"] = network_alphas(images, plate, args.checkpoint, args.size)
            for predictor, results in predictors.items():
                for kind in TEMPORAL_FILTERS:
                    table.setdefault((predictor, variant, kind), []).append(
                        scores(filtered(images, results, kind), alphas_true))
        print(f"clip {clip['name']} done", flush=True)
    print("\n| alpha from | clips | filter | dtSSD (x100) | SAD (/1000 per frame) |\n|---|---|---|---:|---:|")
    for (predictor, variant, kind), values in table.items():
        d, s = np.mean(values, axis=0)
        print(f"| {predictor} | {variant} | {kind} | {d:.3f} | {s:.4f} |")
    if args.json:
        args.json.write_text(json.dumps({" / ".join(k): v for k, v in table.items()}, indent=1))


if __name__ == "__main__":
    main()
