"""The held-out photo composite set: the same scenes at several scales, cached, in composite-set layout.

Layout (one folder per scale, each read by ``bgmatting.data.adobe.CompositeSetDataset``)::

    <root>/<size>/manifest.csv           name, image, background (B'), background_clean, alpha, trimap,
                                          foreground, segmentation (S), subject, hair, background_photo
    <root>/<size>/<column>/scene_0000.png ...
    <root>/COMPLETE.json                 parameters, generator version, seconds, per-scene description

Per scale, from the scene's F, alpha and clean B area-resized to size x size (``scenes.Scene.at``):
alpha is quantised to 8 bits first, then I = alpha F + (1 - alpha) B; B' = ``perturb_background`` of B
(gamma ~ N(1, 0.12); with ``noise_p`` > 0 also the public code's noise); trimap = ``trimap_from_alpha``
(the DIM rule) with K = max(2, round(5 * size / 256)), about the same band of the scene at every scale;
S = ``soft_segmentation_from_alpha`` with the training recipe's parameters at that size
(``AdobeAugment(output_size=size).segmentation_parameters()``). The random draws of B' and S come from a
per-scene generator that does not depend on the size, so a scene gets the same gamma at every scale.

Scenes are rendered once at a master size of twice the largest scale. Everything is a pure function of
(n_scenes, sizes, seed, noise_p); the number of worker threads does not change the files.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bgmatting.data.augment import AdobeAugment, perturb_background, soft_segmentation_from_alpha
from bgmatting.data.compositing import TRIMAP_K, composite, trimap_from_alpha
from bgmatting.io import to_uint8, write_alpha, write_image
from bgmatting.data.manifest import write_manifest
from bgmatting.data.synthetic.cache import build_atomically, cache_root, parameter_key

from .scenes import render_scene

PathLike = str | os.PathLike
GENERATOR_VERSION = 3  # bump whenever the generated content changes
HELDOUT_SIZES = (96, 128, 192, 256)
FILE_COLUMNS = ("image", "background", "background_clean", "alpha", "trimap", "foreground", "segmentation")
INFO_COLUMNS = ("subject", "hair", "background_photo")
_CUE_STREAM = 22
_KIND = "heldout_photo"


def heldout_sizes() -> tuple[int, ...]:
    """The standard scales (square side in pixels) at which learning is scored."""
    return HELDOUT_SIZES


def trimap_k(size: int) -> int:
    """Trimap erosion/dilation K at ``size``: the DIM rule's 5 at 256 px, scaled, at least 2."""
    return max(2, int(round(TRIMAP_K * size / 256)))


def scale_sample(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray, rng: np.random.Generator,
                 noise_p: float = 0.0) -> dict[str, np.ndarray]:
    """The composite-set arrays of one scene at one scale (F, alpha, clean B already at that size):
    image, background (B'), background_clean, alpha, trimap (uint8), foreground, segmentation."""
    size = alpha.shape[0]
    alpha = to_uint8(alpha).astype(np.float32) / np.float32(255.0)
    captured = perturb_background(background, rng, noise_p=noise_p)
    trimap = trimap_from_alpha(alpha, trimap_k(size))
    seg = soft_segmentation_from_alpha(alpha, trimap, rng,
                                       **AdobeAugment(output_size=max(16, size)).segmentation_parameters())
    return {"image": composite(alpha, foreground, background), "background": captured,
            "background_clean": background, "alpha": alpha, "trimap": trimap, "foreground": foreground,
            "segmentation": seg}


def _write_scene(out: Path, seed: int, index: int, sizes: tuple[int, ...], noise_p: float) -> dict:
    """Render scene ``index`` and write it at every size; returns its description."""
    scene = render_scene(seed, index, 2 * max(sizes))
    name = f"scene_{index:04d}"
    for size in sizes:
        arrays = scale_sample(*scene.at(size), np.random.default_rng([seed, _CUE_STREAM, index]), noise_p)
        for column in FILE_COLUMNS:
            writer = write_image if arrays[column].ndim == 3 else write_alpha
            writer(out / str(size) / column / f"{name}.png", arrays[column])
    return {"name": name, **scene.info}


