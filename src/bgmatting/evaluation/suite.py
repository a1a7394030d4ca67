"""One model scored on several named test sets at once (e.g. the same held-out scenes at 96, 128, 192 and 256 px),
each beside the baseline mattes, with the learning target the project holds its quickstart to.

Per set the baselines are the mattes of :data:`bgmatting.evaluation.BASELINES` (alpha = S; the background-difference
matte of I and B'); the *ratio* is the best baseline's SAD divided by the model's (above 1: the model is better), and
the *target* holds where the ratio is at least :data:`TARGET_RATIO` and the model's MSE and Grad are below every
baseline's. Reference models (e.g. the real stage's teacher) are scored as further rows but are not baselines.

A capture set (:mod:`bgmatting.evaluation.captures`) is scored end to end beside its own three baselines (always,
whatever ``baselines`` says), with whole-frame metrics too: its table lines add frame SAD, false foreground, dtSSD
and the whole-frame ratio (best baseline frame SAD / frame SAD); the ratio and target stay on the band.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from bgmatting.io import write_json, write_text
from bgmatting.evaluation.captures import CAPTURE_BASELINES, is_capture_set, score_capture_baselines
from bgmatting.evaluation.gallery import gallery_rows, write_gallery
from bgmatting.evaluation.reports import MSE_METRICS, metric_headers
from bgmatting.evaluation.run import evaluate
from bgmatting.evaluation.score import BASELINES, score_baseline
from bgmatting.evaluation.summary import summarize
from bgmatting.evaluation.testsets import first_items
from bgmatting.models import MattingModel

PathLike = str | os.PathLike
TARGET_RATIO = 2.0
BASELINE_PREFIX = "baseline: "
REFERENCE_PREFIX = "reference: "
_TABLE_METRICS = ("sad", "mse", "grad", "conn", "fg_mse")
FRAME_SAD = "sad_frame"
_FRAME_METRICS = (FRAME_SAD, "false_fg", "dtssd")
#: Metrics each baseline is logged with in per-epoch validation (those a set's rows have).
_VALIDATION_BASELINE_METRICS = ("sad", "mse", "grad", FRAME_SAD, "mse_frame", "false_fg")


@dataclass
class SetScore:
    """The summaries of one test set: ``"model"``, ``"baseline: <kind>"`` per baseline matte, and one entry per
    reference model (``"reference: <name>"``); each a :func:`bgmatting.evaluation.summarize` dict."""

    name: str
    summaries: dict[str, dict[str, Any]]

    @property
    def images(self) -> int:
        return int(self.summaries["model"]["images"])

    @property
    def baselines(self) -> dict[str, dict[str, Any]]:
        return {k[len(BASELINE_PREFIX):]: v for k, v in self.summaries.items() if k.startswith(BASELINE_PREFIX)}

    @property
    def best_baseline(self) -> str | None:
        return self.best_baseline_by("sad")

    def best_baseline_by(self, metric: str) -> str | None:
        """The baseline with the lowest ``metric`` (None when no baseline has a finite one)."""
        finite = {k: v[metric] for k, v in self.baselines.items() if math.isfinite(v.get(metric, math.nan))}
        return min(finite, key=finite.get) if finite else None

    def ratio(self, method: str = "model", metric: str = "sad") -> float:
        """Best baseline's ``metric`` / ``method``'s (NaN without baselines or without the metric; inf for a
        perfect score). ``metric`` "sad" (the band) or "sad_frame" (capture sets: the whole frame)."""
        best = self.best_baseline_by(metric)
        value = self.summaries[method].get(metric, math.nan)
        if best is None or not math.isfinite(value):
            return math.nan
        return math.inf if value == 0 else self.baselines[best][metric] / value

    @property
    def target_met(self) -> bool:
        model = self.summaries["model"]
        below = all(model[k] < b[k] for b in self.baselines.values() for k in ("mse", "grad"))
        return bool(self.baselines) and self.ratio() >= TARGET_RATIO and below

    def as_dict(self) -> dict[str, Any]:
        out = {"set": self.name, "images": self.images, "summaries": self.summaries,
               "best_baseline": self.best_baseline, "ratio": self.ratio(), "target_met": self.target_met}
        if FRAME_SAD in self.summaries["model"]:
            out.update(best_baseline_frame=self.best_baseline_by(FRAME_SAD), ratio_frame=self.ratio(metric=FRAME_SAD))
        return out


def evaluate_suite(model: MattingModel, sets: Mapping[str, Dataset], *, baselines: Iterable[str] = BASELINES,
                   references: Mapping[str, MattingModel] | None = None, limit: int | None = None,
                   output_dir: PathLike | None = None, gallery: int = 0, title: str = "Evaluation",
                   progress: bool = False, meta: Mapping[str, Any] | None = None) -> dict[str, SetScore]:
    """Score ``model`` (and ``references``) beside ``baselines`` on (the first ``limit`` samples of) every set.

    With ``output_dir``: each set's reports go to ``output_dir/<set>/`` (:func:`bgmatting.evaluation.evaluate`), a
    gallery PNG of its first ``gallery`` images (capture sets: units) to ``output_dir/<set>/gallery.png``, and the
    suite's table and scores to ``output_dir/summary.md`` and ``summary.json``. Returns {set name: SetScore} in
    the given order. Capture sets are always scored beside their own three baselines (module docstring).
    """
    baselines = tuple(baselines)
    scores: dict[str, SetScore] = {}
    for name, dataset in sets.items():
        folder = Path(output_dir) / name if output_dir is not None else None
        captures = is_capture_set(dataset)
        result = evaluate(model, dataset, baselines=CAPTURE_BASELINES if captures else baselines, limit=limit,
                          output_dir=folder, title=f"{title}: {name}", progress=progress, meta=meta,
                          references={f"{REFERENCE_PREFIX}{k}": v for k, v in (references or {}).items()},
                          gallery=gallery if folder is not None else 0)
        scores[name] = SetScore(name, {_method(k): v for k, v in result.summaries.items()})
        if folder is not None and gallery > 0:
            rows = result.gallery if captures else gallery_rows(model, first_items(dataset, limit), range(gallery),
                                                                baselines)
            write_gallery(folder / "gallery.png", rows, title=f"{title}: {name}")
    if output_dir is not None:
        write_text(Path(output_dir) / "summary.md", f"# {title}\n\n{suite_table(scores)}")
        write_json(Path(output_dir) / "summary.json", {"sets": [s.as_dict() for s in scores.values()],
                                                        "target_ratio": TARGET_RATIO, "meta": dict(meta or {})})
    return scores


def _method(key: str) -> str:
    """evaluate() lists reference models as "baseline: reference: <name>"; here they are "reference: <name>"."""
    inner = key[len(BASELINE_PREFIX):] if key.startswith(BASELINE_PREFIX) else key
    return inner if inner.startswith(REFERENCE_PREFIX) else key


def suite_table(scores: Mapping[str, SetScore], mse_unit: float = 1e-3) -> str:
    """Markdown: a line per (set, method) with images, SAD, MSE, Grad, Conn, fg MSE, and for the model and the
    references the ratio best-baseline SAD / their SAD; a last column says whether the model meets the target.
    With a capture set among the sets, also frame SAD, false foreground, dtSSD and the whole-frame ratio."""
    headers = metric_headers(mse_unit)
    frame = any(FRAME_SAD in s.summaries["model"] for s in scores.values())
    extra = _FRAME_METRICS if frame else ()
    head = ["set", "method", "images", *(headers[k] for k in (*_TABLE_METRICS, *extra)), "best baseline SAD / SAD",
            *(["best baseline frame SAD / frame SAD"] if frame else []),
            f"target (≥{TARGET_RATIO:g}×, MSE and Grad below all baselines)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for score in scores.values():
        for method, summary in score.summaries.items():
            is_baseline = method.startswith(BASELINE_PREFIX)
            ratio_cells = ["" if is_baseline else f"{score.ratio(method):.2f}×"]
            if frame:
                whole = score.ratio(method, FRAME_SAD)
                ratio_cells.append("" if is_baseline or math.isnan(whole) else f"{whole:.2f}×")
            target = ("met" if score.target_met else "not met") if method == "model" and score.baselines else ""
            cells = [score.name, method, str(summary.get("images", "")),
                     *(_cell(k, summary.get(k), mse_unit) for k in (*_TABLE_METRICS, *extra)), *ratio_cells, target]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(key: str, value: Any, mse_unit: float) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value / mse_unit:.2f}" if key in MSE_METRICS else f"{value:.3f}"


class SuiteValidation:
    """Per-epoch validation over named sets: ``callable(model) -> {"val/<set>/<metric>": ...}``.

    Logs, per set, the model's metrics, each baseline's SAD, MSE and Grad (``val/<set>/<kind>/<metric>``, scored
    once, since they do not change; capture sets: their own three baselines, with the whole-frame SAD and MSE and
    the false-foreground share too) and the subset size (``val/<set>/images``), plus ``val/relative_sad``: the
    mean over sets of the model's SAD (on the band) divided by the best baseline's (below 1: better than every
    baseline; comparable across scales, so it picks ``best.pt``). A capture set's first ``limit`` units are scored.
    """

    def __init__(self, sets: Mapping[str, Dataset], limit: int | None, baselines: Iterable[str] = BASELINES,
                 batch_size: int = 1) -> None:
        self.sets = {name: first_items(dataset, limit) for name, dataset in sets.items()}
        self.baselines = tuple(baselines)
        self.batch_size = batch_size
        self._baseline_values: dict[str, dict[str, dict[str, Any]]] | None = None

    def _baseline_summaries(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{set: {baseline kind: summary}}, scored on the first call."""
        if self._baseline_values is None:
            self._baseline_values = {}
            for name, dataset in self.sets.items():
                if is_capture_set(dataset):
                    rows = score_capture_baselines(dataset)[0]
                else:
                    rows = {kind: score_baseline(dataset, kind) for kind in self.baselines}
                self._baseline_values[name] = {kind: summarize(r) for kind, r in rows.items()}
        return self._baseline_values

    def __call__(self, model: MattingModel) -> dict[str, float]:
        values: dict[str, float] = {}
        relative = []
        for name, dataset in self.sets.items():
            kinds = self._baseline_summaries()[name]
            for kind, summary in kinds.items():
                values.update({f"val/{name}/{kind}/{k}": float(summary[k])
                               for k in _VALIDATION_BASELINE_METRICS if k in summary})
            summary = evaluate(model, dataset, batch_size=self.batch_size).summaries["model"]
            values.update({f"val/{name}/{k}": float(v) for k, v in summary.items()})
            best = min((s["sad"] for s in kinds.values()), default=math.nan)
            if math.isfinite(best) and best > 0:
                relative.append(summary["sad"] / best)
        if relative:
            values["val/relative_sad"] = sum(relative) / len(relative)
        return values
