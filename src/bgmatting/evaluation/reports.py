"""Evaluation outputs: per-image CSV, summary JSON and Markdown, a PNG plot, predictions and error maps.

Every file is written atomically through :mod:`bgmatting.io`. Reports print MSE divided by ``mse_unit``
(default 1e-3); SAD, Grad, Conn and fg SAD are in thousands as stored in rows
(:mod:`bgmatting.evaluation.summary`).
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps

from bgmatting.io import write_alpha, write_image, write_json, write_text
from bgmatting.evaluation.figures import new_figure, save_png
from bgmatting.evaluation.summary import METRIC_UNITS, METRICS, Row, summaries_of

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------------------------- images
def error_heatmap(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
    """|pred - gt| as an RGB heat map (float H x W x 3, 'inferno'); known trimap regions are dimmed."""
    error = np.abs(np.asarray(pred, np.float64) - np.asarray(gt, np.float64))
    rgb = colormaps["inferno"](np.clip(error, 0.0, 1.0))[..., :3]
    if trimap is not None:
        rgb[np.asarray(trimap) != 128] *= 0.5
    return rgb.astype(np.float32)


def save_error_map(path: PathLike, pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> None:
    """Write :func:`error_heatmap` of an H x W prediction and ground truth as an 8-bit PNG."""
    write_image(path, error_heatmap(pred, gt, trimap))


_UNSAFE_CHARACTERS = re.compile(r"[^\w.-]+")


def safe_file_name(name: str) -> str:
    """``name`` as a plain file name that stays inside its folder: every run of characters other than letters,
    digits, ``.``, ``_`` and ``-`` (path separators included) becomes ``_``, and leading dots are dropped
    (``../../x`` -> ``_.._x``; no hidden files, no ``..``)."""
    return _UNSAFE_CHARACTERS.sub("_", str(name)).lstrip(".") or "unnamed"


def save_prediction(save_dir: PathLike, name: str, alpha: np.ndarray, foreground: np.ndarray | None = None,
                    gt_alpha: np.ndarray | None = None, trimap: np.ndarray | None = None) -> None:
    """Write ``alpha/<name>.png`` (8-bit), ``foreground/<name>.png`` and, with ``gt_alpha``, ``error/<name>.png``
    (``name`` made a safe file name first, :func:`safe_file_name`: nothing is written outside ``save_dir``)."""
    save_dir, name = Path(save_dir), safe_file_name(name)
    write_alpha(save_dir / "alpha" / f"{name}.png", alpha)
    if foreground is not None:
        write_image(save_dir / "foreground" / f"{name}.png", foreground)
    if gt_alpha is not None:
        save_error_map(save_dir / "error" / f"{name}.png", alpha, gt_alpha, trimap)


# ----------------------------------------------------------------------------------------------- tables
def write_rows_csv(rows: Sequence[Row], path: PathLike) -> Path:
    """Per-image CSV (one row per image, columns in report order; NaN written as 'nan')."""
    columns = list(dict.fromkeys(["name", "height", "width", "unknown_pixels", *METRICS, *(k for r in rows for k in r)]))
    columns = [c for c in columns if any(c in r for r in rows)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in row.items()})
    return write_text(path, buf.getvalue())


def read_rows_csv(path: PathLike) -> list[Row]:
    """Read back a per-image CSV (numbers as float, except name)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (v if k == "name" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]


def write_summary_json(summaries: Mapping[str, Mapping[str, Any]], path: PathLike,
                       meta: Mapping[str, Any] | None = None) -> Path:
    """JSON with ``summaries`` (method -> summary), the metric units, and free-form ``meta``; NaN -> null."""
    payload = {"summaries": summaries, "units": METRIC_UNITS, "meta": dict(meta or {})}
    return write_json(path, payload)


def metric_headers(mse_unit: float = 1e-3) -> dict[str, str]:
    """Column headers with units: SAD, Grad, Conn, fg SAD in thousands; MSE values divided by ``mse_unit``."""
    exponent = round(math.log10(mse_unit))
    mse_label = f"×10^{exponent}" if math.isclose(10.0**exponent, mse_unit) else f"×{mse_unit:g}"
    return {"sad": "SAD (×10^3)", "mse": f"MSE ({mse_label})", "grad": "Grad (×10^3)", "conn": "Conn (×10^3)",
            "fg_mse": f"fg MSE ({mse_label})", "fg_sad": "fg SAD (×10^3)", "sad_frame": "frame SAD (×10^3)",
            "mse_frame": f"frame MSE ({mse_label})", "fg_mse_frame": f"frame fg MSE ({mse_label})",
            "false_fg": "false fg (share)", "dtssd": "dtSSD (×10^2)"}


#: Metrics stored as raw means, printed divided by the report's ``mse_unit``.
MSE_METRICS = ("mse", "fg_mse", "mse_frame", "fg_mse_frame")


