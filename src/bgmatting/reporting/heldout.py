"""Learning scored on the held-out photo set (``bgmatting.data.synthetic.photo_set``) at every scale.

Per scale: the model's and both baselines' DIM metrics (SAD, MSE, Grad, Conn over the trimap's unknown band,
units of ``bgmatting.evaluation``), the ratio best-baseline SAD / model SAD, and whether the learning target
holds there: ratio >= 2 and the model's MSE and Grad below both baselines'. Baselines: alpha = S, and the
background-difference matte of I and B' (``bgmatting.evaluation.BASELINES``); they do not depend on the
model, so each (set, scale, subset) is scored once per process.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from bgmatting.data.synthetic.photo_set import heldout_dataset, heldout_sizes
from bgmatting.evaluation import (BASELINES, baseline_alpha, baseline_rows, evaluate_model, metric_headers,
                                  predict_alpha_and_foreground, summarize)

from .gallery import GalleryRow, write_gallery

PathLike = str | os.PathLike
TARGET_RATIO = 2.0
SCORED = ("sad", "mse", "grad", "conn")
BASELINE_LABELS = {"segmentation": "α = S", "background_difference": "bg-difference α"}


@dataclass(frozen=True)
class SetOptions:
    """Which held-out set: scenes, generation seed, B' noise probability, cache root, first ``limit`` images."""

    n_scenes: int = 32
    seed: int = 0
    noise_p: float = 0.0
    cache_dir: str | None = None
    limit: int | None = None

    def dataset(self, size: int):
        ds = heldout_dataset(size, n_scenes=self.n_scenes, seed=self.seed, noise_p=self.noise_p,
                             cache_dir=self.cache_dir)
        return ds if self.limit is None else Subset(ds, range(min(self.limit, len(ds))))


@dataclass
class ScaleScore:
    """Scores at one scale: ``model`` and each baseline's summary (``bgmatting.evaluation.summarize``)."""

    size: int
    model: dict[str, Any]
    baselines: dict[str, dict[str, Any]]

    @property
    def images(self) -> int:
        return int(self.model["images"])

    @property
    def best_baseline(self) -> str:
        return min(self.baselines, key=lambda k: self.baselines[k]["sad"])

    @property
    def ratio(self) -> float:
        """Best baseline's SAD / the model's SAD (> 1: the model is better; inf for a perfect model)."""
        model = self.model["sad"]
        best = self.baselines[self.best_baseline]["sad"]
        return math.inf if model == 0 else best / model

    @property
    def target_met(self) -> bool:
        return self.ratio >= TARGET_RATIO and all(
            self.model[k] < b[k] for b in self.baselines.values() for k in ("mse", "grad"))

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": self.images, "model": dict(self.model),
                "baselines": {k: dict(v) for k, v in self.baselines.items()}, "best_baseline": self.best_baseline,
                "ratio": self.ratio, "target_met": self.target_met}


@lru_cache(maxsize=64)
def _baseline_summary(options: SetOptions, size: int, kind: str) -> dict[str, Any]:
    return summarize(baseline_rows(options.dataset(size), kind))


def score_generator(generator: torch.nn.Module, *, sizes: Sequence[int] | None = None,
                    options: SetOptions = SetOptions(), device: torch.device | str = "cpu",
                    precision: str = "fp32") -> dict[int, ScaleScore]:
    """Score ``generator`` (a ``bgmatting.models.Generator``) and the baselines on the held-out set at every
    size of ``sizes`` (default: ``heldout_sizes()``); returns {size: ScaleScore}."""
    scores = {}
    for size in sizes or heldout_sizes():
        rows = evaluate_model(generator, options.dataset(size), device=device, precision=precision, progress=False)
        scores[int(size)] = ScaleScore(int(size), summarize(rows),
                                       {kind: _baseline_summary(options, int(size), kind) for kind in BASELINES})
    return scores


def score_checkpoint(checkpoint: PathLike, **kwargs) -> dict[int, ScaleScore]:
    """``score_generator`` of the generator in a checkpoint (ours or the original release format)."""
    from bgmatting.models import load_generator

    return score_generator(load_generator(checkpoint), **kwargs)


def _cells(summary: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    return [f"{summary[k] / 1e-3:.2f}" if k == "mse" else f"{summary[k]:.3f}" for k in keys]


def heldout_table(scores: Mapping[int, ScaleScore]) -> str:
    """Markdown table: one line per scale with the model's SAD/MSE/Grad/Conn, each baseline's SAD/MSE/Grad,
    the ratio best-baseline SAD / model SAD and whether the target holds (units as ``metric_headers()``)."""
    kinds = list(next(iter(scores.values())).baselines) if scores else list(BASELINES)
    units = metric_headers()
    head = ["size", "images", *(f"model {units[k]}" for k in SCORED)]
    head += [f"{kind} {units[k]}" for kind in kinds for k in ("sad", "mse", "grad")]
    head += ["best baseline SAD / model SAD", f"target (≥{TARGET_RATIO:g}x, MSE and Grad below both)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for size, s in sorted(scores.items()):
        cells = [f"{size} px", str(s.images), *_cells(s.model, SCORED)]
        cells += [c for kind in kinds for c in _cells(s.baselines[kind], ("sad", "mse", "grad"))]
        cells += [f"{s.ratio:.2f}x ({s.best_baseline})", "met" if s.target_met else "not met"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _numpy(t: torch.Tensor):
    """C x H x W tensor -> H x W (one channel) or H x W x C float32 numpy."""
    a = t.detach().float().cpu().numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def gallery_rows(generator: torch.nn.Module, dataset, indices: Sequence[int],
                 precision: str = "fp32") -> list[GalleryRow]:
    """Gallery rows for samples ``indices`` of a supervised dataset: the generator's alpha (on its own
    device) and every baseline's. The generator is put in eval mode and restored afterwards."""
    was_training = generator.training
    generator.eval()
    rows = []
    try:
        for i in indices:
            sample = dataset[i]
            batch = {k: v.unsqueeze(0) for k, v in sample.items()}
            alpha, _ = predict_alpha_and_foreground(generator, batch, precision)
            rows.append(GalleryRow(
                name=f"#{i}", image=_numpy(sample["image"]), background=_numpy(sample["background"]),
                segmentation=_numpy(sample["segmentation"]), alpha=_numpy(sample["alpha"]),
                predicted=_numpy(alpha[0]), trimap=sample["trimap"].numpy()[0],
                baselines={BASELINE_LABELS.get(kind, kind): baseline_alpha(sample, kind).astype("float32")
                           for kind in BASELINES}))
    finally:
        generator.train(was_training)
    return rows


def write_heldout_gallery(generator: torch.nn.Module, path: PathLike, *, size: int = 96,
                          indices: Sequence[int] = (0, 1, 2, 3, 4, 5), options: SetOptions = SetOptions(),
                          precision: str = "fp32", title: str | None = None) -> Path:
    """The gallery PNG of held-out images ``indices`` at ``size`` px (see ``bgmatting.reporting.gallery``)."""
    dataset = options.dataset(size)
    indices = [i for i in indices if i < len(dataset)]
    rows = gallery_rows(generator, dataset, indices, precision)
    return write_gallery(path, rows, title=title or f"held-out photo set, {size} px", model_name="model α")
