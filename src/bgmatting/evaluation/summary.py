"""Per-image rows and their summaries: the metric columns, their units, and means over rows.

A row is a plain dict for one image: ``name``, ``height``, ``width``, ``unknown_pixels`` and the metrics of
:data:`METRICS` (``fg_mse``/``fg_sad`` only when a foreground was predicted and is known; the whole-frame metrics
and ``dtssd`` only for capture sets, :mod:`bgmatting.evaluation.captures`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Row = dict[str, Any]

#: Metric columns in report order, with their unit as stored in rows.
METRIC_UNITS: dict[str, str] = {
    "sad": "sum |a - a*| over unknown pixels / 1000",
    "mse": "mean (a - a*)^2 over unknown pixels (raw)",
    "grad": "sum (|grad a| - |grad a*|)^2 over unknown pixels / 1000 (Gaussian derivative, sigma 1.4)",
    "conn": "sum |phi(a) - phi(a*)| over unknown pixels / 1000 (step 0.1, theta 0.15)",
    "fg_mse": "mean (F - F*)^2 over channels and pixels with a* > 0 (and unknown) (raw)",
    "fg_sad": "sum |F - F*| over channels and pixels with a* > 0 (and unknown) / 1000",
    "sad_frame": "sum |a - a*| over every pixel of the frame / 1000",
    "mse_frame": "mean (a - a*)^2 over every pixel of the frame (raw)",
    "fg_mse_frame": "mean (F - F*)^2 over channels and every pixel with a* > 0 (raw)",
    "false_fg": "share of the pixels with a* < 0.1 where a > 0.5 (false foreground: ghosts, shadows)",
    "dtssd": "temporal gradient error dtSSD x 100 over every pixel (clips; each frame row holds its clip's value)",
}
METRICS = tuple(METRIC_UNITS)


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    """Means of every metric over the rows (NaN values, e.g. MSE of an image without unknown pixels,
    are left out), plus ``images`` (row count). Metrics absent from all rows are absent here."""
    summary: dict[str, Any] = {"images": len(rows)}
    for key in METRICS:
        values = [float(r[key]) for r in rows if key in r and r[key] is not None]
        finite = [v for v in values if math.isfinite(v)]
        if values:
            summary[key] = float(np.mean(finite)) if finite else math.nan
    return summary


def summaries_of(rows: Sequence[Row], baselines: Mapping[str, Sequence[Row]] | None = None,
                 method: str = "model") -> dict[str, dict[str, Any]]:
    """``{method: summary, "baseline: <name>": summary, ...}``: the table of one evaluation, in order."""
    summaries = {method: summarize(rows)}
    summaries.update({f"baseline: {name}": summarize(r) for name, r in (baselines or {}).items()})
    return summaries
