"""``python -m bgmatting.evaluate``: score a checkpoint on a test set, or predictions against ground truths.

    python -m bgmatting.evaluate checkpoint=run/checkpoints/last.pt dataset.manifest=data/adobe_test/manifest.csv
    python -m bgmatting.evaluate checkpoint=ckpt.pt dataset.root=my_test_set save_error_maps=true
    python -m bgmatting.evaluate checkpoint=ckpt.pt dataset.synthetic=true baselines=[segmentation,background_difference]
    python -m bgmatting.evaluate pred_dir=results/alpha gt_dir=data/alpha trimap_dir=data/trimap

Writes per_image.csv, summary.json, summary.md and per_image.png into ``output_dir`` (Hydra's run dir by
default) and prints the summary. Options: configs/evaluate.yaml. The work is done by
:mod:`bgmatting.evaluation`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf


def _output_dir(cfg: DictConfig) -> Path:
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _options(node: Any) -> dict[str, Any]:
    """A config mapping (or null) as plain keyword arguments."""
    return {} if node is None else dict(OmegaConf.to_container(node, resolve=True))


def build_dataset(cfg: DictConfig, output_dir: Path):
    """The test set named by ``cfg.dataset`` (exactly one of manifest, root, synthetic, config)."""
    from bgmatting.data.io import DataError

    spec = cfg.dataset
    given = [k for k in ("manifest", "root", "synthetic", "config") if spec.get(k)]
    if len(given) != 1:
        raise DataError("choose exactly one test set: dataset.manifest=PATH, dataset.root=DIR, dataset.synthetic=true "
                        f"or dataset.config={{_target_: ...}} (got {', '.join(given) or 'none'})")
    if given[0] == "config":
        return hydra.utils.instantiate(spec.config)
    if given[0] == "synthetic":
        return hydra.utils.instantiate(cfg.data.val, _convert_="all")
    from bgmatting.data.adobe import CompositeSetDataset
    from bgmatting.evaluation import manifest_from_folder

    manifest = spec.manifest or manifest_from_folder(spec.root, output_dir / "test_set_manifest.csv")
    segmentation = spec.segmentation
    if segmentation == "auto":
        from bgmatting.data.manifest import read_manifest

        segmentation = "file" if "segmentation" in read_manifest(manifest).columns else "from_alpha"
    return CompositeSetDataset(manifest, segmentation=segmentation, seed=spec.seed)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate as configured; returns {method: summary}. Raises DataError/CheckpointError/ValueError on bad input."""
    from bgmatting import evaluation
    from bgmatting.data.io import DataError

    output_dir = _output_dir(cfg)
    model_free = bool(cfg.pred_dir or cfg.gt_dir)
    if model_free and cfg.checkpoint:
        raise DataError("give either checkpoint=... (model mode) or pred_dir=/gt_dir= (model-free), not both")
    baselines: dict[str, list] = {}
    if model_free:
        if not (cfg.pred_dir and cfg.gt_dir):
            raise DataError("model-free evaluation needs both pred_dir=DIR and gt_dir=DIR")
        error_dir = output_dir / "predictions" / "error" if cfg.save_error_maps else None
        rows = evaluation.evaluate_folders(cfg.pred_dir, cfg.gt_dir, cfg.trimap_dir, progress=cfg.progress,
                                           error_map_dir=error_dir)
        method, meta = "predictions", {"pred_dir": str(cfg.pred_dir), "gt_dir": str(cfg.gt_dir),
                                       "trimap_dir": None if cfg.trimap_dir is None else str(cfg.trimap_dir)}
    elif cfg.checkpoint:
        from bgmatting.models import load_generator

        dataset = build_dataset(cfg, output_dir)
        generator = load_generator(cfg.checkpoint, **_options(cfg.model_overrides))
        save_dir = output_dir / "predictions" if (cfg.save_predictions or cfg.save_error_maps) else None
        rows = evaluation.evaluate_model(generator, dataset, device=cfg.device, precision=cfg.precision,
                                         batch_size=cfg.batch_size, save_dir=save_dir,
                                         save_error_maps=cfg.save_error_maps, progress=cfg.progress,
                                         num_workers=cfg.num_workers)
        for kind in cfg.baselines:
            baselines[kind] = evaluation.baseline_rows(dataset, kind, progress=cfg.progress)
        method, meta = "model", {"checkpoint": str(cfg.checkpoint)}
    else:
        raise DataError("nothing to evaluate: give checkpoint=PATH with a dataset, or pred_dir=DIR gt_dir=DIR")
    meta["config"] = OmegaConf.to_container(cfg, resolve=True)
    paths = evaluation.write_reports(rows, output_dir, baselines=baselines, method=method, mse_unit=cfg.mse_unit,
                                     title=cfg.title, meta=meta)
    summaries = {method: evaluation.summarize(rows)}
    summaries.update({f"baseline: {k}": evaluation.summarize(v) for k, v in baselines.items()})
    for name, summary in summaries.items():
        print(evaluation.format_summary(f"{name} ({summary['images']} images)", summary, cfg.mse_unit))
    print(f"reports: {paths['markdown'].parent}")
    return summaries


@hydra.main(config_path="pkg://bgmatting.configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from bgmatting.data.io import DataError
    from bgmatting.models import CheckpointError

    try:
        run(cfg)
    except (DataError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
