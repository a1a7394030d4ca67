"""One model scored on several named test sets at once (e.g. the same held-out scenes at 96, 128, 192 and 256 px),
each beside the baseline mattes, with the learning target the project holds its quickstart to.

Per set the baselines are the mattes of :data:`bgmatting.evaluation.BASELINES` (alpha = S; the background-difference
matte of I and B'); the *ratio* is the best baseline's SAD divided by the model's (above 1: the model is better), and
the *target* holds where the ratio is at least :data:`TARGET_RATIO` and the model's MSE and Grad are below every
baseline's. Reference models (e.g. the real stage's teacher) are scored as further rows but are not baselines.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from bgmatting.data.io import write_json, write_text
from bgmatting.evaluation.gallery import gallery_rows, write_gallery
from bgmatting.evaluation.reports import metric_headers
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
        finite = {k: v["sad"] for k, v in self.baselines.items() if math.isfinite(v.get("sad", math.nan))}
        return min(finite, key=finite.get) if finite else None

    def ratio(self, method: str = "model") -> float:
        """Best baseline's SAD / ``method``'s SAD (NaN without baselines; inf for a perfect score)."""
        if self.best_baseline is None:
            return math.nan
        sad = self.summaries[method]["sad"]
        return math.inf if sad == 0 else self.baselines[self.best_baseline]["sad"] / sad

    @property
    def target_met(self) -> bool:
        model = self.summaries["model"]
        below = all(model[k] < b[k] for b in self.baselines.values() for k in ("mse", "grad"))
        return bool(self.baselines) and self.ratio() >= TARGET_RATIO and below

    def as_dict(self) -> dict[str, Any]:
        return {"set": self.name, "images": self.images, "summaries": self.summaries,
                "best_baseline": self.best_baseline, "ratio": self.ratio(), "target_met": self.target_met}


def evaluate_suite(model: MattingModel, sets: Mapping[str, Dataset], *, baselines: Iterable[str] = BASELINES,
                   references: Mapping[str, MattingModel] | None = None, limit: int | None = None,
                   output_dir: PathLike | None = None, gallery: int = 0, title: str = "Evaluation",
                   progress: bool = False, meta: Mapping[str, Any] | None = None) -> dict[str, SetScore]:
    """Score ``model`` (and ``references``) beside ``baselines`` on (the first ``limit`` samples of) every set.

    With ``output_dir``: each set's reports go to ``output_dir/<set>/`` (:func:`bgmatting.evaluation.evaluate`), a
    gallery PNG of its first ``gallery`` images to ``output_dir/<set>/gallery.png``, and the suite's table and
    scores to ``output_dir/summary.md`` and ``summary.json``. Returns {set name: SetScore} in the given order.
    """
    baselines = tuple(baselines)
    scores: dict[str, SetScore] = {}
    for name, dataset in sets.items():
        folder = Path(output_dir) / name if output_dir is not None else None
        result = evaluate(model, dataset, baselines=baselines, limit=limit, output_dir=folder,
                          title=f"{title}: {name}", progress=progress, meta=meta,
                          references={f"{REFERENCE_PREFIX}{k}": v for k, v in (references or {}).items()})
        scores[name] = SetScore(name, {_method(k): v for k, v in result.summaries.items()})
        if folder is not None and gallery > 0:
            rows = gallery_rows(model, first_items(dataset, limit), range(gallery), baselines)
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
    references the ratio best-baseline SAD / their SAD; a last column says whether the model meets the target."""
    headers = metric_headers(mse_unit)
    head = ["set", "method", "images", *(headers[k] for k in _TABLE_METRICS), "best baseline SAD / SAD",
            f"target (≥{TARGET_RATIO:g}×, MSE and Grad below both)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for score in scores.values():
        for method, summary in score.summaries.items():
            is_baseline = method.startswith(BASELINE_PREFIX)
            ratio = "" if is_baseline else f"{score.ratio(method):.2f}×"
            target = ("met" if score.target_met else "not met") if method == "model" and score.baselines else ""
            cells = [score.name, method, str(summary.get("images", "")),
                     *(_cell(k, summary.get(k), mse_unit) for k in _TABLE_METRICS), ratio, target]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(key: str, value: Any, mse_unit: float) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value / mse_unit:.2f}" if key in ("mse", "fg_mse") else f"{value:.3f}"


class SuiteValidation:
    """Per-epoch validation over named sets: ``callable(model) -> {"val/<set>/<metric>": ...}``.

    Logs, per set, the model's metrics, each baseline's SAD, MSE and Grad (``val/<set>/<kind>/<metric>``, scored
    once, since they do not change) and the subset size (``val/<set>/images``), plus ``val/relative_sad``: the mean
    over sets of the model's SAD divided by the best baseline's (below 1: better than every baseline; comparable
    across scales, so it picks ``best.pt``).
    """

    def __init__(self, sets: Mapping[str, Dataset], limit: int | None, baselines: Iterable[str] = BASELINES,
                 batch_size: int = 1) -> None:
        self.sets = {name: first_items(dataset, limit) for name, dataset in sets.items()}
        self.baselines = tuple(baselines)
        self.batch_size = batch_size
        self._baseline_values: dict[str, float] | None = None

    def _baseline_scores(self) -> dict[str, float]:
        if self._baseline_values is None:
            values: dict[str, float] = {}
            for name, dataset in self.sets.items():
                for kind in self.baselines:
                    summary = summarize(score_baseline(dataset, kind))
                    values.update({f"val/{name}/{kind}/{k}": float(summary[k]) for k in ("sad", "mse", "grad")})
            self._baseline_values = values
        return self._baseline_values

    def __call__(self, model: MattingModel) -> dict[str, float]:
        values = dict(self._baseline_scores())
        relative = []
        for name, dataset in self.sets.items():
            summary = evaluate(model, dataset, batch_size=self.batch_size).summaries["model"]
            values.update({f"val/{name}/{k}": float(v) for k, v in summary.items()})
            best = min((values[f"val/{name}/{kind}/sad"] for kind in self.baselines), default=math.nan)
            if math.isfinite(best) and best > 0:
                relative.append(summary["sad"] / best)
        if relative:
            values["val/relative_sad"] = sum(relative) / len(relative)
        return values
