"""Synthetic Adobe-style matting data: generated once into the cache, read by the Adobe dataset classes.

Layout (the Adobe Deep Image Matting release's names, so ``AdobeCompositeDataset.from_folders`` reads it)::

    <root>/fg/fg_0000.png ...          training foregrounds F (RGB)
    <root>/alpha/fg_0000.png ...       their alpha mattes (8-bit gray)
    <root>/bg/bg_0000.png ...          training backgrounds
    <root>/training_fg_names.txt       one file name per line
    <root>/training_bg_names.txt
    <root>/test/fg/, test/alpha/, test/bg/, test_fg_names.txt, test_bg_names.txt
                                        held-out foregrounds and backgrounds (none shared with training)
    <root>/test/composites/manifest.csv the fixed test composite set (``bgmatting.data.composite_sets``):
                                        each test fg over ``n_test_bg`` backgrounds of its own
    <root>/COMPLETE.json               written last: parameters, generator version, seconds, and per subject
                                        its kind and hard cases (veil, glass, motion_blur, camouflage)

Everything is a pure function of the parameters and ``seed``.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bgmatting.data.adobe import AdobeCompositeDataset, CompositeSetDataset
from bgmatting.data.composite_sets import build_composite_set
from bgmatting.io import write_alpha, write_image

from .cache import build_atomically, cache_root, parameter_key
from .shapes import render_subject
from .textures import random_background

PathLike = str | os.PathLike
GENERATOR_VERSION = 2  # bump whenever the generated content changes
# Streams of the seed sequence: each item has its own generator, so items do not depend on each other.
_TRAIN_FG, _TRAIN_BG, _TEST_FG, _TEST_BG = 1, 2, 3, 4


def _size_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def make_background(seed: int, stream: int, index: int, height: int, width: int) -> np.ndarray:
    """Background ``index`` of a stream: H x W x 3 float32 in [0, 1]."""
    return random_background(np.random.default_rng([seed, stream, index]), height, width)


def make_foreground(seed: int, stream: int, index: int, height: int, width: int,
                    camouflage_p: float = 0.25, camouflage_source: np.ndarray | None = None):
    """Foreground ``index`` of a stream (a ``Subject``). With probability ``camouflage_p`` the body copies the
    colours of ``camouflage_source`` (a background it will be composited over)."""
    rng = np.random.default_rng([seed, stream, index])
    source = camouflage_source if (camouflage_source is not None and rng.random() < camouflage_p) else None
    return render_subject(rng, height, width, camouflage=source)


def _write_names(path: Path, names: list[str]) -> None:
    path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def generate_adobe_set(out: Path, *, n_fg: int, n_bg: int, size, n_test_fg: int, n_test_bg: int, seed: int,
                       camouflage_p: float = 0.25, test_size: int | None = None, workers: int = 2) -> dict:
    """Write the whole synthetic Adobe-style set into ``out`` (see the module docstring); returns counts."""
    h, w = _size_hw(size)
    out = Path(out)
    stats = {"veil": 0, "glass": 0, "motion_blur": 0, "camouflage": 0}
    subjects: dict[str, dict] = {}

    def note(name: str, info: dict) -> None:
        subjects[name] = dict(info)
        for k in stats:
            stats[k] += bool(info.get(k))

    def background(stream: int, folder: Path, name: str, i: int) -> np.ndarray:
        bg = make_background(seed, stream, i, h, w)
        write_image(folder / name, bg)
        return bg

    def foreground(stream: int, folder: Path, name: str, i: int, source: np.ndarray) -> dict:
        s = make_foreground(seed, stream, i, h, w, camouflage_p, source)
        write_image(folder / "fg" / name, s.foreground)
        write_alpha(folder / "alpha" / name, s.alpha)
        return s.info

    # Items are independent (one seeded generator each), so threads give the same files in any order.
    with ThreadPoolExecutor(max(1, workers)) as pool:
        bg_names = [f"bg_{i:04d}.png" for i in range(n_bg)]
        train_bgs = list(pool.map(lambda i: background(_TRAIN_BG, out / "bg", bg_names[i], i), range(n_bg)))
        fg_names = [f"fg_{i:04d}.png" for i in range(n_fg)]

        def train_fg(i: int) -> dict:
            source = train_bgs[int(np.random.default_rng([seed, _TRAIN_FG, i, 1]).integers(n_bg))]
            return foreground(_TRAIN_FG, out, fg_names[i], i, source)

        for name, info in zip(fg_names, pool.map(train_fg, range(n_fg))):
            note(name, info)
        _write_names(out / "training_fg_names.txt", fg_names)
        _write_names(out / "training_bg_names.txt", bg_names)

        # Held-out test set: fg i is composited over its own block of backgrounds i*N .. i*N+N-1 (no shuffle),
        # so a camouflaged test fg copies the colours of the first background it is shown on.
        test = out / "test"
        test_bg_names = [f"test_bg_{i:04d}.png" for i in range(n_test_fg * n_test_bg)]
        test_bgs = list(pool.map(lambda i: background(_TEST_BG, test / "bg", test_bg_names[i], i),
                                 range(len(test_bg_names))))
        test_fg_names = [f"test_fg_{i:04d}.png" for i in range(n_test_fg)]
        for name, info in zip(test_fg_names, pool.map(
                lambda i: foreground(_TEST_FG, test, test_fg_names[i], i, test_bgs[i * n_test_bg]), range(n_test_fg))):
            note(name, info)
    _write_names(out / "test_fg_names.txt", test_fg_names)
    _write_names(out / "test_bg_names.txt", test_bg_names)
    build_composite_set([test / "fg" / n for n in test_fg_names], [test / "alpha" / n for n in test_fg_names],
                        [test / "bg" / n for n in test_bg_names], test / "composites", per_fg=n_test_bg,
                        size=test_size, seed=seed, shuffle_backgrounds=False, workers=workers, progress=False)
    return {"generator_version": GENERATOR_VERSION, "kind": "synthetic_adobe",
            "parameters": {"n_fg": n_fg, "n_bg": n_bg, "size": [h, w], "n_test_fg": n_test_fg,
                           "n_test_bg": n_test_bg, "seed": seed, "camouflage_p": camouflage_p,
                           "test_size": test_size},
            "subjects_with": stats, "subjects": subjects}


def ensure_synthetic_adobe(root: PathLike | None = None, *, n_fg: int = 48, n_bg: int = 64,
                           size: int | tuple[int, int] = 256, n_test_fg: int = 8, n_test_bg: int = 4,
                           seed: int = 0, camouflage_p: float = 0.25, test_size: int | None = None,
                           workers: int = 2) -> Path:
    """Generate (first call) or find (later calls) the synthetic Adobe-style set; returns its folder.

    root: cache root (default ``$BGMATTING_CACHE`` or ``~/.cache/bgmatting``); the set goes to
    ``root/synthetic_adobe/<parameters>``. size: fg/bg size, int (square) or (height, width).
    n_test_bg: backgrounds per held-out test foreground (the paper: 20 per fg), all distinct.
    test_size: side of the (square) test composites; None keeps ``size``. workers: generation threads
    (the result does not depend on it).
    """
    if min(n_fg, n_bg, n_test_fg, n_test_bg) < 1:
        raise ValueError("n_fg, n_bg, n_test_fg and n_test_bg must all be >= 1")
    h, w = _size_hw(size)
    if min(h, w) < 16:
        raise ValueError(f"size must be at least 16 px, got {(h, w)}")
    base = Path(root).expanduser() if root is not None else cache_root()
    key = parameter_key(v=GENERATOR_VERSION, fg=n_fg, bg=n_bg, size=(h, w), testfg=n_test_fg, testbg=n_test_bg,
                        cam=camouflage_p, test=test_size or "same", seed=seed)
    folder, _ = build_atomically(base / "synthetic_adobe" / key, lambda tmp: generate_adobe_set(
        tmp, n_fg=n_fg, n_bg=n_bg, size=(h, w), n_test_fg=n_test_fg, n_test_bg=n_test_bg, seed=seed,
        camouflage_p=camouflage_p, test_size=test_size, workers=workers))
    return folder


def synthetic_adobe_dataset(split: str = "train", cache_dir: PathLike | None = None, *, n_fg: int = 48,
                            n_bg: int = 64, size: int | tuple[int, int] = 256, n_test_fg: int = 8,
                            n_test_bg: int = 4, seed: int = 0, camouflage_p: float = 0.25,
                            test_size: int | None = None, workers: int = 2, **dataset_kwargs):
    """The synthetic set as a dataset (generated on first use).

    split="train": ``AdobeCompositeDataset.from_folders`` over fg/, alpha/, bg/ and the name lists;
    ``dataset_kwargs`` go to it (samples_per_fg, augment, seed of the sampling, background_assignment, ...).
    split="val": ``CompositeSetDataset`` over the held-out composite set; ``dataset_kwargs`` go to it
    (segmentation, seed, motion_frames). ``seed`` here is the generation seed; ``sample_seed`` (in
    dataset_kwargs) is passed on as the dataset's own ``seed``.
    """
    root = ensure_synthetic_adobe(cache_dir, n_fg=n_fg, n_bg=n_bg, size=size, n_test_fg=n_test_fg,
                                  n_test_bg=n_test_bg, seed=seed, camouflage_p=camouflage_p, test_size=test_size,
                                  workers=workers)
    if "sample_seed" in dataset_kwargs:
        dataset_kwargs["seed"] = dataset_kwargs.pop("sample_seed")
    if split == "train":
        return AdobeCompositeDataset.from_folders(root / "fg", root / "alpha", root / "bg",
                                                  fg_list=root / "training_fg_names.txt",
                                                  bg_list=root / "training_bg_names.txt", **dataset_kwargs)
    if split in ("val", "test"):
        return CompositeSetDataset(root / "test" / "composites" / "manifest.csv", **dataset_kwargs)
    raise ValueError(f"split must be 'train' or 'val', got {split!r}")
