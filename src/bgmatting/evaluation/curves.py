"""Learning-curve PNG from a training run's ``metrics.jsonl``: validation SAD of the model against the step,
with the baselines' SAD as horizontal lines, one panel per validation set (e.g. per held-out scale).

Validation keys read from the rows (any metric, ``sad`` by default), as
:class:`bgmatting.evaluation.suite.SuiteValidation` logs them:

* ``val/<set>/sad``: the model on set ``<set>`` (``val/sad``: a run with a single unnamed set);
* ``val/<set>/<method>/sad``: a baseline (e.g. ``segmentation``, ``background_difference``); its last logged
  value is drawn as a horizontal line;
* ``val/<set>/images``: the validation subset size, shown in the panel title.

Keys with no set (``val/relative_sad``) are not drawn. Baselines and subset sizes can also be given as
arguments (they are constant over a run).
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bgmatting.io import DataError

from bgmatting.evaluation.figures import new_figure, save_png

PathLike = str | os.PathLike
MODEL = "model"
_KEY = re.compile(r"^val/(?:(?P<set>[^/]+)/)?(?:(?P<method>[^/]+)/)?(?P<metric>[a-z_]+)$")


@dataclass
class Panel:
    """One set's series: model (steps, values), baseline values by name, subset size (or None)."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    baselines: dict[str, float] = field(default_factory=dict)
    images: int | None = None


def read_metrics(path: PathLike) -> list[dict]:
    """Rows of a ``metrics.jsonl`` (one JSON object per line; a truncated last line, as left by a run that is
    still writing, is ignored). A bad line elsewhere is a DataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metrics file does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise DataError(f"{path}:{number}: not a JSON object ({error.msg})") from None
    return rows


def validation_panels(rows: Iterable[Mapping], metric: str = "sad") -> dict[str, Panel]:
    """Panels keyed by set name ("" for keys without one, e.g. ``val/sad``), in order of first appearance."""
    panels: dict[str, Panel] = {}
    for row in rows:
        step = row.get("step")
        for key, value in row.items():
            match = _KEY.match(key)
            if match is None or not isinstance(value, (int, float)):
                continue
            if match["set"] is None and match["metric"] != metric:
                continue  # e.g. val/relative_sad: no set, not a panel
            panel = panels.setdefault(match["set"] or "", Panel())
            if match["metric"] == "images" and match["method"] is None:
                panel.images = int(value)
            elif match["metric"] == metric and match["method"] is None and step is not None:
                panel.steps.append(int(step))
                panel.values.append(float(value))
            elif match["metric"] == metric and match["method"] is not None:
                panel.baselines[match["method"]] = float(value)
    return {k: p for k, p in panels.items() if p.steps or p.baselines}


def _merge(panels: dict[str, Panel], baselines: Mapping | None, images: Mapping | int | None) -> None:
    """Add given baselines ({set or "": {name: value}}) and subset sizes (int or {set: n}) to the panels."""
    for size, values in (baselines or {}).items():
        panels.setdefault(str(size), Panel()).baselines.update({k: float(v) for k, v in values.items()})
    if images is None:
        return
    counts = {str(k): int(v) for k, v in images.items()} if isinstance(images, Mapping) else None
    for label, panel in panels.items():
        panel.images = int(images) if counts is None else counts.get(label, panel.images)


def _panel_title(label: str, panel: Panel) -> str:
    name = label or "validation"
    return f"{name} ({panel.images} images)" if panel.images else f"{name} (subset size not logged)"


def write_learning_curves(source: PathLike | Iterable[Mapping], path: PathLike, *, metric: str = "sad",
                          baselines: Mapping | None = None, images: Mapping | int | None = None,
                          title: str = "") -> Path:
    """Write the learning-curve PNG of ``source`` (a metrics.jsonl path or its rows) to ``path`` atomically.

    baselines: {set ("" for keys without a set): {name: value}}, added to those logged in the rows.
    images: the validation subset size (one int, or {set: n}), when the rows do not log ``val/.../images``.
    Raises DataError when there is nothing to plot.
    """
    rows = read_metrics(source) if isinstance(source, (str, os.PathLike)) else list(source)
    panels = validation_panels(rows, metric)
    _merge(panels, baselines, images)
    if not any(p.steps for p in panels.values()):
        where = source if isinstance(source, (str, os.PathLike)) else "metrics rows"
        raise DataError(f"{where}: no val/.../{metric} values to plot")
    fig = new_figure(4.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, panel) in zip(axes, panels.items()):
        ax.plot(panel.steps, panel.values, marker="o", markersize=3, color="tab:blue", label=MODEL)
        for i, (name, value) in enumerate(sorted(panel.baselines.items())):
            if math.isfinite(value):
                ax.axhline(value, linestyle="--", color=f"C{i + 1}", label=f"baseline: {name}")
        ax.set_title(_panel_title(label, panel), fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(f"validation {metric.upper()}" + (" (×10^3)" if metric in ("sad", "grad", "conn") else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_png(fig, path, title, title_size=11)
