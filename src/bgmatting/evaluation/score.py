"""Scoring: per-image metric rows for a matting model, a baseline matte or a folder of predictions.

Rows are plain dicts, one per image: ``name``, ``height``, ``width``, ``unknown_pixels`` and the metrics
``sad``, ``mse``, ``grad``, ``conn`` (and ``fg_mse``, ``fg_sad`` when a foreground is predicted and known).
Metrics are computed on full-resolution numpy arrays with the sample's trimap (unknown == 128), exactly
as the Deep Image Matting MATLAB code does (a trimap without unknown pixels is an error, never a perfect
score); units are those of :mod:`bgmatting.metrics` (SAD, Grad, Conn, fg SAD in thousands; MSE and fg MSE
raw). Columns and summaries: :mod:`bgmatting.evaluation.summary`. A model whose output is not finite is a
:class:`~bgmatting.models.NonFiniteOutputError` naming the sample.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bgmatting import metrics
from bgmatting.io import DataError, read_alpha, read_trimap
from bgmatting.evaluation.reports import save_error_map, save_prediction
from bgmatting.evaluation.summary import Row
from bgmatting.evaluation.testsets import has_true_foreground, images_by_stem, sample_names
from bgmatting.models import MattingModel, NonFiniteOutputError
from bgmatting.preprocess.segment import background_difference_matte

PathLike = str | os.PathLike

BASELINES = ("segmentation", "background_difference")


# ----------------------------------------------------------------------------------------------- per image
def image_metrics(pred_alpha: np.ndarray, gt_alpha: np.ndarray, trimap: np.ndarray | None = None,
                  pred_fg: np.ndarray | None = None, gt_fg: np.ndarray | None = None) -> Row:
    """All metrics of one image. Mattes H x W float [0, 1]; trimap uint8 H x W (0 / 128 / 255) or None (all
    pixels); foregrounds H x W x 3 float [0, 1] (fg metrics only when both are given). Raises ValueError on bad
    input, also for a trimap without unknown pixels (its SAD would be 0, a perfect score for nothing scored)."""
    unknown = int(gt_alpha.size if trimap is None else np.count_nonzero(np.asarray(trimap) == 128))
    if unknown == 0:
        raise ValueError("the trimap has no unknown (128) pixels, so a trimap-based score would be empty (SAD 0); "
                         "check the trimap, or evaluate without trimaps")
    row: Row = {
        "height": int(gt_alpha.shape[0]),
        "width": int(gt_alpha.shape[1]),
        "unknown_pixels": unknown,
        "sad": metrics.sad(pred_alpha, gt_alpha, trimap),
        "mse": metrics.mse(pred_alpha, gt_alpha, trimap),
        "grad": metrics.grad(pred_alpha, gt_alpha, trimap),
        "conn": metrics.conn(pred_alpha, gt_alpha, trimap),
    }
    if pred_fg is not None and gt_fg is not None:
        row["fg_mse"] = metrics.foreground_mse(pred_fg, gt_fg, gt_alpha, trimap)
        row["fg_sad"] = metrics.foreground_sad(pred_fg, gt_fg, gt_alpha, trimap)
    return row


def _scored(name: str, where: str, **arrays: Any) -> Row:
    try:
        row = image_metrics(**arrays)
    except ValueError as error:
        raise DataError(f"{where}: {error}") from None
    return {"name": name, **row}


# ----------------------------------------------------------------------------------------------- a model
def numpy_image(t: torch.Tensor) -> np.ndarray:
    """C x H x W tensor -> H x W (C == 1) or H x W x C numpy."""
    a = t.detach().cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.ascontiguousarray(a.transpose(1, 2, 0))


def _sample_trimap(batch: Mapping[str, Any], b: int) -> np.ndarray | None:
    if "trimap" not in batch:
        return None
    t = batch["trimap"][b].detach().cpu().numpy()
    return (t[0] if t.ndim == 3 else t).astype(np.uint8, copy=False)


def _require_finite_output(alpha: torch.Tensor, foreground: torch.Tensor, names: list[str], first: int) -> None:
    """NonFiniteOutputError naming the first sample whose predicted alpha or F holds NaN or infinity: a model
    problem (weights, precision), not the sample's."""
    bad = ~(torch.isfinite(alpha).flatten(1).all(dim=1) & torch.isfinite(foreground).flatten(1).all(dim=1))
    if bool(bad.any()):
        b = int(bad.nonzero()[0])
        raise NonFiniteOutputError(f"sample {first + b} ({names[b]}): the model's output holds NaN or infinite "
                                   "values (its weights or the precision, not the sample's data)")


