"""One evaluation, start to end: score a model (or a folder of predictions) and the comparison rows on a test
set, summarise, and write the reports.

:func:`evaluate` is the one sequence behind training's per-epoch validation, training's final evaluation and
``python -m bgmatting.evaluate``; :func:`evaluate_predictions` is its model-free counterpart.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

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
    ``"baseline: <name>"``); ``reports``: the files written (empty without an output folder).
    """

    rows: list[Row]
    baselines: dict[str, list[Row]]
    summaries: dict[str, dict[str, Any]]
    reports: dict[str, Path] = field(default_factory=dict)


def evaluate(model: MattingModel, dataset: Dataset, *, baselines: Iterable[str] = (),
             references: Mapping[str, MattingModel] | None = None, limit: int | None = None, batch_size: int = 1,
             num_workers: int = 0, output_dir: PathLike | None = None, save_predictions: bool = False,
             save_error_maps: bool = False, progress: bool = False, method: str = "model",
             title: str = "Evaluation", mse_unit: float = 1e-3, meta: Mapping[str, Any] | None = None) -> Evaluation:
    """Score ``model`` on (the first ``limit`` samples of) ``dataset``, beside baseline mattes and reference models.

    ``model`` and every reference run where they are (device, precision) in eval mode, ``batch_size`` samples at
    a time (> 1 needs samples of one size). ``baselines``: names of :data:`bgmatting.evaluation.BASELINES`
    (alpha = S; the background-difference matte). ``references``: name -> another model scored the same way,
    e.g. the real stage's teacher. With ``output_dir`` the reports (:func:`write_reports`) go there, and
    ``save_predictions`` / ``save_error_maps`` write the model's alphas, foregrounds and error maps under
    ``output_dir/predictions``.
    """
    subset = first_items(dataset, limit)
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

