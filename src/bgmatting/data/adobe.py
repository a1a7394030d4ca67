"""Supervised (Adobe-style) matting datasets.

* ``AdobeCompositeDataset``: foregrounds + alpha mattes + a pool of backgrounds, composited on the fly and
  augmented (``AdobeAugment``). Sample ``index`` of epoch ``epoch`` is a pure function of (seed, epoch, index).
* ``CompositeSetDataset``: a fixed composite set written by ``bgmatting.data.composite_sets`` (manifest CSV), at the
  set's own resolution, for validation and evaluation.

Both yield the supervised sample dict: image, background (B'), background_clean, foreground (3 x H x W),
segmentation, alpha (1 x H x W), motion (4 x H x W) as float32 in [0, 1], and trimap (1 x H x W uint8 0/128/255).

Adobe release layout (Deep Image Matting, ``Combined_Dataset``): foregrounds and alphas live in two folder
pairs, ``Adobe-licensed images/{fg,alpha}`` and ``Other/{fg,alpha}``; name lists (``training_fg_names.txt``,
``training_bg_names.txt``, ``test_fg_names.txt``, ``test_bg_names.txt``) hold one file name per line, the
bg list ordered so that fg i uses bg lines i*N .. i*N+N-1. ``from_folders`` takes a folder or a list of
folders for fg and alpha and reads those lists as they come. Background folders are COCO image folders
(e.g. ``train2014/``) or a VOC root (``VOCdevkit/VOC2012`` or its ``JPEGImages``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bgmatting.data.augment import AdobeAugment, soft_segmentation_from_alpha, still_motion_cues
from bgmatting.data.compositing import fit_background, hwc_to_chw
from bgmatting.io import IMAGE_EXTENSIONS, DataError, list_images, read_alpha, read_image, read_trimap
from bgmatting.data.manifest import read_manifest

PathLike = str | os.PathLike
SAMPLE_KEYS = ("image", "background", "background_clean", "segmentation", "motion", "alpha", "foreground", "trimap")


# ----------------------------------------------------------------------------------------------- name lists
def read_name_list(path: PathLike) -> list[str]:
    """File names from a name-list file, one per line (blank lines and surrounding whitespace ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: name list does not exist")
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DataError(f"{path}: name list is empty")
    return names


def image_folder(folder: PathLike) -> Path:
    """The folder holding the images: ``folder`` itself, or a VOC root's ``JPEGImages`` (also under VOC20xx)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder does not exist")
    for candidate in (folder, folder / "JPEGImages", *sorted(folder.glob("VOC*/JPEGImages"))):
        if candidate.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in candidate.iterdir()):
            return candidate
    return folder


def _folders(value: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value]


def find_named_file(name: str, folder: Path) -> Path | None:
    """``folder/name``, or a file with the same stem and another image extension."""
    exact = folder / name
    if exact.is_file():
        return exact
    stem = Path(name).stem
    for ext in IMAGE_EXTENSIONS:
        for cand in (folder / (stem + ext), folder / (stem + ext.upper())):
            if cand.is_file():
                return cand
    return None


def resolve_foregrounds(fg_dirs: PathLike | Sequence[PathLike], alpha_dirs: PathLike | Sequence[PathLike],
                        fg_list: PathLike | None = None) -> tuple[list[Path], list[Path]]:
    """(foreground paths, alpha paths) paired by file name. The k-th fg folder pairs with the k-th alpha folder.

    With ``fg_list``, the listed names in their order (each looked up in the fg folders in turn); without,
    every image of the fg folders, sorted. Missing files are a DataError naming the list and the name.
    """
    fg_dirs, alpha_dirs = _folders(fg_dirs), _folders(alpha_dirs)
    if len(fg_dirs) != len(alpha_dirs):
        raise ValueError(f"{len(fg_dirs)} foreground folders but {len(alpha_dirs)} alpha folders; "
                         "they pair up in order")
    if fg_list is None:
        entries = [(p.name, k) for k, d in enumerate(fg_dirs) for p in list_images(d)]
    else:
        entries = []
        for name in read_name_list(fg_list):
            k = next((k for k, d in enumerate(fg_dirs) if find_named_file(name, d) is not None), None)
            if k is None:
                raise DataError(f"{fg_list}: foreground {name!r} not found in {', '.join(map(str, fg_dirs))}")
            entries.append((name, k))
    fgs, alphas = [], []
    for name, k in entries:
        fg = find_named_file(name, fg_dirs[k])
        alpha = find_named_file(name, alpha_dirs[k])
        if alpha is None:
            raise DataError(f"{fg_dirs[k] / name}: no alpha matte with this name in {alpha_dirs[k]}")
        fgs.append(fg)
        alphas.append(alpha)
    return fgs, alphas


def resolve_backgrounds(bg_dirs: PathLike | Sequence[PathLike], bg_list: PathLike | None = None) -> list[Path]:
    """Background paths: the names of ``bg_list`` in order (looked up in each folder in turn), or all images."""
    folders = [image_folder(d) for d in _folders(bg_dirs)]
    if bg_list is None:
        return [p for d in folders for p in list_images(d)]
    paths = []
    for name in read_name_list(bg_list):
        found = next((f for f in (find_named_file(name, d) for d in folders) if f is not None), None)
        if found is None:
            raise DataError(f"{bg_list}: background {name!r} not found in {', '.join(map(str, folders))}")
        paths.append(found)
    return paths


# ----------------------------------------------------------------------------------------------- loading
def load_foreground(fg_path: PathLike, alpha_path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(F float32 H x W x 3, alpha float32 H x W); a size mismatch is a DataError naming both files."""
    fg, alpha = read_image(fg_path), read_alpha(alpha_path)
    if fg.shape[:2] != alpha.shape:
        raise DataError(f"{alpha_path}: alpha is {alpha.shape[1]}x{alpha.shape[0]} but its foreground {fg_path} "
                        f"is {fg.shape[1]}x{fg.shape[0]}")
    return fg, alpha


def to_sample(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """numpy H x W (x C) arrays -> C x H x W tensors (trimap stays uint8)."""
    return {k: hwc_to_chw(arrays[k]) for k in SAMPLE_KEYS}


# ----------------------------------------------------------------------------------------------- datasets
class AdobeCompositeDataset(Dataset):
    """Foregrounds composited on the fly over backgrounds, with train-time augmentation.

    Length = len(fg_paths) * samples_per_fg (the paper composites each fg over 100 backgrounds). Index i
    is foreground i // samples_per_fg. ``background_assignment``: "blocks" gives fg j the backgrounds
    j*N .. j*N+N-1 of the pool (wrapping; the Deep Image Matting / public compose.py pairing, and the order
    of the Adobe bg name lists), "random" draws one per (seed, epoch, index). ``background_position``:
    "top_left" (public code) or "random" window when a larger background is cropped to the fg size.
    Call ``set_epoch`` before each epoch (with persistent DataLoader workers it has no effect on them).
    """

    def __init__(self, fg_paths: Sequence[PathLike], alpha_paths: Sequence[PathLike], bg_paths: Sequence[PathLike],
                 samples_per_fg: int = 100, augment: AdobeAugment | dict | None = None, seed: int = 0,
                 background_assignment: str = "blocks", background_position: str = "top_left") -> None:
        if len(fg_paths) != len(alpha_paths):
            raise ValueError(f"{len(fg_paths)} foregrounds but {len(alpha_paths)} alpha mattes")
        if not fg_paths:
            raise DataError("no foreground images given")
        if not bg_paths:
            raise DataError("no background images given")
        if background_assignment not in ("blocks", "random"):
            raise ValueError(f"background_assignment must be 'blocks' or 'random', got {background_assignment!r}")
        if background_position not in ("top_left", "random"):
            raise ValueError(f"background_position must be 'top_left' or 'random', got {background_position!r}")
        if samples_per_fg < 1:
            raise ValueError(f"samples_per_fg must be >= 1, got {samples_per_fg}")
        self.fg_paths = [Path(p) for p in fg_paths]
        self.alpha_paths = [Path(p) for p in alpha_paths]
        self.bg_paths = [Path(p) for p in bg_paths]
        self.samples_per_fg = int(samples_per_fg)
        self.augment = augment if isinstance(augment, AdobeAugment) else AdobeAugment(**(augment or {}))
        self.seed = int(seed)
        self.epoch = 0
        self.background_assignment = background_assignment
        self.background_position = background_position

    @classmethod
    def from_folders(cls, fg_dir: PathLike | Sequence[PathLike], alpha_dir: PathLike | Sequence[PathLike],
                     bg_dir: PathLike | Sequence[PathLike], fg_list: PathLike | None = None,
                     bg_list: PathLike | None = None, **kwargs) -> AdobeCompositeDataset:
        """Build from folders (each a path or a list of paths) and optional Adobe-release name lists."""
        fgs, alphas = resolve_foregrounds(fg_dir, alpha_dir, fg_list)
        return cls(fgs, alphas, resolve_backgrounds(bg_dir, bg_list), **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.fg_paths) * self.samples_per_fg

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def background_index(self, index: int, rng: np.random.Generator) -> int:
        if self.background_assignment == "random":
            return int(rng.integers(len(self.bg_paths)))
        return index % len(self.bg_paths)  # == (fg * N + k) mod pool size

    def load(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(F, alpha, B fitted to F's size) for ``index``, at the foreground's own resolution."""
        j = index // self.samples_per_fg
        fg, alpha = load_foreground(self.fg_paths[j], self.alpha_paths[j])
        bg = read_image(self.bg_paths[self.background_index(index, rng)])
        position = (rng.random(), rng.random()) if self.background_position == "random" else (0.0, 0.0)
        return fg, alpha, fit_background(bg, alpha.shape[0], alpha.shape[1], position)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        rng = self.rng(index)
        fg, alpha, bg = self.load(index, rng)
        return to_sample(self.augment(fg, alpha, bg, rng))


class CompositeSetDataset(Dataset):
    """A fixed composite set (manifest CSV from ``bgmatting.data.composite_sets``) at its own resolution.

    Required columns: image, background, alpha, trimap. Optional: foreground (else F = I, documented
    stand-in), background_clean (else = background), segmentation (used when ``segmentation="file"``).
    ``segmentation="from_alpha"`` synthesises S with the training recipe's parameters scaled to the image's
    short side, from a per-index seed (so a set always gives the same S). Motion = 4 x gray(I).
    """

    REQUIRED = ("image", "background", "alpha", "trimap")

    def __init__(self, manifest_path: PathLike, segmentation: str = "from_alpha", seed: int = 0,
                 motion_frames: int = 4) -> None:
        if segmentation not in ("from_alpha", "file"):
            raise ValueError(f"segmentation must be 'from_alpha' or 'file', got {segmentation!r}")
        required = self.REQUIRED + (("segmentation",) if segmentation == "file" else ())
        self.manifest = read_manifest(manifest_path, required_columns=required)
        self.segmentation = segmentation
        self.seed = int(seed)
        self.motion_frames = int(motion_frames)

    def __len__(self) -> int:
        return len(self.manifest)

    def file(self, index: int, column: str) -> Path:
        return self.manifest.file(index, column)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        m = self.manifest
        image_path, back_path = self.file(index, "image"), self.file(index, "background")
        image, background = read_image(image_path), read_image(back_path)
        alpha, trimap = read_alpha(self.file(index, "alpha")), read_trimap(self.file(index, "trimap"))
        clean = read_image(self.file(index, "background_clean")) if m.has(index, "background_clean") else background
        fg = read_image(self.file(index, "foreground")) if m.has(index, "foreground") else image
        h, w = image.shape[:2]
        named = {"background": (background, back_path), "alpha": (alpha, self.file(index, "alpha")),
                 "trimap": (trimap, self.file(index, "trimap")), "foreground": (fg, None),
                 "background_clean": (clean, None)}
        if self.segmentation == "file":
            named["segmentation"] = (read_alpha(self.file(index, "segmentation")), self.file(index, "segmentation"))
        for key, (arr, path) in named.items():
            if arr.shape[:2] != (h, w):
                where = path if path is not None else self.file(index, key)
                raise DataError(f"{where}: {key} is {arr.shape[1]}x{arr.shape[0]} but image {image_path} is {w}x{h}")
        if self.segmentation == "file":
            seg = named["segmentation"][0]
        else:
            params = AdobeAugment(output_size=max(16, min(h, w))).segmentation_parameters()
            seg = soft_segmentation_from_alpha(alpha, trimap, np.random.default_rng([self.seed, index]), **params)
        motion = still_motion_cues(image, self.motion_frames)
        return to_sample({"image": image, "background": background, "background_clean": clean, "segmentation": seg,
                          "motion": motion, "alpha": alpha, "foreground": fg, "trimap": trimap})
