"""Full-resolution detail: a refining checkpoint in refine mode against a plain one in the original 512-crop mode.

    python scripts/measure_detail.py --refine REFINE.pt --plain PLAIN.pt [--size 1080] [--scenes 8] \
        [--network-size 512] [--base-long-side 512]

Frames: the held-out photo set's scenes (``bgmatting.data.synthetic.photo_set``: photographs, figures with hair
strands, S by the original recipe, B' gamma-perturbed) rendered at ``--size`` x ``--size``. Each frame is matted
by the inference pipeline (``bgmatting.inference.Matter``, the stored S given, no alignment needed) as
``python -m bgmatting.infer`` would: the plain checkpoint in mode original (the subject cropped, resized to
``--network-size`` (512, the original's), upsampled back), the refining one in mode refine (the base at
``--base-long-side`` (512, infer's default), the refiner at the native resolution; sampling 80 000 px as infer's
default, and every patch). Networks trained at small crops (the quickstarts) see their subjects far larger than
in training at 512: give both sides the training scale too (e.g. 128 and 128). Prints SAD, MSE and Grad on the
trimap's unknown band (DIM metrics, mean over frames) and seconds per frame, as a markdown table.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bgmatting.data.adobe import CompositeSetDataset
from bgmatting.data.synthetic.photo_set import heldout_manifest
from bgmatting.evaluation.score import numpy_image
from bgmatting.inference.pipeline import Matter
from bgmatting.metrics import grad, mse, sad
from bgmatting.models import load_matting_model


def frames(size: int, scenes: int) -> list[dict[str, np.ndarray]]:
    """The scenes at ``size``: image, background (B'), segmentation (S), alpha, trimap as H x W (x 3) arrays."""
    dataset = CompositeSetDataset(heldout_manifest(size, n_scenes=scenes), segmentation="file")
    keys = ("image", "background", "segmentation", "alpha", "trimap")
    return [{k: numpy_image(sample[k]) for k in keys} for sample in (dataset[i] for i in range(len(dataset)))]


def score(matter: Matter, data: list[dict[str, np.ndarray]]) -> dict[str, float]:
    rows, seconds = [], 0.0
    for f in data:
        start = time.perf_counter()
        alpha = matter.matte(f["image"], f["background"], f["segmentation"]).alpha
        seconds += time.perf_counter() - start
        rows.append([sad(alpha, f["alpha"], f["trimap"]), mse(alpha, f["alpha"], f["trimap"]),
                     grad(alpha, f["alpha"], f["trimap"])])
    sad_, mse_, grad_ = np.mean(rows, axis=0)
    return {"sad": sad_, "mse": mse_, "grad": grad_, "seconds": seconds / len(data)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--refine", required=True, help="checkpoint of a refining model (model=*_refine)")
    p.add_argument("--plain", required=True, help="checkpoint of a plain model, run in the original 512-crop mode")
    p.add_argument("--size", type=int, default=1080)
    p.add_argument("--scenes", type=int, default=8)
    p.add_argument("--network-size", type=int, default=512, help="original mode's network side (the crop's size)")
    p.add_argument("--base-long-side", type=int, default=512, help="refine mode: the base's long side")
    args = p.parse_args()
    torch.manual_seed(0)
    data = frames(args.size, args.scenes)
    plain = Matter(load_matting_model(args.plain), mode="original", size=args.network_size)
    results = {f"plain, original mode ({args.network_size} crop)": score(plain, data)}
    refine = load_matting_model(args.refine)
    for mode in ("sampling", "full"):
        refine.set_refine_options(downsample_ratio=None, base_long_side=args.base_long_side, refine_mode=mode,
                                  refine_pixels=80_000)
        name = f"refine, mode refine (base {args.base_long_side}, {mode})"
        results[name] = score(Matter(refine, mode="refine"), data)
    print(f"{len(data)} frames of {args.size}x{args.size}; DIM metrics on the trimap's unknown band\n")
    print("| method | SAD (x10^3) | MSE (x10^-3) | Grad (x10^3) | s / frame |\n|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['sad']:.2f} | {1e3 * r['mse']:.2f} | {r['grad']:.2f} | {r['seconds']:.2f} |")


if __name__ == "__main__":
    main()
