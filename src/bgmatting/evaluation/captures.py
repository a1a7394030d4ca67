"""Capture sets scored end to end: the model through the pipeline ``python -m bgmatting.infer`` runs, beside three
classical baselines, on the trimap's unknown band and over the whole frame.

A capture set (:class:`bgmatting.data.synthetic.capture_set.CaptureSet`) carries its pipeline (attached by
:func:`bgmatting.inference.captures.capture_test_set`; evaluation never imports inference): per unit the model
mattes the JPEG photo(s) and plate exactly as ``infer`` would (alignment decision, exposure correction, S from the
plate, network, post-process; for clips motion cues and temporal smoothing).

Rows, one per frame (:mod:`bgmatting.evaluation.summary`): the DIM metrics on the unknown band (sad, mse, grad,
conn; fg_mse, fg_sad), over the whole frame (sad_frame, mse_frame, fg_mse_frame where the truth alpha > 0,
false_fg), and for a clip's frames the clip's dtssd; plus unit, kind, what ``infer`` did with the plate
(plate_action, misalignment_px, residual_px) and the model's seconds per frame.

Baselines (:data:`CAPTURE_BASELINES`), from the same files: ``segmentation`` (alpha = S: ``infer``'s segmenter on
the plate as ``infer`` aligns it), ``background_difference`` (the background-difference matte of the photo and that
plate) and ``careful`` (:func:`bgmatting.preprocess.careful_matte` of the photo and the plate as captured).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from bgmatting import metrics
from bgmatting.io import DataError, read_image
from bgmatting.data.synthetic.capture_set import CaptureSet, CaptureUnit
from bgmatting.evaluation.gallery import BASELINE_LABELS, GalleryRow
from bgmatting.evaluation.score import image_metrics
from bgmatting.evaluation.summary import Row
from bgmatting.models import MattingModel
from bgmatting.preprocess.align import AlignmentWarning
from bgmatting.preprocess.classical import careful_matte
from bgmatting.preprocess.segment import background_difference_matte

CAPTURE_BASELINES = ("segmentation", "background_difference", "careful")
#: Longest side of a capture gallery's tiles (frames are shrunk for the picture; captions are full-resolution).
GALLERY_SIDE = 480


def is_capture_set(dataset: Any) -> bool:
    """Whether ``dataset`` is a capture set (scored end to end here, not sample by sample)."""
    return isinstance(dataset, CaptureSet)


def _pipeline(capture_set: CaptureSet) -> Any:
    if capture_set.pipeline is None:
        raise DataError(f"{capture_set.manifest}: this capture set has no inference pipeline to score it with; "
                        "make it with bgmatting.inference.captures.capture_test_set")
    return capture_set.pipeline


def capture_metrics(pred_alpha: np.ndarray, gt_alpha: np.ndarray, trimap: np.ndarray,
                    pred_fg: np.ndarray | None = None, gt_fg: np.ndarray | None = None) -> Row:
    """Band metrics (:func:`~bgmatting.evaluation.score.image_metrics` with the trimap) and whole-frame ones of one
    frame. Mattes H x W float [0, 1], trimap uint8 0/128/255, foregrounds H x W x 3 (fg metrics with both)."""
    row = image_metrics(pred_alpha, gt_alpha, trimap, pred_fg, gt_fg)
    row.update(sad_frame=metrics.sad(pred_alpha, gt_alpha), mse_frame=metrics.mse(pred_alpha, gt_alpha),
               false_fg=metrics.false_foreground(pred_alpha, gt_alpha))
    if pred_fg is not None and gt_fg is not None:
        row["fg_mse_frame"] = metrics.foreground_mse(pred_fg, gt_fg, gt_alpha)
    return row


@dataclass
class _Truth:
    alpha: np.ndarray
    foreground: np.ndarray
    trimap: np.ndarray


def _truths(unit: CaptureUnit) -> list[_Truth]:
    return [_Truth(f.alpha(), f.foreground(), f.trimap()) for f in unit.frames]


def _unit_rows(unit: CaptureUnit, alphas: Sequence[np.ndarray], truths: Sequence[_Truth],
               foregrounds: Sequence[np.ndarray] | None = None) -> list[Row]:
    """One row per frame of ``unit`` (and the clip's dtSSD on each); a bad truth file is a DataError naming it."""
    rows = []
    for k, (frame, alpha, truth) in enumerate(zip(unit.frames, alphas, truths)):
        if alpha.shape != truth.alpha.shape:
            raise DataError(f"{frame.photo_path}: the matte is {alpha.shape} but the truth {truth.alpha.shape}")
        fg = None if foregrounds is None else foregrounds[k]
        try:
            row = capture_metrics(alpha, truth.alpha, truth.trimap, fg, None if fg is None else truth.foreground)
        except ValueError as error:
            raise DataError(f"{frame.trimap_path}: {error}") from None
        rows.append({"name": frame.name, "unit": unit.name, "kind": unit.kind, **row})
    if unit.is_clip:
        value = metrics.dtssd(list(alphas), [t.alpha for t in truths])
        for row in rows:
            row["dtssd"] = value
    return rows


def score_capture_model(model: MattingModel, capture_set: CaptureSet, *, progress: bool = False,
                        keep: int = 0) -> tuple[list[Row], list[Any]]:
    """(rows, the pipeline's outputs for the first ``keep`` units): ``model`` on every unit, end to end."""
    pipeline = _pipeline(capture_set)
    rows: list[Row] = []
    kept = []
    for index, unit in enumerate(tqdm(capture_set, desc="captures", unit="capture", disable=not progress)):
        matted = pipeline.matte(model, unit)
        unit_rows = _unit_rows(unit, matted.alphas, _truths(unit), matted.foregrounds)
        for row, plate in zip(unit_rows, matted.plates):
            row.update(plate_action=plate["action"], misalignment_px=plate.get("misalignment_px", math.nan),
                       residual_px=plate.get("residual_px", math.nan), seconds=matted.seconds / len(unit_rows))
        rows += unit_rows
        if index < keep:
            kept.append(matted)
    return rows, kept


def baseline_mattes(capture_set: CaptureSet, unit: CaptureUnit) -> list[dict[str, np.ndarray]]:
    """Per frame of ``unit``: {baseline kind: alpha H x W float [0, 1]} (module docstring)."""
    plate = read_image(unit.plate_path)
    out = []
    for frame, (aligned, segmentation) in zip(unit.frames, _pipeline(capture_set).plates(unit)):
        image = frame.photo()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AlignmentWarning)  # a failed alignment is part of the baseline's score
            careful = careful_matte(image, plate)[0]
        out.append({"segmentation": segmentation, "background_difference": background_difference_matte(image, aligned),
                    "careful": careful})
    return out


