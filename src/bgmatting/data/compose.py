"""Build fixed composite sets (the paper's protocol): ``python -m bgmatting.data.compose --help``.

Each foreground is composited over ``per_fg`` backgrounds: the training set uses 100 per fg at the fg's
own resolution (the public compose.py), the test set 11 fg x 20 bg = 220 composites at 512 x 512.
Backgrounds are dealt out in disjoint blocks (fg i gets pool entries i*per_fg .. i*per_fg + per_fg - 1,
wrapping when the pool is smaller), after a seeded shuffle unless the order is given (an Adobe bg name list).
A background smaller than the foreground is upscaled then cropped (``fit_background``).

Output folder::

    image/<fg>_<n>.png        composite I = aF + (1-a)B (8-bit)
    background/<fg>_<n>.png   B
    alpha/<fg>.png            alpha (one per foreground, shared by its rows)
    foreground/<fg>.png       F
    trimap/<fg>.png           trimap (given trimap files resized, or made from alpha with K = 5)
    manifest.csv              image, background, alpha, trimap, foreground, fg_name, bg_name (relative paths)

Existing output files are kept (a stopped run resumes); pass ``overwrite=True`` / ``--overwrite`` to redo.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bgmatting.data.adobe import load_foreground, resolve_backgrounds, resolve_foregrounds
from bgmatting.data.compositing import TRIMAP_K, composite, fit_background, resize, trimap_from_alpha
from bgmatting.data.io import DataError, read_image, read_trimap, write_alpha, write_image
from bgmatting.data.manifest import write_manifest

PathLike = str | os.PathLike
COLUMNS = ("image", "background", "alpha", "trimap", "foreground", "fg_name", "bg_name")
PRESETS = {"train": {"per_fg": 100, "size": None}, "test": {"per_fg": 20, "size": 512}}


def assign_backgrounds(n_fg: int, n_bg: int, per_fg: int, seed: int = 0, shuffle: bool = True) -> np.ndarray:
    """(n_fg, per_fg) indices into the background pool: disjoint blocks of a (seeded) permutation, wrapping."""
    order = np.random.default_rng(seed).permutation(n_bg) if shuffle else np.arange(n_bg)
    return order[np.arange(n_fg * per_fg).reshape(n_fg, per_fg) % n_bg]


def fit_to_size(image: np.ndarray, size: int | None, fit: str, nearest: bool = False) -> np.ndarray:
    """Resize an H x W (x C) array to size x size: "stretch" (aspect not kept, like the 800^2 training
    resize) or "center_crop" (largest centred square, then resize). ``size=None`` keeps it as is."""
    if size is None:
        return image
    if fit == "center_crop":
        h, w = image.shape[:2]
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        image = image[y:y + s, x:x + s]
    elif fit != "stretch":
        raise ValueError(f"fit must be 'stretch' or 'center_crop', got {fit!r}")
    return resize(np.ascontiguousarray(image), size, size, nearest=nearest)


def build_composite_set(fg_paths: Sequence[PathLike], alpha_paths: Sequence[PathLike], bg_paths: Sequence[PathLike],
                        out_dir: PathLike, per_fg: int = 100, size: int | None = None, seed: int = 0, *,
                        trimap_paths: Sequence[PathLike] | None = None, shuffle_backgrounds: bool = True,
                        fit: str = "stretch", trimap_k: int = TRIMAP_K, workers: int = 2,
                        overwrite: bool = False, progress: bool = True) -> Path:
    """Composite every fg over ``per_fg`` backgrounds into ``out_dir``; returns the manifest path.

    ``size`` None keeps each foreground's resolution; an int gives size x size (``fit``). The composite is
    made at the output resolution from the resized F, alpha and fitted B, so I = aF + (1-a)B holds up to
    8-bit rounding. Deterministic from ``seed`` (only the background shuffle is random).
    """
    if len(fg_paths) != len(alpha_paths):
        raise ValueError(f"{len(fg_paths)} foregrounds but {len(alpha_paths)} alpha mattes")
    if trimap_paths is not None and len(trimap_paths) != len(fg_paths):
        raise ValueError(f"{len(fg_paths)} foregrounds but {len(trimap_paths)} trimaps")
    if not fg_paths:
        raise DataError(f"{out_dir}: no foreground images to composite")
    if not bg_paths:
        raise DataError(f"{out_dir}: no background images to composite onto")
    if per_fg < 1:
        raise ValueError(f"per_fg must be >= 1, got {per_fg}")
    out = Path(out_dir)
    for sub in ("image", "background", "alpha", "foreground", "trimap"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if len(bg_paths) < len(fg_paths) * per_fg:
        warnings.warn(f"{len(bg_paths)} backgrounds for {len(fg_paths)} x {per_fg} composites: backgrounds repeat",
                      stacklevel=2)
    assignment = assign_backgrounds(len(fg_paths), len(bg_paths), per_fg, seed, shuffle_backgrounds)
    stems = _unique_stems(fg_paths)
    bar = tqdm(total=len(fg_paths) * per_fg, desc=f"compose {out.name}", unit="img", disable=not progress)

    def one_foreground(i: int) -> list[dict]:
        stem = stems[i]
        files = {k: out / k / f"{stem}.png" for k in ("alpha", "foreground", "trimap")}
        todo = [(k, out / "image" / f"{stem}_{i * per_fg + k:06d}.png",
                 out / "background" / f"{stem}_{i * per_fg + k:06d}.png") for k in range(per_fg)]
        need = overwrite or not all(p.exists() for p in files.values()) or not all(
            a.exists() and b.exists() for _, a, b in todo)
        rows = []
        if need:
            fg_full, alpha_full = load_foreground(fg_paths[i], alpha_paths[i])
            fg = np.clip(fit_to_size(fg_full, size, fit), 0.0, 1.0)
            alpha = np.clip(fit_to_size(alpha_full, size, fit), 0.0, 1.0)
            if trimap_paths is not None:
                trimap = read_trimap(trimap_paths[i])
                if trimap.shape != alpha_full.shape:
                    raise DataError(f"{trimap_paths[i]}: trimap size {trimap.shape[::-1]} differs from alpha "
                                    f"{alpha_paths[i]} {alpha_full.shape[::-1]}")
                trimap = fit_to_size(trimap, size, fit, nearest=True)
            else:
                trimap = trimap_from_alpha(alpha, trimap_k)
            write_alpha(files["alpha"], alpha)
            write_image(files["foreground"], fg)
            write_alpha(files["trimap"], trimap)
        for k, image_path, back_path in todo:
            bg_path = Path(bg_paths[int(assignment[i, k])])
            if overwrite or not (image_path.exists() and back_path.exists()):
                h, w = alpha_full.shape
                bg = np.clip(fit_to_size(fit_background(read_image(bg_path), h, w), size, fit), 0.0, 1.0)
                write_image(back_path, bg)
                write_image(image_path, composite(fg, bg, alpha))
            rows.append({"image": image_path, "background": back_path, **files,
                         "fg_name": Path(fg_paths[i]).name, "bg_name": bg_path.name})
            bar.update(1)
        return rows

    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            rows = [row for block in pool.map(one_foreground, range(len(fg_paths))) for row in block]
    finally:
        bar.close()
    return write_manifest(out / "manifest.csv", rows, COLUMNS)


def _unique_stems(paths: Sequence[PathLike]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        stem = Path(p).stem.replace(" ", "_")
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        stems.append(stem if n == 0 else f"{stem}_{n}")
    return stems


def build_from_folders(fg_dir: PathLike | Sequence[PathLike], alpha_dir: PathLike | Sequence[PathLike],
                       bg_dir: PathLike | Sequence[PathLike], out_dir: PathLike, fg_list: PathLike | None = None,
                       bg_list: PathLike | None = None, trimap_dir: PathLike | None = None,
                       max_fg: int | None = None, **kwargs) -> Path:
    """``build_composite_set`` over folders and optional Adobe name lists (see ``AdobeCompositeDataset``).

    With ``bg_list`` the backgrounds keep the list's order (no shuffle) unless ``shuffle_backgrounds`` is given.
    """
    fgs, alphas = resolve_foregrounds(fg_dir, alpha_dir, fg_list)
    if max_fg is not None:
        fgs, alphas = fgs[:max_fg], alphas[:max_fg]
    trimaps = None
    if trimap_dir is not None:
        trimaps = [Path(trimap_dir) / p.name for p in fgs]
    kwargs.setdefault("shuffle_backgrounds", bg_list is None)
    backgrounds = resolve_backgrounds(bg_dir, bg_list)
    return build_composite_set(fgs, alphas, backgrounds, out_dir, trimap_paths=trimaps, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bgmatting.data.compose",
                                     description="Composite Adobe-style foregrounds over backgrounds into a fixed set.")
    parser.add_argument("--fg-dir", nargs="+", required=True, help="foreground folder(s)")
    parser.add_argument("--alpha-dir", nargs="+", required=True, help="alpha folder(s), paired in order with --fg-dir")
    parser.add_argument("--bg-dir", nargs="+", required=True, help="background folder(s) (COCO folder or VOC root)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--fg-list", help="foreground name list (e.g. training_fg_names.txt)")
    parser.add_argument("--bg-list", help="background name list (e.g. training_bg_names.txt); keeps its order")
    parser.add_argument("--trimap-dir", help="trimaps named like the foregrounds (e.g. the Adobe test trimaps)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="train: 100 bg per fg, own size (default); test: 20 bg per fg, 512")
    parser.add_argument("--per-fg", type=int, help="backgrounds per foreground (train 100, test 20)")
    parser.add_argument("--size", type=int, help="output size (square); default: keep the fg size (test preset: 512)")
    parser.add_argument("--fit", choices=("stretch", "center_crop"), default="stretch")
    parser.add_argument("--max-fg", type=int, help="use only the first N foregrounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="threads (default 2)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing outputs instead of resuming")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset or "train"]
    per_fg = args.per_fg if args.per_fg is not None else preset["per_fg"]
    size = args.size if args.size is not None else preset["size"]
    try:
        manifest = build_from_folders(args.fg_dir, args.alpha_dir, args.bg_dir, args.out, args.fg_list, args.bg_list,
                                      args.trimap_dir, args.max_fg, per_fg=per_fg, size=size, seed=args.seed,
                                      fit=args.fit, workers=args.workers, overwrite=args.overwrite)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
