"""Evaluation: score a matting model (or a folder of predictions) over a test set beside baselines, summarise,
and write reports.

* :mod:`~bgmatting.evaluation.run`: :func:`evaluate` (a model; training's validation and final evaluation and
  ``python -m bgmatting.evaluate`` all call it) and :func:`evaluate_predictions` (a prediction folder);
* :mod:`~bgmatting.evaluation.score`: per-image metric rows for a model, a baseline matte or prediction files;
* :mod:`~bgmatting.evaluation.summary`: metric columns, units and means over rows;
* :mod:`~bgmatting.evaluation.testsets`: test sets (manifest, folder, synthetic), sample names;
* :mod:`~bgmatting.evaluation.reports`: CSV, JSON, Markdown, PNG plot, predictions and error maps;
* :mod:`~bgmatting.evaluation.suite`: one model on several named sets (e.g. every held-out scale): the ratio to the
  best baseline, the learning target, per-epoch validation over the sets;
* :mod:`~bgmatting.evaluation.gallery` and :mod:`~bgmatting.evaluation.curves`: the gallery PNG (inputs, truth,
  prediction, baselines, error) and the learning-curve PNG of a run's validation;
* :mod:`~bgmatting.evaluation.figures`: off-screen matplotlib figures saved atomically.
"""
from __future__ import annotations

from bgmatting.evaluation.reports import (
    error_heatmap,
    format_summary,
    markdown_table,
    metric_headers,
    plot_rows,
    read_rows_csv,
    save_prediction,
    write_markdown,
    write_reports,
    write_rows_csv,
    write_summary_json,
)
from bgmatting.evaluation.curves import read_metrics, validation_panels, write_learning_curves
from bgmatting.evaluation.gallery import GalleryRow, gallery_rows, write_gallery
from bgmatting.evaluation.run import Evaluation, evaluate, evaluate_predictions
from bgmatting.evaluation.score import BASELINES, baseline_alpha, image_metrics, score_baseline, score_folders, score_model
from bgmatting.evaluation.suite import TARGET_RATIO, SetScore, SuiteValidation, evaluate_suite, suite_table
from bgmatting.evaluation.summary import METRIC_UNITS, METRICS, Row, summaries_of, summarize
from bgmatting.evaluation.testsets import first_items, manifest_from_folder, open_test_set, sample_names

__all__ = [
    "BASELINES",
    "TARGET_RATIO",
    "GalleryRow",
    "SetScore",
    "SuiteValidation",
    "evaluate_suite",
    "gallery_rows",
    "read_metrics",
    "suite_table",
    "validation_panels",
    "write_gallery",
    "write_learning_curves",
    "METRICS",
    "METRIC_UNITS",
    "Evaluation",
    "Row",
    "baseline_alpha",
    "error_heatmap",
    "evaluate",
    "evaluate_predictions",
    "first_items",
    "format_summary",
    "image_metrics",
    "manifest_from_folder",
    "markdown_table",
    "metric_headers",
    "open_test_set",
    "plot_rows",
    "read_rows_csv",
    "sample_names",
    "save_prediction",
    "score_baseline",
    "score_folders",
    "score_model",
    "summaries_of",
    "summarize",
    "write_markdown",
    "write_reports",
    "write_rows_csv",
    "write_summary_json",
]