def score_capture_baselines(capture_set: CaptureSet, *, progress: bool = False,
                            keep: int = 0) -> tuple[dict[str, list[Row]], list[dict[str, np.ndarray]]]:
    """({kind: rows} of :data:`CAPTURE_BASELINES`, the first frame's mattes of the first ``keep`` units)."""
    rows: dict[str, list[Row]] = {kind: [] for kind in CAPTURE_BASELINES}
    kept = []
    for index, unit in enumerate(tqdm(capture_set, desc="capture baselines", unit="capture", disable=not progress)):
        mattes = baseline_mattes(capture_set, unit)
        truths = _truths(unit)
        for kind in CAPTURE_BASELINES:
            rows[kind] += _unit_rows(unit, [m[kind] for m in mattes], truths)
        if index < keep:
            kept.append(mattes[0])
    return rows, kept


def _shrunk(array: np.ndarray, side: int = GALLERY_SIDE) -> np.ndarray:
    h, w = array.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return np.asarray(array, np.float32)
    return cv2.resize(np.asarray(array, np.float32), (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def _caption(row: Row) -> str:
    return f"SAD {row['sad']:.3g} band, {row['sad_frame']:.3g} frame"


def capture_gallery_rows(capture_set: CaptureSet, model_rows: Sequence[Row], matted: Sequence[Any],
                         baseline_rows: Mapping[str, Sequence[Row]],
                         baselines: Sequence[Mapping[str, np.ndarray]]) -> list[GalleryRow]:
    """Gallery rows of the first frame of the first ``len(matted)`` units: photo, plate as captured, S, truth, the
    model's alpha, each baseline's, |error| and the model's composite; shrunk to :data:`GALLERY_SIDE`, captioned
    with the full-resolution band and whole-frame SAD."""
    by_name = {kind: {r["name"]: r for r in rows} for kind, rows in {"predicted": model_rows, **baseline_rows}.items()}
    out = []
    for unit, result, mattes in zip(capture_set, matted, baselines):
        frame = unit.frames[0]
        labels = {kind: BASELINE_LABELS.get(kind, kind) for kind in CAPTURE_BASELINES}
        captions = {("predicted" if kind == "predicted" else labels[kind]): _caption(rows[frame.name])
                    for kind, rows in by_name.items()}
        trimap = frame.trimap()
        small_trimap = cv2.resize(trimap, _shrunk(trimap).shape[::-1], interpolation=cv2.INTER_NEAREST)
        out.append(GalleryRow(
            name=unit.name, image=_shrunk(frame.photo()), background=_shrunk(read_image(unit.plate_path)),
            segmentation=_shrunk(mattes["segmentation"]), alpha=_shrunk(frame.alpha()),
            predicted=_shrunk(result.alphas[0]), trimap=small_trimap, composite=_shrunk(result.composites[0]),
            baselines={labels[kind]: _shrunk(mattes[kind]) for kind in CAPTURE_BASELINES}, captions=captions))
    return out


@dataclass
class CaptureScores:
    """The model's rows, the comparison rows ({baseline kind or reference name: rows}) and gallery rows."""

    rows: list[Row]
    baselines: dict[str, list[Row]] = field(default_factory=dict)
    gallery: list[GalleryRow] = field(default_factory=list)


def score_captures(model: MattingModel, capture_set: CaptureSet, *, baselines: bool = True,
                   references: Mapping[str, MattingModel] | None = None, gallery: int = 0,
                   progress: bool = False) -> CaptureScores:
    """``model`` (and ``references``) end to end on every unit, beside the three baselines (with ``baselines``);
    gallery rows for the first ``gallery`` units (needs ``baselines``)."""
    keep = gallery if baselines else 0
    rows, matted = score_capture_model(model, capture_set, progress=progress, keep=keep)
    others: dict[str, list[Row]] = {}
    kept: list[dict[str, np.ndarray]] = []
    if baselines:
        others, kept = score_capture_baselines(capture_set, progress=progress, keep=keep)
    for name, reference in (references or {}).items():
        others[name] = score_capture_model(reference, capture_set, progress=progress)[0]
    rows_of_baselines = {k: others[k] for k in CAPTURE_BASELINES if k in others}
    return CaptureScores(rows, others, capture_gallery_rows(capture_set, rows, matted, rows_of_baselines, kept))
