#!/usr/bin/env python
"""The README's picture: capture-set stills matted end to end as ``infer`` mattes a user's files.

    python scripts/make_readme_figure.py [--checkpoint CKPT] [--out docs/images/captures.png] [--units still_0000 ...]

One row per capture: the photo, the plate as captured (another pose, exposure, no subject), the alpha the
pipeline made (``bgmatting.matte`` with its defaults) and the composite over a new background; each tile at the
capture's 512 x 384 scaled to ``--tile`` px wide. Writes a PNG (kept under 400 KB for the repository).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

import bgmatting
from bgmatting.io import write_image
from bgmatting.data.synthetic.capture_set import capture_dataset
from bgmatting.inference.pipeline import composite_over
from bgmatting.models import load_matting_model
from bgmatting.models.starter import resolve_checkpoint

DEFAULT_UNITS = ("still_0011", "still_0020", "still_0000")


def _tile(image: np.ndarray, width: int) -> np.ndarray:
    image = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    height = int(round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def figure(checkpoint: str, units: list[str], tile: int, gap: int = 4) -> np.ndarray:
    """H x W x 3 float32: a row per unit of (photo, plate, alpha, composite) tiles on white."""
    model = load_matting_model(resolve_checkpoint(checkpoint))
    captures = {unit.name: unit for unit in capture_dataset(512)}
    missing = [name for name in units if name not in captures]
    if missing:
        raise SystemExit(f"no capture named {', '.join(missing)} in the 512 px capture set")
    rows = []
    for name in units:
        unit = captures[name]
        photo = unit.frames[0].photo()
        plate = bgmatting.io.read_image(unit.plate_path)
        result = bgmatting.matte(str(unit.frames[0].photo_path), str(unit.plate_path), checkpoint=model,
                                 progress=False)
        backdrop = np.zeros_like(photo)
        backdrop[:] = np.linspace(0.25, 0.75, photo.shape[1], dtype=np.float32)[None, :, None] * np.float32(
            [0.35, 0.55, 0.95])
        composite = composite_over(result.alpha, result.foreground, backdrop)
        tiles = [_tile(x, tile) for x in (photo, plate, result.alpha, composite)]
        spacer = np.ones((tiles[0].shape[0], gap, 3), np.float32)
        rows.append(np.concatenate([t if i == 0 else np.concatenate([spacer, t], 1) for i, t in enumerate(tiles)], 1))
    spacer = np.ones((gap, rows[0].shape[1], 3), np.float32)
    return np.concatenate([r if i == 0 else np.concatenate([spacer, r], 0) for i, r in enumerate(rows)], 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="starter", help="default: the starter weights the package ships")
    parser.add_argument("--out", default="docs/images/captures.png")
    parser.add_argument("--units", nargs="+", default=list(DEFAULT_UNITS))
    parser.add_argument("--tile", type=int, default=180, help="tile width in px")
    args = parser.parse_args(argv)
    image = figure(args.checkpoint, args.units, args.tile)
    out = Path(args.out)
    write_image(out, image)
    print(f"{out}: {image.shape[1]} x {image.shape[0]}, {out.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