def score_model(model: MattingModel, dataset: Dataset, *, batch_size: int = 1, save_dir: PathLike | None = None,
                save_error_maps: bool = False, progress: bool = False, num_workers: int = 0) -> list[Row]:
    """Score ``model`` on every sample of a supervised ``dataset`` at the samples' full resolution.

    The model runs where it is (its device and precision) through :meth:`MattingModel.predict` (eval mode,
    restored after). Samples need image, background, segmentation, motion and alpha (C x H x W in [0, 1]);
    ``trimap`` (uint8) restricts the metrics to its unknown region (all pixels without it); ``foreground``
    adds fg metrics (not for manifest rows without a foreground file, whose F is a stand-in).
    ``batch_size > 1`` needs samples of equal size. ``save_dir``: writes ``alpha/<name>.png`` and
    ``foreground/<name>.png`` (and ``error/<name>.png`` heat maps of |alpha - alpha*| with ``save_error_maps``).
    Returns one row per sample (see the module docstring).
    """
    names = sample_names(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    rows: list[Row] = []
    with tqdm(total=len(dataset), desc="evaluate", unit="img", disable=not progress) as bar:
        for batch in loader:
            alpha, foreground = model.predict(batch)
            _require_finite_output(alpha, foreground, names[len(rows):len(rows) + alpha.shape[0]], len(rows))
            for b in range(alpha.shape[0]):
                index, name = len(rows), names[len(rows)]
                pred_alpha, gt_alpha = numpy_image(alpha[b]).astype(np.float64), numpy_image(batch["alpha"][b])
                pred_fg = numpy_image(foreground[b])
                known_fg = "foreground" in batch and has_true_foreground(dataset, index)
                gt_fg = numpy_image(batch["foreground"][b]) if known_fg else None
                trimap = _sample_trimap(batch, b)
                rows.append(_scored(name, f"sample {index} ({name})", pred_alpha=pred_alpha, gt_alpha=gt_alpha,
                                    trimap=trimap, pred_fg=pred_fg, gt_fg=gt_fg))
                if save_dir is not None:
                    save_prediction(save_dir, name, pred_alpha, pred_fg, gt_alpha if save_error_maps else None, trimap)
                bar.update(1)
    return rows


# ----------------------------------------------------------------------------------------------- baselines
def baseline_alpha(sample: Mapping[str, torch.Tensor], kind: str) -> np.ndarray:
    """A baseline matte (H x W float64 [0, 1]) for one (uncollated) sample.

    ``segmentation``: alpha = the soft segmentation S the network receives. ``background_difference``: alpha =
    :func:`bgmatting.preprocess.segment.background_difference_matte` of the image and the captured background.
    """
    if kind == "segmentation":
        return numpy_image(sample["segmentation"]).astype(np.float64)
    if kind == "background_difference":
        image, background = numpy_image(sample["image"]), numpy_image(sample["background"])
        return background_difference_matte(image, background).astype(np.float64)
    raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")


def score_baseline(dataset: Dataset, kind: str, *, progress: bool = False) -> list[Row]:
    """Score a baseline matte (see :func:`baseline_alpha`) on every sample, like :func:`score_model`."""
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
    names = sample_names(dataset)
    rows = []
    for index in tqdm(range(len(dataset)), desc=f"baseline {kind}", unit="img", disable=not progress):
        sample = dataset[index]
        trimap = sample["trimap"].numpy()[0] if "trimap" in sample else None
        rows.append(_scored(names[index], f"sample {index} ({names[index]})", pred_alpha=baseline_alpha(sample, kind),
                            gt_alpha=numpy_image(sample["alpha"]), trimap=trimap))
    return rows


# ----------------------------------------------------------------------------------------------- folders
def _matched_files(pred_dir: PathLike, gt_dir: PathLike, trimap_dir: PathLike | None):
    """(predictions, ground truths, trimaps or None) by stem; DataError naming any file without its partner."""
    preds = images_by_stem(Path(pred_dir), "prediction")
    gts = images_by_stem(Path(gt_dir), "ground-truth")
    trimaps = images_by_stem(Path(trimap_dir), "trimap") if trimap_dir is not None else None
    for stem, path in preds.items():
        if stem not in gts:
            raise DataError(f"{path}: no ground truth named {stem!r} in {gt_dir}")
        if trimaps is not None and stem not in trimaps:
            raise DataError(f"{gts[stem]}: no trimap named {stem!r} in {trimap_dir}")
    unpredicted = sorted(set(gts) - set(preds))
    if unpredicted:
        shown = ", ".join(gts[s].name for s in unpredicted[:5]) + (" ..." if len(unpredicted) > 5 else "")
        raise DataError(f"{pred_dir}: no prediction for {len(unpredicted)} ground truth(s) in {gt_dir}: {shown}")
    return preds, gts, trimaps


def score_folders(pred_dir: PathLike, gt_dir: PathLike, trimap_dir: PathLike | None = None, *,
                  progress: bool = False, error_map_dir: PathLike | None = None) -> list[Row]:
    """Score predicted alpha files against ground truths, matched by file stem (no model involved).

    Every prediction needs a ground truth (and a trimap when ``trimap_dir`` is given) and every ground truth a
    prediction; sizes must agree. Without trimaps every pixel counts. Each problem is a DataError naming
    the file. ``error_map_dir``: writes |alpha - alpha*| heat maps. Returns one row per image, sorted by name.
    """
    preds, gts, trimaps = _matched_files(pred_dir, gt_dir, trimap_dir)
    rows = []
    for stem in tqdm(sorted(preds), desc="evaluate", unit="img", disable=not progress):
        pred = read_alpha(preds[stem])
        gt = read_alpha(gts[stem])
        if pred.shape != gt.shape:
            raise DataError(f"{preds[stem]}: prediction is {pred.shape[1]}x{pred.shape[0]} but ground truth "
                            f"{gts[stem]} is {gt.shape[1]}x{gt.shape[0]}")
        trimap = None
        if trimaps is not None:
            trimap = read_trimap(trimaps[stem])
            if trimap.shape != gt.shape:
                raise DataError(f"{trimaps[stem]}: trimap is {trimap.shape[1]}x{trimap.shape[0]} but ground truth "
                                f"{gts[stem]} is {gt.shape[1]}x{gt.shape[0]}")
        rows.append(_scored(stem, str(preds[stem]), pred_alpha=pred, gt_alpha=gt, trimap=trimap))
        if error_map_dir is not None:
            save_error_map(Path(error_map_dir) / f"{stem}.png", pred, gt, trimap)
    return rows
