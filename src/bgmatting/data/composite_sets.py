"""Build fixed composite sets (the paper's protocol); command line: ``python -m bgmatting.compose --help``.

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
``PRESETS`` are the paper's two sets (per_fg and size).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bgmatting.data.adobe import load_foreground, resolve_backgrounds, resolve_foregrounds
from bgmatting.data.compositing import TRIMAP_K, composite, fit_background, resize, trimap_from_alpha
from bgmatting.io import DataError, read_image, read_trimap, write_alpha, write_image
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
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1 (or None: each foreground's own size), got {size}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: output exists and is not a folder")
    for sub in ("image", "background", "alpha", "foreground", "trimap"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if len(bg_paths) < len(fg_paths) * per_fg:
        warnings.warn(f"{len(bg_paths)} backgrounds for {len(fg_paths)} x {per_fg} composites: backgrounds repeat",
                      stacklevel=2)
    stems = _unique_stems(fg_paths)
    with tqdm(total=len(fg_paths) * per_fg, desc=f"compose {out.name}", unit="img", disable=not progress) as bar:
        writer = _SetWriter(out, bg_paths, assign_backgrounds(len(fg_paths), len(bg_paths), per_fg, seed,
                                                                shuffle_backgrounds),
                            size, fit, trimap_k, overwrite, bar)

        def one_foreground(i: int) -> list[dict]:
            trimap = trimap_paths[i] if trimap_paths is not None else None
            return writer.foreground(i, stems[i], fg_paths[i], alpha_paths[i], trimap)

        with ThreadPoolExecutor(max(1, workers)) as pool:
            rows = [row for block in pool.map(one_foreground, range(len(fg_paths))) for row in block]
    return write_manifest(out / "manifest.csv", rows, COLUMNS)


@dataclass
class _SetWriter:
    """Writes one foreground's files and its composites into a set folder (resuming: present files are kept)."""

    out: Path
    bg_paths: Sequence[PathLike]
    assignment: np.ndarray  # (n_fg, per_fg) indices into bg_paths
    size: int | None
    fit: str
    trimap_k: int
    overwrite: bool
    bar: tqdm

    def foreground(self, i: int, stem: str, fg_path: PathLike, alpha_path: PathLike,
                   trimap_path: PathLike | None) -> list[dict]:
        """Manifest rows of foreground ``i``, writing whatever is missing."""
        files = {k: self.out / k / f"{stem}.png" for k in ("alpha", "foreground", "trimap")}
        per_fg = self.assignment.shape[1]
        todo = [(k, self.out / "image" / f"{stem}_{i * per_fg + k:06d}.png",
                 self.out / "background" / f"{stem}_{i * per_fg + k:06d}.png") for k in range(per_fg)]
        need = self.overwrite or not all(p.exists() for p in files.values()) or not all(
            a.exists() and b.exists() for _, a, b in todo)
        layers = self._write_layers(files, fg_path, alpha_path, trimap_path) if need else None
        rows = []
        for k, image_path, back_path in todo:
            bg_path = Path(self.bg_paths[int(self.assignment[i, k])])
            if self.overwrite or not (image_path.exists() and back_path.exists()):
                self._write_composite(layers, bg_path, image_path, back_path)
            rows.append({"image": image_path, "background": back_path, **files,
                         "fg_name": Path(fg_path).name, "bg_name": bg_path.name})
            self.bar.update(1)
        return rows

    def _write_layers(self, files: dict[str, Path], fg_path: PathLike, alpha_path: PathLike,
                      trimap_path: PathLike | None) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Write F, alpha and the trimap at the output size; returns (F, alpha, the foreground's own size)."""
        fg_full, alpha_full = load_foreground(fg_path, alpha_path)
        fg = np.clip(fit_to_size(fg_full, self.size, self.fit), 0.0, 1.0)
        alpha = np.clip(fit_to_size(alpha_full, self.size, self.fit), 0.0, 1.0)
        if trimap_path is not None:
            trimap = read_trimap(trimap_path)
            if trimap.shape != alpha_full.shape:
                raise DataError(f"{trimap_path}: trimap size {trimap.shape[::-1]} differs from alpha "
                                f"{alpha_path} {alpha_full.shape[::-1]}")
            trimap = fit_to_size(trimap, self.size, self.fit, nearest=True)
        else:
            trimap = trimap_from_alpha(alpha, self.trimap_k)
        write_alpha(files["alpha"], alpha)
        write_image(files["foreground"], fg)
        write_alpha(files["trimap"], trimap)
        return fg, alpha, alpha_full.shape

    def _write_composite(self, layers: tuple[np.ndarray, np.ndarray, tuple[int, int]], bg_path: Path,
                         image_path: Path, back_path: Path) -> None:
        """B fitted to the foreground's own size (then to the output size) and I = aF + (1-a)B."""
        fg, alpha, (h, w) = layers
        bg = np.clip(fit_to_size(fit_background(read_image(bg_path), h, w), self.size, self.fit), 0.0, 1.0)
        write_image(back_path, bg)
        write_image(image_path, composite(alpha, fg, bg))


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
    if max_fg is not None and max_fg < 1:
        raise ValueError(f"max_fg must be >= 1, got {max_fg}")
    fgs, alphas = resolve_foregrounds(fg_dir, alpha_dir, fg_list)
    if max_fg is not None:
        fgs, alphas = fgs[:max_fg], alphas[:max_fg]
    trimaps = None
    if trimap_dir is not None:
        trimaps = [Path(trimap_dir) / p.name for p in fgs]
        missing = [t for t in trimaps if not t.is_file()]
        if missing:
            raise DataError(f"{missing[0]}: no trimap for foreground {missing[0].name!r} in {trimap_dir}"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    kwargs.setdefault("shuffle_backgrounds", bg_list is None)
    backgrounds = resolve_backgrounds(bg_dir, bg_list)
    return build_composite_set(fgs, alphas, backgrounds, out_dir, trimap_paths=trimaps, **kwargs)
