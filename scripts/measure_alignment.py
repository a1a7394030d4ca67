"""Measure the automatic plate alignment on synthetic captures (fixed-camera and hand-held clips with known poses).

    python scripts/measure_alignment.py [--size 360x640] [--clips 4] [--frames 12] [--out /tmp/align_measure]

For every frame: the true misalignment of the plate (worst frame corner of the true plate -> frame homography, px),
what :func:`bgmatting.preprocess.misalignment.measure_misalignment` measures (without and with the true subject
mask), and how often the "needs alignment" decision at the tolerance agrees with the truth. Then the effect of the
exposure correction (:func:`bgmatting.preprocess.misalignment.correct_exposure`) on the plate's residual and on the
background-difference segmentation (IoU with alpha > 0.5), after an AKAZE alignment. Prints markdown tables.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from bgmatting.io import read_alpha, read_image
from bgmatting.data.synthetic import clips as synthetic_clips
from bgmatting.data.synthetic.clips import generate_clip
from bgmatting.data.synthetic.textures import BACKGROUND_KINDS, random_background
from bgmatting.preprocess.align import align_background
from bgmatting.preprocess.misalignment import MISALIGNMENT_TOLERANCE, correct_exposure, measure_misalignment, tolerance_px
from bgmatting.preprocess.segment import get_segmenter


def corner_displacement(h: np.ndarray, height: int, width: int) -> float:
    corners = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]).reshape(-1, 1, 2)
    moved = cv2.perspectiveTransform(corners, h)
    return float(np.linalg.norm((moved - corners).reshape(-1, 2), axis=1).max())


def clips(out: Path, count: int, frames: int, size: tuple[int, int]):
    for c in range(count):
        for handheld in (False, True):
            name = f"{'handheld' if handheld else 'fixed'}_{c}"
            clip_dir, truth_dir = out / "clips" / name, out / "truth" / name
            if not (truth_dir / "capture.json").exists():
                generate_clip(clip_dir, truth_dir, np.random.default_rng([7, c, handheld]), frames, size,
                              handheld, name)
            yield name, clip_dir, truth_dir


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def measure(out: Path, count: int, frames: int, size: tuple[int, int]) -> dict:
    height, width = size
    rows = []
    segmenter = get_segmenter("background_difference", postprocess=False)
    timing = {"measure": 0.0, "align": 0.0, "n": 0}
    for name, clip_dir, truth_dir in clips(out, count, frames, size):
        truth = json.loads((truth_dir / "capture.json").read_text())
        plate = read_image(clip_dir / "background.png")
        plate_pose = np.array(truth["plate_pose"])
        first = None  # the homography of the plate aligned to frame 0 (reused for later frames: "once")
        for i, pose in enumerate(truth["frame_poses"]):
            image = read_image(clip_dir / "frames" / f"{i:06d}.png")
            alpha = read_alpha(truth_dir / "alpha" / f"{i:06d}.png")
            true_h = np.array(pose) @ np.linalg.inv(plate_pose)  # plate px -> frame px (same size)
            tick = time.perf_counter()
            blind = measure_misalignment(image, plate)
            timing["measure"] += time.perf_counter() - tick
            masked = measure_misalignment(image, plate, subject_mask=alpha > 0.05)
            tick = time.perf_counter()
            aligned, report = align_background(image, plate)
            timing["align"] += time.perf_counter() - tick
            timing["n"] += 1
            first = report.homography if first is None else first
            after = measure_misalignment(image, plate, report.homography)
            reused = measure_misalignment(image, plate, first)
            corrected, exposure = correct_exposure(image, aligned, report.valid_mask)
            truth_mask = alpha > 0.5
            seg_plain = segmenter(image, aligned) > 0.5
            seg_corrected = segmenter(image, corrected) > 0.5
            rows.append(dict(clip=name, frame=i, true=corner_displacement(true_h, height, width),
                             blind=blind.pixels, masked=masked.pixels, fell_back=report.fell_back,
                             after=after.pixels, true_after=corner_displacement(true_h @ np.linalg.inv(report.homography), height, width),
                             reused=reused.pixels, true_reused=corner_displacement(true_h @ np.linalg.inv(first), height, width),
                             exposure_applied=exposure.applied,
                             residual_before=exposure.residual_before, residual_after=exposure.residual_after,
                             iou_plain=iou(seg_plain, truth_mask), iou_corrected=iou(seg_corrected, truth_mask),
                             gain=truth["gain"], gamma=truth["gamma"]))
    return {"rows": rows, "timing": timing}


def summarise(result: dict, tolerance: float) -> str:
    rows = result["rows"]
    lines = [f"tolerance {tolerance} px, {len(rows)} frames", "",
             "| measure | frames measured | median abs error px | 90th pct abs error px | decision agrees |",
             "|---|---:|---:|---:|---:|"]
    pairs = {"unaligned plate, blind": ("true", "blind"), "unaligned plate, subject masked": ("true", "masked"),
             "plate aligned to this frame": ("true_after", "after"),
             "plate aligned to frame 0": ("true_reused", "reused")}
    for label, (truth_key, key) in pairs.items():
        got = [(r[truth_key], r[key]) for r in rows if r[key] is not None and not (key != "blind" and key != "masked"
                                                                                   and r["fell_back"])]
        if not got:
            continue
        errors = np.abs([m - t for t, m in got])
        agree = np.mean([(m > tolerance) == (t > tolerance) for t, m in got])
        lines.append(f"| {label} | {len(got)}/{len(rows)} | {np.median(errors):.2f} | {np.percentile(errors, 90):.2f} "
                     f"| {agree:.1%} |")
    lines.append(f"AKAZE alignment fell back on {sum(r['fell_back'] for r in rows)} of {len(rows)} frames")
    applied = [r for r in rows if r["exposure_applied"]]
    lines += ["", "| exposure correction | frames | residual before | residual after | seg IoU plain | seg IoU corrected |",
              "|---|---:|---:|---:|---:|---:|"]
    for label, group in (("applied", applied), ("all frames (forced)", rows)):
        if group:
            lines.append(f"| {label} | {len(group)} | {np.mean([r['residual_before'] for r in group]):.4f} | "
                         f"{np.mean([r['residual_after'] for r in group]):.4f} | "
                         f"{np.mean([r['iou_plain'] for r in group]):.3f} | "
                         f"{np.mean([r['iou_corrected'] for r in group]):.3f} |")
    t = result["timing"]
    lines += ["", f"cost ratio align_background / measure_misalignment: {t['align'] / t['measure']:.1f}x "
              f"({t['n']} frames, same run)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="360x640", help="H x W of the synthetic frames")
    parser.add_argument("--clips", type=int, default=4, help="clips of each kind (fixed, hand-held)")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--tolerance", type=float, default=MISALIGNMENT_TOLERANCE, help="share of the long side")
    parser.add_argument("--scene", choices=("any",) + BACKGROUND_KINDS, default="any",
                        help="kind of static scene (default: the generator's mix)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/align_measure"))
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.scene != "any":  # every clip's scene of this kind
        synthetic_clips.random_background = lambda rng, h, w: random_background(rng, h, w, kind=args.scene)
    tag = f"{args.size}_{args.scene}"
    result = measure(args.out / tag, args.clips, args.frames, size)
    (args.out / f"rows_{tag}.json").write_text(json.dumps(result, indent=1))
    print(summarise(result, tolerance_px(size, args.tolerance)))


if __name__ == "__main__":
    main()