def _display(key: str, value: Any, mse_unit: float) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    v = float(value) / mse_unit if key in MSE_METRICS else float(value)
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def markdown_table(summaries: Mapping[str, Mapping[str, Any]], mse_unit: float = 1e-3) -> str:
    """A Markdown table, one line per method (``summaries``: method -> summary)."""
    keys = [k for k in METRICS if any(k in s for s in summaries.values())]
    headers = metric_headers(mse_unit)
    lines = ["| method | images | " + " | ".join(headers[k] for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for method, s in summaries.items():
        lines.append(f"| {method} | {s.get('images', '')} | "
                     + " | ".join(_display(k, s.get(k), mse_unit) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _per_image_table(rows: Sequence[Row], mse_unit: float, max_rows: int) -> list[str]:
    keys = [k for k in METRICS if any(k in r for r in rows)]
    headers = metric_headers(mse_unit)
    lines = ["\n## Per image\n", "| image | " + " | ".join(headers[k] for k in keys) + " |", "|---|" + "---:|" * len(keys)]
    for row in list(rows)[:max_rows]:
        lines.append(f"| {row['name']} | " + " | ".join(_display(k, row.get(k), mse_unit) for k in keys) + " |")
    if len(rows) > max_rows:
        lines.append(f"\n({len(rows) - max_rows} more images in the CSV.)")
    return lines + [""]


def write_markdown(summaries: Mapping[str, Mapping[str, Any]], path: PathLike, *, rows: Sequence[Row] | None = None,
                   mse_unit: float = 1e-3, title: str = "Evaluation", max_rows: int = 200) -> Path:
    """Markdown report: the summary table, the units, and (up to ``max_rows``) a per-image table of ``rows``."""
    parts = [f"# {title}\n", markdown_table(summaries, mse_unit),
             f"\nSAD, Grad, Conn and fg SAD in thousands (raw sums / 1000, as in the Deep Image Matting tables); "
             f"MSE and fg MSE are means divided by {mse_unit:g}. Only trimap-unknown pixels count when a trimap "
             f"is given (the MATLAB protocol). Background Matting's Table 1 prints MSE ×10^-2.\n"]
    if rows:
        parts.extend(_per_image_table(rows, mse_unit, max_rows))
    return write_text(path, "\n".join(parts))


def format_summary(method: str, summary: Mapping[str, Any], mse_unit: float = 1e-3) -> str:
    """One line for logs, e.g. ``model: SAD (×10^3) 1.72  MSE (×10^-3) 9.70 ...``."""
    headers = metric_headers(mse_unit)
    return f"{method}: " + "  ".join(f"{headers[k]} {_display(k, summary[k], mse_unit)}" for k in METRICS if k in summary)


# ----------------------------------------------------------------------------------------------- plot
def _plot_sad(ax, rows: Sequence[Row], sad_values: np.ndarray, label: str, max_bars: int) -> None:
    if len(rows) <= max_bars:
        order = np.argsort(-np.nan_to_num(sad_values, nan=-1.0))
        ax.bar(range(len(order)), sad_values[order], color="tab:blue")
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([str(rows[i]["name"]) for i in order], rotation=90, fontsize=6)
        ax.set_ylabel(label)
        ax.set_title("per-image SAD (worst first)")
    else:
        ax.hist(sad_values[np.isfinite(sad_values)], bins=30, color="tab:blue")
        ax.set_xlabel(label)
        ax.set_ylabel("images")
        ax.set_title("SAD histogram")


def plot_rows(rows: Sequence[Row], path: PathLike, *, title: str = "", mse_unit: float = 1e-3,
              max_bars: int = 60) -> Path:
    """PNG quick look: per-image SAD bars (worst first; a histogram beyond ``max_bars`` images) and an MSE
    histogram. Uses matplotlib's Agg canvas (no display needed)."""
    headers = metric_headers(mse_unit)
    sad_values = np.array([r["sad"] for r in rows], dtype=np.float64)
    mse_values = np.array([r["mse"] for r in rows], dtype=np.float64) / mse_unit
    fig = new_figure(11, 4)
    ax_sad, ax_mse = fig.subplots(1, 2)
    _plot_sad(ax_sad, rows, sad_values, headers["sad"], max_bars)
    ax_mse.hist(mse_values[np.isfinite(mse_values)], bins=min(30, max(5, len(rows))), color="tab:orange")
    ax_mse.set_xlabel(headers["mse"])
    ax_mse.set_ylabel("images")
    ax_mse.set_title("MSE histogram")
    return save_png(fig, path, title, title_size=12)


# ----------------------------------------------------------------------------------------------- all
def write_reports(rows: Sequence[Row], output_dir: PathLike, *, baselines: Mapping[str, Sequence[Row]] | None = None,
                  method: str = "model", mse_unit: float = 1e-3, title: str = "Evaluation",
                  meta: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``per_image.csv``, ``summary.json``, ``summary.md`` and ``per_image.png`` into ``output_dir``
    (baseline rows go to ``per_image_<name>.csv`` and appear as extra lines of the tables)."""
    output_dir = Path(output_dir)
    summaries = summaries_of(rows, baselines, method)
    paths = {"csv": write_rows_csv(rows, output_dir / "per_image.csv")}
    for name, baseline in (baselines or {}).items():
        paths[f"csv_{name}"] = write_rows_csv(baseline, output_dir / f"per_image_{name}.csv")
    paths["json"] = write_summary_json(summaries, output_dir / "summary.json", meta)
    paths["markdown"] = write_markdown(summaries, output_dir / "summary.md", rows=rows, mse_unit=mse_unit, title=title)
    paths["plot"] = plot_rows(rows, output_dir / "per_image.png", title=title, mse_unit=mse_unit)
    return paths
