"""``python -m bgmatting.evaluate``: score a checkpoint on a test set, or predictions against ground truths.

    python -m bgmatting.evaluate checkpoint=run/checkpoints/last.pt dataset.manifest=data/adobe_test/manifest.csv
    python -m bgmatting.evaluate checkpoint=ckpt.pt dataset.root=my_test_set save_error_maps=true
    python -m bgmatting.evaluate checkpoint=ckpt.pt dataset.synthetic=true baselines=[segmentation,background_difference]
    python -m bgmatting.evaluate checkpoint=ckpt.pt dataset.heldout=true    # the photo set at 96, 128, 192, 256 px
    python -m bgmatting.evaluate checkpoint=ckpt.pt dataset.captures=true   # phone-like captures, end to end
    python -m bgmatting.evaluate checkpoint=ckpt.pt dataset.captures=true dataset.capture_sizes=[512] mode=refine
    python -m bgmatting.evaluate pred_dir=results/alpha gt_dir=data/alpha trimap_dir=data/trimap

Writes per_image.csv, summary.json, summary.md, per_image.png and gallery.png into ``output_dir`` (Hydra's run dir
by default; with dataset.heldout / dataset.captures one sub-folder per size beside the suite's summary) and prints
the summary. Options: configs/evaluate.yaml. This module only reads the options; the work is done by
:func:`bgmatting.evaluation.evaluate` (the function training's evaluation calls too).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from bgmatting.cli import fail, require_writable_folder
from bgmatting.io import DataError
from bgmatting.data.synthetic.photo_set import heldout_dataset
from bgmatting.inference.captures import capture_test_set
from bgmatting.inference.job import require_refiner
from bgmatting.evaluation import (BASELINES, Evaluation, evaluate, evaluate_predictions, evaluate_suite, format_summary,
                                  gallery_rows, open_test_set, suite_table, write_gallery)
from bgmatting.models import CheckpointError, MattingModel, load_matting_model
from bgmatting.models.starter import resolve_checkpoint
from bgmatting.runtime import resolve_device, resolve_precision


def _output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.output_dir) if cfg.get("output_dir") else Path(HydraConfig.get().runtime.output_dir)


def _options(node: Any) -> dict[str, Any]:
    """A config mapping (or null) as plain keyword arguments."""
    return {} if node is None else dict(OmegaConf.to_container(node, resolve=True))


def _test_set(cfg: DictConfig, output_dir: Path):
    spec = cfg.dataset
    named = spec.config or (cfg.data.val if spec.synthetic else None)
    if spec.config and spec.synthetic:
        raise DataError("choose one test set: dataset.synthetic=true or dataset.config={_target_: ...}, not both")
    dataset = hydra.utils.instantiate(named, _convert_="all") if named else None
    return open_test_set(manifest=spec.manifest, root=spec.root, dataset=dataset, segmentation=spec.segmentation,
                         seed=spec.seed, work_dir=output_dir)


def _load_model(cfg: DictConfig) -> MattingModel:
    device = resolve_device(cfg.device)
    checkpoint = resolve_checkpoint(cfg.checkpoint)  # "starter": the starter weights the package ships
    model = load_matting_model(checkpoint, **_options(cfg.model_overrides)).to(device)
    return model.set_precision(resolve_precision(device, cfg.precision))


def _evaluate_checkpoint(cfg: DictConfig, output_dir: Path, report: dict[str, Any]) -> Evaluation:
    dataset = _test_set(cfg, output_dir)
    model = _load_model(cfg)
    result = evaluate(model, dataset, baselines=list(cfg.baselines), batch_size=cfg.batch_size,
                      num_workers=cfg.num_workers, save_predictions=cfg.save_predictions,
                      meta={"checkpoint": str(cfg.checkpoint), **report}, **_report_options(cfg, output_dir))
    if cfg.gallery:
        write_gallery(output_dir / "gallery.png", gallery_rows(model, dataset, range(cfg.gallery), cfg.baselines),
                      title=f"{cfg.title}: {cfg.checkpoint}")
    return result


def _only(cfg: DictConfig, flag: str) -> None:
    """A DataError when ``dataset.<flag>=true`` comes with another test set."""
    given = [k for k in ("manifest", "root", "synthetic", "config", "heldout", "captures")
             if k != flag and cfg.dataset.get(k)]
    if given:
        raise DataError(f"dataset.{flag}=true is a test set of its own; drop dataset.{given[0]}")


def _heldout_sets(cfg: DictConfig) -> dict[str, Any]:
    """The held-out photo set at every asked scale."""
    spec = cfg.dataset
    return {f"photo_{size}": heldout_dataset(int(size), n_scenes=spec.heldout_scenes,
                                             cache_dir=cfg.data.get("cache_dir")) for size in spec.heldout_sizes}


def _capture_sets(cfg: DictConfig) -> dict[str, Any]:
    """The capture set at every asked size, with the pipeline of ``mode`` (and the refine options)."""
    spec = cfg.dataset
    return {f"captures_{size}": capture_test_set(
        int(size), n_stills=spec.capture_stills, n_clips=spec.capture_clips, n_frames=spec.capture_frames,
        cache_dir=cfg.data.get("cache_dir"), mode=cfg.mode, network_size=cfg.network_size,
        refine_mode=cfg.refine_mode, refine_pixels=cfg.refine_pixels, precision=cfg.precision,
        downsample_ratio=cfg.get("downsample_ratio"))
        for size in spec.capture_sizes}


def _evaluate_sets(cfg: DictConfig, output_dir: Path, report: dict[str, Any], sets: dict[str, Any],
                   model: MattingModel) -> dict[str, dict[str, Any]]:
    """A suite of sets beside the baselines (capture sets: their own); prints the suite's table."""
    scores = evaluate_suite(model, sets, baselines=cfg.baselines or BASELINES, limit=cfg.get("limit"),
                            output_dir=output_dir, gallery=cfg.gallery, title=f"{cfg.title}: {cfg.checkpoint}",
                            progress=cfg.progress, meta={"checkpoint": str(cfg.checkpoint), **report})
    print(suite_table(scores), end="")
    print(f"reports: {output_dir}")
    return {name: score.as_dict() for name, score in scores.items()}


