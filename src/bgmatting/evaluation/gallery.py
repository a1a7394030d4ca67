"""Gallery PNG: what a model predicts on a few held-out images, next to the inputs and the baselines.

One row per image; columns: image, B', S, true alpha, predicted alpha, each baseline's alpha, the
prediction's |error| as a heat map (0 black .. 1 bright) and, when given, the composite of the prediction. Every
alpha tile is captioned with its SAD against the true alpha (over the trimap's unknown band when a trimap is
given, as in the DIM metrics), or with the captions given (capture sets: band and whole-frame SAD). Inputs are
plain arrays, so the gallery does not depend on how the predictions were made. Tiles are drawn with nearest
interpolation at no less than their pixel size, so single-pixel strands stay visible.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from torch.utils.data import Dataset

from bgmatting import metrics
from bgmatting.evaluation.score import baseline_alpha, numpy_image
from bgmatting.models import MattingModel

from bgmatting.evaluation.figures import new_figure, save_png

PathLike = str | os.PathLike


@dataclass
class GalleryRow:
    """One held-out image: image and B' H x W x 3, S, true and predicted alpha H x W (float32 in [0, 1]),
    baseline alphas by name (H x W), an optional uint8 trimap (0 / 128 / 255) for the SAD captions, an optional
    ``composite`` (H x W x 3, the prediction over a new background) drawn last, and optional ``captions`` of the
    alpha tiles by label (the model's is ``"predicted"``; default: the SAD computed here)."""

    name: str
    image: np.ndarray
    background: np.ndarray
    segmentation: np.ndarray
    alpha: np.ndarray
    predicted: np.ndarray
    baselines: Mapping[str, np.ndarray] = field(default_factory=dict)
    trimap: np.ndarray | None = None
    composite: np.ndarray | None = None
    captions: Mapping[str, str] | None = None

    def _caption(self, key: str, arr: np.ndarray) -> str:
        if self.captions is not None and key in self.captions:
            return self.captions[key]
        return f"SAD {metrics.sad(arr, self.alpha, self.trimap):.3f}"

    def tiles(self, model_name: str) -> list[tuple[str, np.ndarray, str]]:
        """(column label, array, caption) per column, in gallery order; checks the shapes."""
        h, w = self.alpha.shape
        named = {"image": self.image, "B'": self.background, "S": self.segmentation, "true α": self.alpha,
                 model_name: self.predicted, **self.baselines}
        if self.composite is not None:
            named["composite"] = self.composite
        for label, arr in named.items():
            if np.shape(arr)[:2] != (h, w):
                raise ValueError(f"gallery row {self.name!r}: {label} is {np.shape(arr)} but alpha is {(h, w)}")
        out = [(label, np.asarray(arr, np.float32), "") for label, arr in named.items()]
        keys = ["predicted", *self.baselines]
        for i, key in enumerate(keys, start=4):
            out[i] = (out[i][0], out[i][1], self._caption(key, out[i][1]))
        error = np.abs(np.asarray(self.predicted, np.float32) - np.asarray(self.alpha, np.float32))
        heat = (f"|{model_name} − true α|", error, f"max {float(error.max()):.2f}")
        return out[:4 + len(keys)] + [heat] + out[4 + len(keys):]


#: Column labels of the baseline mattes.
BASELINE_LABELS = {"segmentation": "α = S", "background_difference": "bg-difference α",
                   "careful": "careful classical α"}


def gallery_rows(model: MattingModel, dataset: Dataset, indices: Iterable[int],
                 baselines: Iterable[str] = ()) -> list[GalleryRow]:
    """Gallery rows for samples ``indices`` (those that exist) of a supervised dataset: the model's alpha
    (:meth:`MattingModel.predict`, where the model is) and each baseline matte's."""
    rows = []
    for index in [i for i in indices if i < len(dataset)]:
        sample = dataset[index]
        alpha, _ = model.predict({k: v.unsqueeze(0) for k, v in sample.items() if hasattr(v, "unsqueeze")})
        trimap = numpy_image(sample["trimap"]) if "trimap" in sample else None
        rows.append(GalleryRow(
            name=f"#{index}", image=numpy_image(sample["image"]), background=numpy_image(sample["background"]),
            segmentation=numpy_image(sample["segmentation"]), alpha=numpy_image(sample["alpha"]),
            predicted=numpy_image(alpha[0]), trimap=trimap,
            baselines={BASELINE_LABELS.get(k, k): baseline_alpha(sample, k).astype(np.float32) for k in baselines}))
    return rows


def _tile_inches(rows: Sequence[GalleryRow], dpi: int) -> float:
    side = max(max(r.alpha.shape) for r in rows)
    return max(1.6, side / dpi)


def write_gallery(path: PathLike, rows: Sequence[GalleryRow], *, title: str = "", model_name: str = "predicted α",
                  dpi: int = 100) -> Path:
    """Write the gallery PNG of ``rows`` to ``path`` (atomically, matplotlib's Agg canvas); returns the path.
    All rows must have the same baselines (same names, same order)."""
    if not rows:
        raise ValueError("a gallery needs at least one row")
    names = [list(r.baselines) for r in rows]
    if any(n != names[0] for n in names):
        raise ValueError(f"gallery rows have different baselines: {names}")
    grid = [r.tiles(model_name) for r in rows]
    inches = _tile_inches(rows, dpi)
    n_rows, n_cols = len(grid), len(grid[0])
    fig = new_figure(n_cols * inches + 0.4, n_rows * (inches + 0.35) + 0.6, dpi)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (row, tiles) in enumerate(zip(rows, grid)):
        for c, (label, arr, caption) in enumerate(tiles):
            ax = axes[r][c]
            heat = label.startswith("|")
            ax.imshow(arr, cmap="inferno" if heat else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=9)
            ax.set_xlabel(caption, fontsize=8)
        axes[r][0].set_ylabel(row.name, fontsize=8)
    return save_png(fig, path, title)
