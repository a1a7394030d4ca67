"""Reading a capture set: its units (stills and clips), each with its photo files, plate file and truth.

A :class:`CaptureSet` is a test set of *units*, not of network samples: ``set[i]`` is a :class:`CaptureUnit`
(a still, or a clip's frames in order) whose photos and plate are the JPEG files a user would give
``python -m bgmatting.infer``. It is scored end to end by :mod:`bgmatting.evaluation.captures` through
``pipeline``, the inference pipeline attached by its maker (:func:`bgmatting.inference.captures.capture_test_set`);
the data layer only carries it.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from bgmatting.io import DataError, read_alpha, read_image, read_trimap
from bgmatting.data.manifest import read_manifest

from .build import COLUMNS, N_CLIPS, N_FRAMES, N_STILLS, SEED, ensure_capture_set

PathLike = str | os.PathLike


@dataclass(frozen=True)
class CaptureFrame:
    """One photo of a unit and its truth files; the ``photo()``, ``alpha()``, ``foreground()`` and ``trimap()``
    readers give float32 [0, 1] arrays (H x W x 3, H x W, H x W x 3) and a uint8 0/128/255 trimap."""

    name: str
    photo_path: Path
    alpha_path: Path
    foreground_path: Path
    trimap_path: Path

    def photo(self) -> np.ndarray:
        return read_image(self.photo_path)

    def alpha(self) -> np.ndarray:
        return read_alpha(self.alpha_path)

    def foreground(self) -> np.ndarray:
        return read_image(self.foreground_path)

    def trimap(self) -> np.ndarray:
        return read_trimap(self.trimap_path)


@dataclass(frozen=True)
class CaptureUnit:
    """A still (one frame) or a clip (``kind`` fixed / handheld, frames in order) with its captured plate.
    ``input_path``: what ``infer`` would be given (the still's photo, or the clip's frame folder)."""

    name: str
    kind: str
    frames: tuple[CaptureFrame, ...]
    plate_path: Path
    info: dict = field(default_factory=dict)

    @property
    def is_clip(self) -> bool:
        return self.kind != "still"

    @property
    def input_path(self) -> Path:
        return self.frames[0].photo_path.parent if self.is_clip else self.frames[0].photo_path


def _units(manifest_path: Path) -> list[CaptureUnit]:
    manifest = read_manifest(manifest_path, COLUMNS)
    grouped: dict[str, list[int]] = {}
    for i, row in enumerate(manifest.rows):
        grouped.setdefault(row["unit"], []).append(i)
    units = []
    for name, rows in grouped.items():
        first = manifest.rows[rows[0]]
        frames = tuple(CaptureFrame(manifest.rows[i]["name"], *(manifest.file(i, c) for c in
                                                                 ("photo", "alpha", "foreground", "trimap")))
                       for i in sorted(rows, key=lambda i: int(manifest.rows[i]["index"])))
        if first["kind"] != "still" and len({f.photo_path.parent for f in frames}) != 1:
            raise DataError(f"{manifest_path}: the frames of clip {name!r} are not in one folder")
        info = {k: v for k, v in first.items() if k not in COLUMNS and k is not None}
        units.append(CaptureUnit(name, first["kind"], frames, manifest.file(rows[0], "plate"), info))
    return units


class CaptureSet(Dataset):
    """The units of a capture set (``manifest``: its ``manifest.csv``), stills first, then clips.

    ``pipeline``: the object that mattes a unit end to end (see :mod:`bgmatting.inference.captures`), or None
    for a set that is only read. ``units``: a ready list instead of reading the manifest (see :meth:`first`).
    """

    def __init__(self, manifest: PathLike, *, pipeline: Any = None, units: list[CaptureUnit] | None = None) -> None:
        self.manifest = Path(manifest)
        self.pipeline = pipeline
        self.units = list(units) if units is not None else _units(self.manifest)

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, index: int) -> CaptureUnit:
        return self.units[index]

    def __iter__(self) -> Iterator[CaptureUnit]:
        return iter(self.units)

    @property
    def frame_count(self) -> int:
        return sum(len(u.frames) for u in self.units)

    def first(self, limit: int | None) -> CaptureSet:
        """The first ``limit`` units (all of them for None or a limit >= their number), same pipeline."""
        if limit is None or limit >= len(self.units):
            return self
        return CaptureSet(self.manifest, pipeline=self.pipeline, units=self.units[:int(limit)])


def capture_dataset(size: int = 256, *, n_stills: int = N_STILLS, n_clips: int = N_CLIPS, n_frames: int = N_FRAMES,
                    seed: int = SEED, cache_dir: PathLike | None = None, workers: int = 2,
                    pipeline: Any = None) -> CaptureSet:
    """The capture set at ``size`` (generated on first use, :func:`ensure_capture_set`), with ``pipeline``."""
    folder = ensure_capture_set(cache_dir, size=size, n_stills=n_stills, n_clips=n_clips, n_frames=n_frames,
                                seed=seed, workers=workers)
    return CaptureSet(folder / "manifest.csv", pipeline=pipeline)
