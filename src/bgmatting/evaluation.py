"""Evaluation library: run a generator (or read predictions) over a test set, score every image with
:mod:`bgmatting.metrics`, summarise, and write reports (CSV, JSON, Markdown, PNG plot).

Rows are plain dicts, one per image: ``name``, ``height``, ``width``, ``unknown_pixels`` and the metrics
``sad``, ``mse``, ``grad``, ``conn`` (and ``fg_mse``, ``fg_sad`` when a foreground is predicted and known).
Metrics are computed on full-resolution numpy arrays with the sample's trimap (unknown == 128), exactly
as the Deep Image Matting MATLAB code does; units are those of :mod:`bgmatting.metrics` (SAD, Grad, Conn,
fg SAD in thousands; MSE and fg MSE raw). Reports print MSE divided by ``mse_unit`` (default 1e-3).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from bgmatting import metrics
from bgmatting.data.io import DataError, IMAGE_EXTENSIONS, read_alpha, read_trimap, write_alpha, write_image
from bgmatting.runtime import Precision, resolve_device, resolve_precision
from bgmatting.space import to_network

PathLike = str | os.PathLike
Row = dict[str, Any]

#: Metric columns in report order, with their unit as stored in rows.
METRIC_UNITS: dict[str, str] = {
    "sad": "sum |a - a*| over unknown pixels / 1000",
    "mse": "mean (a - a*)^2 over unknown pixels (raw)",
    "grad": "sum (|grad a| - |grad a*|)^2 over unknown pixels / 1000 (Gaussian derivative, sigma 1.4)",
    "conn": "sum |phi(a) - phi(a*)| over unknown pixels / 1000 (step 0.1, theta 0.15)",
    "fg_mse": "mean (F - F*)^2 over channels and pixels with a* > 0 (and unknown) (raw)",
    "fg_sad": "sum |F - F*| over channels and pixels with a* > 0 (and unknown) / 1000",
}
METRICS = tuple(METRIC_UNITS)
BASELINES = ("segmentation", "background_difference")


# ----------------------------------------------------------------------------------------------- per image
def image_metrics(pred_alpha: np.ndarray, gt_alpha: np.ndarray, trimap: np.ndarray | None = None,
                  pred_fg: np.ndarray | None = None, gt_fg: np.ndarray | None = None) -> Row:
    """All metrics of one image. Mattes H x W float [0, 1]; trimap uint8 H x W or None (all pixels);
    foregrounds H x W x 3 float [0, 1] (fg metrics only when both are given). Raises ValueError on bad input."""
    row: Row = {
        "height": int(gt_alpha.shape[0]),
        "width": int(gt_alpha.shape[1]),
        "unknown_pixels": int(gt_alpha.size if trimap is None else np.count_nonzero(np.asarray(trimap) == 128)),
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


# ----------------------------------------------------------------------------------------------- the network
def _as_precision(precision: Precision | str, device: torch.device) -> Precision:
    return precision if isinstance(precision, Precision) else resolve_precision(device, precision)


def _pad_to_multiple(x: torch.Tensor, multiple: int = 4) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return x if ph == pw == 0 else F.pad(x, (0, pw, 0, ph), mode="replicate")


def predict_alpha_and_foreground(generator: torch.nn.Module, sample_batch: Mapping[str, torch.Tensor],
                                 precision: Precision | str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """Run the generator on a collated batch; returns (alpha B x 1 x H x W, foreground B x 3 x H x W) in [0, 1].

    ``sample_batch`` holds ``image`` (B x 3), ``background`` (B x 3, the captured B'), ``segmentation`` (B x 1)
    and ``motion`` (B x M) in [0, 1] at any H x W: inputs are padded (replicate) to multiples of 4 and the
    outputs cropped back. Inputs go to network space with :func:`bgmatting.space.to_network`; the outputs
    pass through :func:`bgmatting.models.matte_from_raw` (F = I where alpha > 0.975). Outputs are float32 on
    the generator's device; the generator is used as it is (call ``eval()`` first).
    """
    from bgmatting.models import matte_from_raw

    device = next(generator.parameters()).device
    mode = _as_precision(precision, device)
    height, width = sample_batch["image"].shape[-2:]
    inputs = [
        to_network(_pad_to_multiple(sample_batch[key].to(device=device, dtype=torch.float32)))
        for key in ("image", "background", "segmentation", "motion")
    ]
    with torch.inference_mode(), mode.autocast():
        alpha_raw, foreground_raw = generator(*(mode.prepare_input(x) for x in inputs))
    alpha, foreground = matte_from_raw(alpha_raw.float(), foreground_raw.float(), inputs[0])
    return alpha[..., :height, :width].contiguous(), foreground[..., :height, :width].contiguous()


def _underlying(dataset: Dataset, index: int) -> tuple[Dataset, int]:
    """(dataset, index) behind (nested) ``torch.utils.data.Subset`` wrappers."""
    while isinstance(dataset, Subset):
        dataset, index = dataset.dataset, int(dataset.indices[index])
    return dataset, index


def _sample_name(dataset: Dataset, index: int) -> str:
    base, i = _underlying(dataset, index)
    manifest = getattr(base, "manifest", None)
    if manifest is not None and "name" in getattr(manifest, "columns", ()) and manifest.rows[i].get("name"):
        return str(manifest.rows[i]["name"])
    if callable(getattr(base, "file", None)):
        return Path(base.file(i, "image")).stem
    return f"{index:05d}"


def sample_names(dataset: Dataset) -> list[str]:
    """A unique name per sample: the manifest's ``name`` column, else the image file's stem (datasets with
    ``file(index, "image")``, also behind ``Subset``), else the zero-padded index."""
    n = len(dataset)
    names = [_sample_name(dataset, i) for i in range(n)]
    if len(set(names)) != n:
        names = [f"{i:05d}_{name}" for i, name in enumerate(names)]
    return names


def _numpy_image(t: torch.Tensor) -> np.ndarray:
    """C x H x W tensor -> H x W (C == 1) or H x W x C numpy."""
    a = t.detach().cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.ascontiguousarray(a.transpose(1, 2, 0))


def _sample_trimap(batch: Mapping[str, Any], b: int) -> np.ndarray | None:
    if "trimap" not in batch:
        return None
    t = batch["trimap"][b].detach().cpu().numpy()
    return (t[0] if t.ndim == 3 else t).astype(np.uint8, copy=False)


def _has_true_foreground(dataset: Dataset, index: int) -> bool:
    """False where a manifest-based set has no foreground file (CompositeSetDataset then stands in F = I)."""
    base, i = _underlying(dataset, index)
    manifest = getattr(base, "manifest", None)
    if manifest is not None and callable(getattr(manifest, "has", None)):
        return bool(manifest.has(i, "foreground"))
    return True


def evaluate_model(generator: torch.nn.Module, dataset: Dataset, *, device: torch.device | str = "auto",
                   precision: Precision | str = "auto", batch_size: int = 1, save_dir: PathLike | None = None,
                   save_error_maps: bool = False, progress: bool = True, num_workers: int = 0) -> list[Row]:
    """Score ``generator`` on every sample of a supervised ``dataset`` at the samples' full resolution.

    Samples need image, background, segmentation, motion and alpha (C x H x W in [0, 1]); ``trimap``
    (uint8) restricts the metrics to its unknown region (all pixels without it); ``foreground`` adds fg
    metrics (not for manifest rows without a foreground file, whose F is a stand-in). ``batch_size > 1`` needs samples of equal size. ``save_dir``: writes ``alpha/<name>.png`` and
    ``foreground/<name>.png`` (and ``error/<name>.png`` heat maps of |alpha - alpha*| with
    ``save_error_maps``). The generator is switched to eval mode and restored afterwards.
    Returns one row per sample (see the module docstring).
    """
    from tqdm import tqdm

    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    mode = _as_precision(precision, device)
    names = sample_names(dataset)
    was_training = generator.training
    generator.to(device).eval()
    mode.prepare_module(generator)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    rows: list[Row] = []
    try:
        with tqdm(total=len(dataset), desc="evaluate", unit="img", disable=not progress) as bar:
            for batch in loader:
                alpha, foreground = predict_alpha_and_foreground(generator, batch, mode)
                for b in range(alpha.shape[0]):
                    name = names[len(rows)]
                    pred_alpha, gt_alpha = _numpy_image(alpha[b]).astype(np.float64), _numpy_image(batch["alpha"][b])
                    pred_fg = _numpy_image(foreground[b])
                    known_fg = "foreground" in batch and _has_true_foreground(dataset, len(rows))
                    gt_fg = _numpy_image(batch["foreground"][b]) if known_fg else None
                    trimap = _sample_trimap(batch, b)
                    rows.append(_scored(name, f"sample {len(rows)} ({name})", pred_alpha=pred_alpha,
                                        gt_alpha=gt_alpha, trimap=trimap, pred_fg=pred_fg, gt_fg=gt_fg))
                    if save_dir is not None:
                        save_prediction(save_dir, name, pred_alpha, pred_fg,
                                        gt_alpha if save_error_maps else None, trimap)
                    bar.update(1)
    finally:
        generator.train(was_training)
    return rows


# ----------------------------------------------------------------------------------------------- baselines
def _background_difference(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    try:
        from bgmatting.preprocess.segment import background_difference_matte
    except ImportError as error:
        raise RuntimeError("the background_difference baseline needs "
                           f"bgmatting.preprocess.segment.background_difference_matte ({error})") from error
    out = background_difference_matte(image, background)
    out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    return np.squeeze(out).astype(np.float64)


def baseline_alpha(sample: Mapping[str, torch.Tensor], kind: str) -> np.ndarray:
    """A baseline matte (H x W float64 [0, 1]) for one (uncollated) sample.

    ``segmentation``: alpha = the soft segmentation S the network receives. ``background_difference``: alpha =
    :func:`bgmatting.preprocess.segment.background_difference_matte` of the image and the captured background.
    """
    if kind == "segmentation":
        return _numpy_image(sample["segmentation"]).astype(np.float64)
    if kind == "background_difference":
        return _background_difference(_numpy_image(sample["image"]), _numpy_image(sample["background"]))
    raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")


def baseline_rows(dataset: Dataset, kind: str, *, progress: bool = False) -> list[Row]:
    """Score a baseline matte (see :func:`baseline_alpha`) on every sample, like :func:`evaluate_model`."""
    from tqdm import tqdm

    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
    names = sample_names(dataset)
    rows = []
    for index in tqdm(range(len(dataset)), desc=f"baseline {kind}", unit="img", disable=not progress):
        sample = dataset[index]
        trimap = sample["trimap"].numpy()[0] if "trimap" in sample else None
        rows.append(_scored(names[index], f"sample {index} ({names[index]})", pred_alpha=baseline_alpha(sample, kind),
                            gt_alpha=_numpy_image(sample["alpha"]), trimap=trimap))
    return rows


# ----------------------------------------------------------------------------------------------- folders
def _images_by_stem(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder does not exist")
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            if p.stem in files:
                raise DataError(f"{p}: two {what} files share the name {p.stem!r} ({files[p.stem].name})")
            files[p.stem] = p
    if not files:
        raise DataError(f"{folder}: {what} folder contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _read_checked_alpha(path: Path) -> np.ndarray:
    """read_alpha plus a range check of float files (which read_alpha would clip)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import cv2

        raw = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
        if raw is not None and raw.dtype in (np.float32, np.float64):
            lo, hi = float(np.nanmin(raw)), float(np.nanmax(raw))
            if not np.all(np.isfinite(raw)) or lo < 0.0 or hi > 1.0:
                raise DataError(f"{path}: alpha out of range [0, 1] (min {lo:.6g}, max {hi:.6g}) or not finite")
    return read_alpha(path)


def evaluate_folders(pred_dir: PathLike, gt_dir: PathLike, trimap_dir: PathLike | None = None, *,
                     progress: bool = True, error_map_dir: PathLike | None = None) -> list[Row]:
    """Score predicted alpha files against ground truths, matched by file stem (no model involved).

    Every prediction needs a ground truth (and a trimap when ``trimap_dir`` is given) and every ground truth a
    prediction; sizes must agree. Without trimaps every pixel counts. Each problem is a DataError naming
    the file. ``error_map_dir``: writes |alpha - alpha*| heat maps. Returns one row per image, sorted by name.
    """
    from tqdm import tqdm

    preds = _images_by_stem(Path(pred_dir), "prediction")
    gts = _images_by_stem(Path(gt_dir), "ground-truth")
    trimaps = _images_by_stem(Path(trimap_dir), "trimap") if trimap_dir is not None else None
    for stem, path in preds.items():
        if stem not in gts:
            raise DataError(f"{path}: no ground truth named {stem!r} in {gt_dir}")
        if trimaps is not None and stem not in trimaps:
            raise DataError(f"{gts[stem]}: no trimap named {stem!r} in {trimap_dir}")
    unpredicted = sorted(set(gts) - set(preds))
    if unpredicted:
        shown = ", ".join(gts[s].name for s in unpredicted[:5]) + (" ..." if len(unpredicted) > 5 else "")
        raise DataError(f"{pred_dir}: no prediction for {len(unpredicted)} ground truth(s) in {gt_dir}: {shown}")
    rows = []
    for stem in tqdm(sorted(preds), desc="evaluate", unit="img", disable=not progress):
        pred = _read_checked_alpha(preds[stem])
        gt = _read_checked_alpha(gts[stem])
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
            write_image(Path(error_map_dir) / f"{stem}.png", error_heatmap(pred, gt, trimap))
    return rows


def manifest_from_folder(root: PathLike, manifest_path: PathLike) -> Path:
    """Write a composite-set manifest for a folder ``root`` with sub-folders ``image/``, ``background/``,
    ``alpha/``, ``trimap/`` (required) and ``foreground/``, ``segmentation/``, ``background_clean/``
    (optional), files matched by stem. The manifest (with a ``name`` column) feeds
    :class:`bgmatting.data.adobe.CompositeSetDataset`. Missing folders or files are DataErrors naming them."""
    from bgmatting.data.manifest import write_manifest

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: test-set folder does not exist")
    required = ("image", "background", "alpha", "trimap")
    optional = ("foreground", "segmentation", "background_clean")
    columns = {c: _images_by_stem(root / c, c) for c in required}
    columns.update({c: _images_by_stem(root / c, c) for c in optional if (root / c).is_dir()})
    rows = []
    for stem, image_path in columns["image"].items():
        row: dict[str, Any] = {"name": stem, "image": image_path}
        for column, files in columns.items():
            if column == "image":
                continue
            if stem not in files:
                raise DataError(f"{image_path}: no {column} file named {stem!r} in {root / column}")
            row[column] = files[stem]
        rows.append(row)
    for column, files in columns.items():
        extra = sorted(set(files) - set(columns["image"]))
        if extra:
            raise DataError(f"{files[extra[0]]}: no image named {extra[0]!r} in {root / 'image'}")
    return write_manifest(manifest_path, rows, columns=["name", *columns])


# ----------------------------------------------------------------------------------------------- outputs
def error_heatmap(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
    """|pred - gt| as an RGB heat map (float H x W x 3, 'inferno'); known trimap regions are dimmed."""
    from matplotlib import colormaps

    error = np.abs(np.asarray(pred, np.float64) - np.asarray(gt, np.float64))
    rgb = colormaps["inferno"](np.clip(error, 0.0, 1.0))[..., :3]
    if trimap is not None:
        rgb[np.asarray(trimap) != 128] *= 0.5
    return rgb.astype(np.float32)


def save_prediction(save_dir: PathLike, name: str, alpha: np.ndarray, foreground: np.ndarray | None = None,
                    gt_alpha: np.ndarray | None = None, trimap: np.ndarray | None = None) -> None:
    """Write ``alpha/<name>.png`` (8-bit), ``foreground/<name>.png`` and, with ``gt_alpha``, ``error/<name>.png``."""
    save_dir = Path(save_dir)
    write_alpha(save_dir / "alpha" / f"{name}.png", alpha)
    if foreground is not None:
        write_image(save_dir / "foreground" / f"{name}.png", foreground)
    if gt_alpha is not None:
        write_image(save_dir / "error" / f"{name}.png", error_heatmap(alpha, gt_alpha, trimap))


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


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    return value


def write_rows_csv(rows: Sequence[Row], path: PathLike) -> Path:
    """Per-image CSV (one row per image, columns in report order; NaN written as 'nan')."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(["name", "height", "width", "unknown_pixels", *METRICS, *(k for r in rows for k in r)]))
    columns = [c for c in columns if any(c in r for r in rows)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in row.items()})
    _atomic_write(path, buf.getvalue())
    return path


def read_rows_csv(path: PathLike) -> list[Row]:
    """Read back a per-image CSV (numbers as float, except name)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (v if k == "name" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]


def write_summary_json(summaries: Mapping[str, Mapping[str, Any]], path: PathLike,
                       meta: Mapping[str, Any] | None = None) -> Path:
    """JSON with ``summaries`` (method -> summary), the metric units, and free-form ``meta``; NaN -> null."""
    payload = {"summaries": summaries, "units": METRIC_UNITS, "meta": dict(meta or {})}
    _atomic_write(Path(path), json.dumps(_json_safe(payload), indent=2) + "\n")
    return Path(path)


def metric_headers(mse_unit: float = 1e-3) -> dict[str, str]:
    """Column headers with units: SAD, Grad, Conn, fg SAD in thousands; MSE values divided by ``mse_unit``."""
    exponent = round(math.log10(mse_unit))
    mse_label = f"×10^{exponent}" if math.isclose(10.0**exponent, mse_unit) else f"×{mse_unit:g}"
    return {"sad": "SAD (×10^3)", "mse": f"MSE ({mse_label})", "grad": "Grad (×10^3)", "conn": "Conn (×10^3)",
            "fg_mse": f"fg MSE ({mse_label})", "fg_sad": "fg SAD (×10^3)"}


def _display(key: str, value: Any, mse_unit: float) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    v = float(value) / mse_unit if key in ("mse", "fg_mse") else float(value)
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def markdown_table(summaries: Mapping[str, Mapping[str, Any]], mse_unit: float = 1e-3) -> str:
    """A Markdown table, one line per method (``summaries``: method -> :func:`summarize` output)."""
    keys = [k for k in METRICS if any(k in s for s in summaries.values())]
    headers = metric_headers(mse_unit)
    lines = ["| method | images | " + " | ".join(headers[k] for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for method, s in summaries.items():
        lines.append(f"| {method} | {s.get('images', '')} | "
                     + " | ".join(_display(k, s.get(k), mse_unit) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(summaries: Mapping[str, Mapping[str, Any]], path: PathLike, *, rows: Sequence[Row] | None = None,
                   mse_unit: float = 1e-3, title: str = "Evaluation", max_rows: int = 200) -> Path:
    """Markdown report: the summary table, the units, and (up to ``max_rows``) a per-image table of ``rows``."""
    parts = [f"# {title}\n", markdown_table(summaries, mse_unit),
             f"\nSAD, Grad, Conn and fg SAD in thousands (raw sums / 1000, as in the Deep Image Matting tables); "
             f"MSE and fg MSE are means divided by {mse_unit:g}. Only trimap-unknown pixels count when a trimap "
             f"is given (the MATLAB protocol). Background Matting's Table 1 prints MSE ×10^-2.\n"]
    if rows:
        keys = [k for k in METRICS if any(k in r for r in rows)]
        headers = metric_headers(mse_unit)
        parts.append("\n## Per image\n")
        parts.append("| image | " + " | ".join(headers[k] for k in keys) + " |")
        parts.append("|---|" + "---:|" * len(keys))
        for row in list(rows)[:max_rows]:
            parts.append(f"| {row['name']} | " + " | ".join(_display(k, row.get(k), mse_unit) for k in keys) + " |")
        if len(rows) > max_rows:
            parts.append(f"\n({len(rows) - max_rows} more images in the CSV.)")
        parts.append("")
    _atomic_write(Path(path), "\n".join(parts))
    return Path(path)


def plot_rows(rows: Sequence[Row], path: PathLike, *, title: str = "", mse_unit: float = 1e-3,
              max_bars: int = 60) -> Path:
    """PNG quick look: per-image SAD bars (worst first; a histogram beyond ``max_bars`` images) and an MSE
    histogram. Uses matplotlib's Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    headers = metric_headers(mse_unit)
    sad_values = np.array([r["sad"] for r in rows], dtype=np.float64)
    mse_values = np.array([r["mse"] for r in rows], dtype=np.float64) / mse_unit
    fig = Figure(figsize=(11, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_sad, ax_mse = fig.subplots(1, 2)
    if len(rows) <= max_bars:
        order = np.argsort(-np.nan_to_num(sad_values, nan=-1.0))
        ax_sad.bar(range(len(order)), sad_values[order], color="tab:blue")
        ax_sad.set_xticks(range(len(order)))
        ax_sad.set_xticklabels([str(rows[i]["name"]) for i in order], rotation=90, fontsize=6)
        ax_sad.set_ylabel(headers["sad"])
        ax_sad.set_title("per-image SAD (worst first)")
    else:
        ax_sad.hist(sad_values[np.isfinite(sad_values)], bins=30, color="tab:blue")
        ax_sad.set_xlabel(headers["sad"])
        ax_sad.set_ylabel("images")
        ax_sad.set_title("SAD histogram")
    ax_mse.hist(mse_values[np.isfinite(mse_values)], bins=min(30, max(5, len(rows))), color="tab:orange")
    ax_mse.set_xlabel(headers["mse"])
    ax_mse.set_ylabel("images")
    ax_mse.set_title("MSE histogram")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def write_reports(rows: Sequence[Row], output_dir: PathLike, *, baselines: Mapping[str, Sequence[Row]] | None = None,
                  method: str = "model", mse_unit: float = 1e-3, title: str = "Evaluation",
                  meta: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``per_image.csv``, ``summary.json``, ``summary.md`` and ``per_image.png`` into ``output_dir``
    (baseline rows go to ``per_image_<kind>.csv`` and appear as extra lines of the tables)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summaries = {method: summarize(rows)}
    paths = {"csv": write_rows_csv(rows, output_dir / "per_image.csv")}
    for kind, baseline in (baselines or {}).items():
        summaries[f"baseline: {kind}"] = summarize(baseline)
        paths[f"csv_{kind}"] = write_rows_csv(baseline, output_dir / f"per_image_{kind}.csv")
    paths["json"] = write_summary_json(summaries, output_dir / "summary.json", meta)
    paths["markdown"] = write_markdown(summaries, output_dir / "summary.md", rows=rows, mse_unit=mse_unit, title=title)
    paths["plot"] = plot_rows(rows, output_dir / "per_image.png", title=title, mse_unit=mse_unit)
    return paths


def format_summary(method: str, summary: Mapping[str, Any], mse_unit: float = 1e-3) -> str:
    """One line for logs, e.g. ``model: SAD (×10^3) 1.72  MSE (×10^-3) 9.70 ...``."""
    headers = metric_headers(mse_unit)
    return f"{method}: " + "  ".join(f"{headers[k]} {_display(k, summary[k], mse_unit)}" for k in METRICS if k in summary)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


__all__ = [
    "BASELINES",
    "METRICS",
    "METRIC_UNITS",
    "baseline_alpha",
    "baseline_rows",
    "error_heatmap",
    "evaluate_folders",
    "evaluate_model",
    "format_summary",
    "image_metrics",
    "manifest_from_folder",
    "markdown_table",
    "metric_headers",
    "plot_rows",
    "predict_alpha_and_foreground",
    "read_rows_csv",
    "sample_names",
    "save_prediction",
    "summarize",
    "write_markdown",
    "write_reports",
    "write_rows_csv",
    "write_summary_json",
]