def generate_photo_set(out: Path, *, n_scenes: int, sizes: tuple[int, ...], seed: int, noise_p: float = 0.0,
                       workers: int = 2) -> dict:
    """Write the whole set into ``out`` (see the module docstring); returns the description for the marker."""
    out = Path(out)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        scenes = list(pool.map(lambda i: _write_scene(out, seed, i, sizes, noise_p), range(n_scenes)))
    for size in sizes:
        folder = out / str(size)
        rows = [{"name": s["name"], **{c: folder / c / f"{s['name']}.png" for c in FILE_COLUMNS},
                 **{c: s[c] for c in INFO_COLUMNS}} for s in scenes]
        write_manifest(folder / "manifest.csv", rows, ("name", *FILE_COLUMNS, *INFO_COLUMNS))
    return {"generator_version": GENERATOR_VERSION, "kind": _KIND,
            "parameters": {"n_scenes": n_scenes, "sizes": list(sizes), "seed": seed, "noise_p": noise_p,
                           "master_size": 2 * max(sizes)},
            "trimap_k": {str(s): trimap_k(s) for s in sizes}, "scenes": scenes}


def _checked_sizes(sizes) -> tuple[int, ...]:
    sizes = tuple(sorted({int(s) for s in sizes}))
    if not sizes or sizes[0] < 16:
        raise ValueError(f"sizes must be at least 16 px each, got {sizes}")
    return sizes


def ensure_photo_set(root: PathLike | None = None, *, n_scenes: int = 32, sizes=HELDOUT_SIZES, seed: int = 0,
                     noise_p: float = 0.0, workers: int = 2) -> Path:
    """Generate (first call) or find (later calls) the held-out photo set; returns its folder.

    root: cache root (default ``$BGMATTING_CACHE`` or ``~/.cache/bgmatting``); the set goes to
    ``root/heldout_photo/<parameters>``. Generation is atomic (``synthetic.cache.build_atomically``).
    """
    if n_scenes < 1:
        raise ValueError(f"n_scenes must be >= 1, got {n_scenes}")
    sizes = _checked_sizes(sizes)
    base = Path(root).expanduser() if root is not None else cache_root()
    key = parameter_key(v=GENERATOR_VERSION, n=n_scenes, sizes=sizes, noise=noise_p, seed=seed)
    folder, _ = build_atomically(base / _KIND / key, lambda tmp: generate_photo_set(
        tmp, n_scenes=n_scenes, sizes=sizes, seed=seed, noise_p=noise_p, workers=workers))
    return folder


def heldout_manifest(size: int = 96, *, n_scenes: int = 32, seed: int = 0, noise_p: float = 0.0,
                     cache_dir: PathLike | None = None, workers: int = 2) -> Path:
    """The manifest of the set at ``size`` (generated on first use). A standard size uses the set of all
    ``HELDOUT_SIZES`` (the same scenes); another size gets a set of its own, with the same scenes."""
    sizes = HELDOUT_SIZES if size in HELDOUT_SIZES else (int(size),)
    folder = ensure_photo_set(cache_dir, n_scenes=n_scenes, sizes=sizes, seed=seed, noise_p=noise_p,
                              workers=workers)
    return folder / str(int(size)) / "manifest.csv"


def heldout_dataset(size: int = 96, *, n_scenes: int = 32, seed: int = 0, noise_p: float = 0.0,
                    cache_dir: PathLike | None = None, workers: int = 2, motion_frames: int = 4):
    """The held-out photo set at ``size`` as a ``CompositeSetDataset`` reading its stored S (see
    ``heldout_manifest``); samples are the supervised sample dict at size x size."""
    from bgmatting.data.adobe import CompositeSetDataset

    manifest = heldout_manifest(size, n_scenes=n_scenes, seed=seed, noise_p=noise_p, cache_dir=cache_dir,
                                workers=workers)
    return CompositeSetDataset(manifest, segmentation="file", motion_frames=motion_frames)
