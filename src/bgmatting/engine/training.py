"""``run_training(cfg, run_dir)``: one training run from its composed config, start to end.

What ``python -m bgmatting.train`` calls: check the config, join the process group, pick device and precision,
find the checkpoint to resume (``engine.run_folder``), seed, build the trainer (``engine.recipe``), train, and
(rank 0) evaluate the result and write ``summary.json``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset
from tqdm.contrib.logging import logging_redirect_tqdm

from bgmatting.io import write_json
from bgmatting.engine import distributed
from bgmatting.engine.recipe import build_test_sets, build_trainer, seed_everything, to_plain
from bgmatting.engine.run_folder import final_evaluation, resolve_resume
from bgmatting.engine.settings import check_values
from bgmatting.runtime import resolve_precision


def configure_process(cfg: DictConfig, ctx: distributed.DistContext, device: torch.device) -> int:
    """CPU threads, seeds (``cfg.seed`` + rank) and determinism for this process; returns ``cfg.seed``."""
    if cfg.get("cpu_threads"):
        torch.set_num_threads(int(cfg.cpu_threads))
    seed = int(cfg.seed)
    seed_everything(seed + ctx.rank)
    torch.use_deterministic_algorithms(bool(cfg.trainer.deterministic), warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.trainer.deterministic
    return seed


def run_training(cfg: DictConfig, run_dir: str | os.PathLike, train_dataset: Dataset | None = None,
                 val_dataset: Dataset | None = None) -> dict[str, Any]:
    """Train one stage as configured; returns the summary (also written to ``run_dir/summary.json``).

    ``train_dataset`` / ``val_dataset`` replace ``cfg.data.train`` / the validation sets (tests, notebooks).
    Every input is checked before the first file is written.
    """
    config = to_plain(cfg)
    check_values(config)
    ctx = distributed.init_distributed(cfg.distributed.backend)
    if not ctx.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    device = distributed.device_for(ctx, cfg.device)
    precision = resolve_precision(device, cfg.precision, purpose="train")
    resume = resolve_resume(cfg, config, ctx, Path(run_dir))
    seed = configure_process(cfg, ctx, device)
    trainer = build_trainer(cfg, ctx, device, precision, resume, seed, train_dataset, val_dataset)
    try:
        with logging_redirect_tqdm():
            summary = trainer.fit()
    finally:
        trainer.logger.close()
    summary.update(run_dir=str(resume.run_dir), device=str(device), precision=precision.name)
    if ctx.is_main and cfg.evaluation.enabled:
        summary["evaluation"] = final_evaluation(cfg, trainer, resume.run_dir, build_test_sets(cfg.evaluation.sets))
    if ctx.is_main:
        write_json(resume.run_dir / "summary.json", summary)
    return summary