def _suite_model(cfg: DictConfig) -> MattingModel:
    """The checkpoint's model for a suite; with dataset.captures and mode=refine it must have a refiner."""
    model = _load_model(cfg)
    if cfg.dataset.captures and cfg.mode == "refine":
        require_refiner(model, cfg.checkpoint, "mode=refine")
    return model


def _report_options(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    return dict(output_dir=output_dir, save_error_maps=cfg.save_error_maps, progress=cfg.progress,
                title=cfg.title, mse_unit=cfg.mse_unit)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate as configured; returns {method: summary}. Raises DataError/CheckpointError/ValueError on bad input."""
    output_dir = _output_dir(cfg)
    try:
        require_writable_folder(output_dir)
    except OSError as error:
        raise DataError(f"{output_dir}: cannot write the output folder: {error.strerror or error}") from None
    model_free = bool(cfg.pred_dir or cfg.gt_dir)
    report = {"config": OmegaConf.to_container(cfg, resolve=True)}
    if model_free and cfg.checkpoint:
        raise DataError("give either checkpoint=... (model mode) or pred_dir=/gt_dir= (model-free), not both")
    if model_free:
        if not (cfg.pred_dir and cfg.gt_dir):
            raise DataError("model-free evaluation needs both pred_dir=DIR and gt_dir=DIR")
        folders = {"pred_dir": str(cfg.pred_dir), "gt_dir": str(cfg.gt_dir),
                   "trimap_dir": None if cfg.trimap_dir is None else str(cfg.trimap_dir)}
        result = evaluate_predictions(cfg.pred_dir, cfg.gt_dir, cfg.trimap_dir, meta={**folders, **report},
                                      **_report_options(cfg, output_dir))
    elif cfg.checkpoint and (cfg.dataset.heldout or cfg.dataset.captures):
        flag = "heldout" if cfg.dataset.heldout else "captures"
        _only(cfg, flag)
        sets = _heldout_sets(cfg) if flag == "heldout" else _capture_sets(cfg)
        return _evaluate_sets(cfg, output_dir, report, sets, _suite_model(cfg))
    elif cfg.checkpoint:
        result = _evaluate_checkpoint(cfg, output_dir, report)
    else:
        raise DataError("nothing to evaluate: give checkpoint=PATH with a dataset, or pred_dir=DIR gt_dir=DIR")
    for name, summary in result.summaries.items():
        print(format_summary(f"{name} ({summary['images']} images)", summary, cfg.mse_unit))
    print(f"reports: {result.reports['markdown'].parent}")
    return result.summaries


@hydra.main(config_path="pkg://bgmatting.configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (DataError, CheckpointError, FileNotFoundError, ValueError) as error:  # ValueError: NonFiniteOutputError too
        fail("evaluate", error)


if __name__ == "__main__":
    main()
