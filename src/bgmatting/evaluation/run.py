"""One evaluation, start to end: score a model (or a folder of predictions) and the comparison rows on a test
set, summarise, and write the reports.

:func:`evaluate` is the one sequence behind training's per-epoch validation, training's final evaluation and
``python -m bgmatting.evaluate``; :func:`evaluate_predictions` is its model-free counterpart. A capture set is
scored end to end instead (:mod:`bgmatting.evaluation.captures`), with the same reports.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from bgmatting.evaluation.captures import is_capture_set, score_captures
from bgmatting.evaluation.gallery import GalleryRow
from bgmatting.evaluation.reports import write_reports
from bgmatting.evaluation.score import score_baseline, score_folders, score_model
from bgmatting.evaluation.summary import Row, summaries_of
from bgmatting.evaluation.testsets import first_items
from bgmatting.models import MattingModel

PathLike = str | os.PathLike


@dataclass
class Evaluation:
    """What an evaluation produced.

    ``rows``: the evaluated method's per-image rows; ``baselines``: name -> rows of each comparison (baseline
    mattes and reference models); ``summaries``: method -> summary in table order (``method`` first, then
    ``"baseline: <name>"``); ``reports``: the files written (empty without an output folder); ``gallery``: rows
    for a gallery PNG, where the scoring made them (capture sets).
    """

    rows: list[Row]
    baselines: dict[str, list[Row]]
    summaries: dict[str, dict[str, Any]]
    reports: dict[str, Path] = field(default_factory=dict)
    gallery: list[GalleryRow] = field(default_factory=list)


def evaluate(model: MattingModel, dataset: Dataset, *, baselines: Iterable[str] = (),
             references: Mapping[str, MattingModel] | None = None, limit: int | None = None, batch_size: int = 1,
             num_workers: int = 0, output_dir: PathLike | None = None, save_predictions: bool = False,
             save_error_maps: bool = False, progress: bool = False, method: str = "model",
             title: str = "Evaluation", mse_unit: float = 1e-3, meta: Mapping[str, Any] | None = None,
             gallery: int = 0) -> Evaluation:
    """Score ``model`` on (the first ``limit`` samples of) ``dataset``, beside baseline mattes and reference models.

    ``model`` and every reference run where they are (device, precision) in eval mode, ``batch_size`` samples at
    a time (> 1 needs samples of one size). ``baselines``: names of :data:`bgmatting.evaluation.BASELINES`
    (alpha = S; the background-difference matte). ``references``: name -> another model scored the same way,
    e.g. the real stage's teacher. With ``output_dir`` the reports (:func:`write_reports`) go there, and
    ``save_predictions`` / ``save_error_maps`` write the model's alphas, foregrounds and error maps under
    ``output_dir/predictions``.

    A capture set (:func:`~bgmatting.evaluation.captures.is_capture_set`) is scored end to end through its
    inference pipeline instead (its own baselines, :data:`~bgmatting.evaluation.captures.CAPTURE_BASELINES`,
    whenever ``baselines`` is not empty; ``batch_size``, ``num_workers`` and ``save_*`` do not apply), and the
    result holds gallery rows of its first ``gallery`` units.
    """
    subset = first_items(dataset, limit)
    if is_capture_set(subset):
        scores = score_captures(model, subset, baselines=bool(tuple(baselines)), references=references,
                                gallery=gallery, progress=progress)
        result = _report(scores.rows, scores.baselines, output_dir, method=method, title=title, mse_unit=mse_unit,
                         meta=meta)
        result.gallery = scores.gallery
        return result
    save_dir = None
    if output_dir is not None and (save_predictions or save_error_maps):
        save_dir = Path(output_dir) / "predictions"
    rows = score_model(model, subset, batch_size=batch_size, save_dir=save_dir, save_error_maps=save_error_maps,
                       progress=progress, num_workers=num_workers)
    others = {kind: score_baseline(subset, kind, progress=progress) for kind in baselines}
    for name, reference in (references or {}).items():
        others[name] = score_model(reference, subset, batch_size=batch_size, progress=progress, num_workers=num_workers)
    return _report(rows, others, output_dir, method=method, title=title, mse_unit=mse_unit, meta=meta)


def evaluate_predictions(pred_dir: PathLike, gt_dir: PathLike, trimap_dir: PathLike | None = None, *,
                         output_dir: PathLike | None = None, save_error_maps: bool = False, progress: bool = False,
                         method: str = "predictions", title: str = "Evaluation", mse_unit: float = 1e-3,
                         meta: Mapping[str, Any] | None = None) -> Evaluation:
    """Score alpha files of ``pred_dir`` against ``gt_dir`` (and ``trimap_dir``), matched by stem
    (:func:`bgmatting.evaluation.score_folders`); reports and, with ``save_error_maps``, error maps under
    ``output_dir/predictions/error`` as :func:`evaluate` writes them."""
    error_dir = Path(output_dir) / "predictions" / "error" if output_dir is not None and save_error_maps else None
    rows = score_folders(pred_dir, gt_dir, trimap_dir, progress=progress, error_map_dir=error_dir)
    return _report(rows, {}, output_dir, method=method, title=title, mse_unit=mse_unit, meta=meta)


def _report(rows: list[Row], baselines: dict[str, list[Row]], output_dir: PathLike | None, *, method: str,
            title: str, mse_unit: float, meta: Mapping[str, Any] | None) -> Evaluation:
    summaries = summaries_of(rows, baselines, method)
    reports = {}
    if output_dir is not None:
        reports = write_reports(rows, output_dir, baselines=baselines, method=method, mse_unit=mse_unit,
                                title=title, meta=meta)
    return Evaluation(rows, baselines, summaries, reports)

