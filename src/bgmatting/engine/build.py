"""From a composed training config to running objects (the only engine module that reads configs).

``run_training(cfg, run_dir)`` is what ``python -m bgmatting.train`` calls: it joins the process group,
builds data, networks, the stage, optimisers and the loop, resumes when asked, trains, and (rank 0)
evaluates the result. Each ``build_*`` function turns one config section into objects so it can be used
and tested alone.
"""
from __future__ import annotations

import inspect
import json
import logging
import math
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bgmatting.engine import distributed
from bgmatting.engine.checkpointing import (
    CHECKPOINT_DIRNAME,
    CheckpointError,
    CheckpointManager,
    latest_in_run,
    latest_run_checkpoint,
    load_checkpoint,
    require_training_checkpoint,
    run_dir_of,
)
from bgmatting.engine.loop import LoopOptions, Trainer
from bgmatting.runtime import Precision, resolve_precision
from bgmatting.engine.run_logging import RunLogger
from bgmatting.engine.sampling import ResumableDistributedSampler, SeededSamples, collate_skipping_none
from bgmatting.engine.stages import Stage

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------- basics
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_plain(node: Any) -> Any:
    """OmegaConf node -> plain Python containers (resolved); anything else unchanged."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


# --------------------------------------------------------------------------------------------------- data
def build_dataset(node: Any, name: str) -> Dataset:
    """Instantiate a dataset from a ``_target_`` config node (``cfg.data.train`` / ``cfg.data.val``)."""
    if node is None:
        raise ValueError(f"data config has no {name!r} block")
    return instantiate(node, _convert_="all")


def build_loader(
    dataset: Dataset,
    ctx: distributed.DistContext,
    batch_size: int,
    num_workers: int,
    seed: int,
    on_error: str = "raise",
    pin_memory: bool = False,
    name: str = "train",
) -> tuple[DataLoader, ResumableDistributedSampler]:
    """Shuffled, seeded, resumable DataLoader over ``dataset`` (this rank's share; full batches only)."""
    seeded = SeededSamples(dataset, seed=seed, on_error=on_error, name=name)
    sampler = ResumableDistributedSampler(
        seeded, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=True
    )
    loader = DataLoader(
        seeded,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_skipping_none,
        drop_last=True,
        pin_memory=pin_memory,
        persistent_workers=False,  # workers are recreated per epoch and see the epoch
    )
    return loader, sampler


# ----------------------------------------------------------------------------------------------- networks
def build_generator(generator_cfg: Mapping[str, Any]) -> nn.Module:
    from bgmatting.models import Generator

    return Generator(**dict(generator_cfg))


def build_discriminator(discriminator_cfg: Mapping[str, Any]) -> nn.Module:
    from bgmatting.models import MultiscaleDiscriminator

    return MultiscaleDiscriminator(**dict(discriminator_cfg))


def resolve_teacher(teacher: str | None, outputs_root: str | os.PathLike) -> Path:
    """The teacher checkpoint: an explicit path, or ``auto`` = the newest Adobe-stage run's best checkpoint."""
    if teacher in (None, "", "auto"):
        found = latest_run_checkpoint(Path(outputs_root) / "adobe", prefer_best=True)
        if found is None:
            raise FileNotFoundError(
                f"stage=real needs a teacher: no Adobe-stage checkpoint under {Path(outputs_root) / 'adobe'}. "
                "Run `python -m bgmatting.train stage=adobe` first, or pass teacher=/path/to/checkpoint.pt"
            )
        return found
    path = Path(teacher)
    if path.is_dir():
        found = latest_in_run(path) if (path / CHECKPOINT_DIRNAME).is_dir() else None
        best = path / CHECKPOINT_DIRNAME / "best.pt"
        found = best if best.is_file() else found
        if found is None:
            raise FileNotFoundError(f"teacher={path}: folder holds no checkpoints/ with step_*.pt or best.pt")
        return found
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint not found: {path}")
    return path


def load_teacher(path: Path) -> nn.Module:
    from bgmatting.models import load_generator

    return load_generator(path)


def build_networks(cfg: DictConfig, resume_state: dict | None, outputs_root: Path):
    """(generator, discriminator, teacher, generator kwargs, teacher path) for the configured stage.

    Stage real: the teacher comes from ``cfg.teacher`` (``auto``: the newest Adobe run, or the teacher of the run
    being resumed); with ``stage.student_init=teacher`` the student copies the teacher's architecture and weights.
    """
    model_config = dict(to_plain(cfg.model.generator))
    if cfg.stage.name != "real":
        return build_generator(model_config), None, None, model_config, None
    teacher_option = cfg.teacher
    if resume_state is not None and teacher_option in (None, "auto"):
        teacher_option = resume_state.get("config", {}).get("teacher", teacher_option)
    teacher_path = resolve_teacher(teacher_option, outputs_root)
    teacher = load_teacher(teacher_path)
    log.info("teacher: %s", teacher_path)
    init = cfg.stage.student_init
    if init not in ("teacher", "random"):
        raise ValueError(f"stage.student_init must be 'teacher' or 'random', got {init!r}")
    if init == "teacher":
        if teacher.config != model_config:
            log.warning("the student starts from the teacher, so it takes the teacher's architecture %s", teacher.config)
        model_config = dict(teacher.config)
    generator = build_generator(model_config)
    if init == "teacher" and resume_state is None:
        generator.load_state_dict(teacher.state_dict())
    discriminator = build_discriminator(to_plain(cfg.model.discriminator))
    return generator, discriminator, teacher, model_config, teacher_path


# -------------------------------------------------------------------------------------------------- stage
# keys of the ``stage`` config section that are not constructor arguments: the run folder's name, and the
# student's initialisation (read by build_networks, before the stage exists)
_STAGE_RUN_KEYS = ("name", "student_init")


def build_stage(
    stage_cfg: Mapping[str, Any],
    generator: nn.Module,
    precision: Precision | None,
    discriminator: nn.Module | None = None,
    teacher: nn.Module | None = None,
    seed: int = 0,
) -> Stage:
    """The stage object of the ``stage`` config section: its ``_target_`` class (``engine.stages``) called with
    the section's options and those of generator, discriminator, teacher, precision and seed it takes."""
    options = {k: v for k, v in stage_cfg.items() if k not in _STAGE_RUN_KEYS}
    make = instantiate(options, _partial_=True, _convert_="all")  # the class with the config's options bound
    objects = {"generator": generator, "discriminator": discriminator, "teacher": teacher, "precision": precision,
               "seed": seed}
    parameters = inspect.signature(make.func).parameters
    missing = [k for k in ("discriminator", "teacher") if k in parameters and objects[k] is None]
    if missing:
        raise ValueError(f"stage {stage_cfg.get('name')} needs {' and '.join(missing)}")
    return make(**{k: v for k, v in objects.items() if k in parameters})


# ------------------------------------------------------------------------------------------- optimisation
def build_optimizer(module: nn.Module, options: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Adam/AdamW over the module's trainable parameters from ``{name, lr, betas, eps, weight_decay}``."""
    options = dict(options)
    kind = options.pop("name", "adam").lower()
    params = [p for p in distributed.unwrap(module).parameters() if p.requires_grad]
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if kind not in classes:
        raise ValueError(f"unknown optimiser {kind!r}; choose adam or adamw")
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    return classes[kind](params, **options)


def build_schedule(optimizer: torch.optim.Optimizer, options: Mapping[str, Any] | None, total_steps: int):
    """Per-step LR factor: ``constant``, or ``cosine`` from 1 to ``final_factor``; optional linear warmup."""
    options = dict(options or {})
    kind = options.get("name", "constant")
    warmup = int(options.get("warmup_steps", 0))
    final = float(options.get("final_factor", 1.0))
    if kind not in ("constant", "cosine"):
        raise ValueError(f"unknown LR schedule {kind!r}; choose constant or cosine")

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ------------------------------------------------------------------------------------------------ validate
def _first(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(dataset):
        return dataset
    return torch.utils.data.Subset(dataset, list(range(int(limit))))


def make_validation(dataset: Dataset, device: torch.device, precision: Precision, batch_size: int, limit: int | None):
    """``callable(generator) -> {"val/sad": ..., "val/mse": ..., "val/grad": ..., "val/conn": ...}``.

    Scores (the first ``limit`` items of) a supervised ``dataset`` with :func:`bgmatting.evaluation.evaluate_model`
    (Deep Image Matting metrics in the trimap's unknown region when samples carry a trimap).
    """
    from bgmatting.evaluation import evaluate_model, summarize

    subset = _first(dataset, limit)

    def validate(generator: nn.Module) -> dict[str, float]:
        rows = evaluate_model(generator, subset, device=device, precision=precision, batch_size=batch_size, progress=False)
        summary = summarize(rows)
        return {f"val/{k}": float(v) for k, v in summary.items() if k != "images"}

    return validate


def evaluate_against_baselines(
    generator: nn.Module,
    dataset: Dataset,
    device: torch.device,
    precision: Precision,
    output_dir: Path,
    limit: int | None = None,
    title: str = "Evaluation",
    reference_models: dict[str, nn.Module] | None = None,
) -> dict[str, dict[str, Any]]:
    """Score the generator and both baselines (alpha = S; alpha = background-difference matte) on ``dataset``.

    ``reference_models`` (name -> generator, e.g. the real stage's frozen teacher) are scored the same way and
    reported as further baseline rows. Writes the evaluation reports (CSV, JSON, Markdown, plot) into
    ``output_dir``; returns method -> summary.
    """
    from bgmatting.evaluation import BASELINES, baseline_rows, evaluate_model, summarize, write_reports

    subset = _first(dataset, limit)
    rows = evaluate_model(generator, subset, device=device, precision=precision, batch_size=1, progress=False)
    baselines = {kind: baseline_rows(subset, kind) for kind in BASELINES}
    for name, model in (reference_models or {}).items():
        baselines[name] = evaluate_model(model, subset, device=device, precision=precision, batch_size=1, progress=False)
    write_reports(rows, output_dir, baselines=baselines, title=title)
    summaries = {"model": summarize(rows)}
    summaries.update({f"baseline: {kind}": summarize(r) for kind, r in baselines.items()})
    return summaries


# -------------------------------------------------------------------------------------------------- resume
def find_resume_checkpoint(resume: Any, run_dir: Path, stage_dir: Path) -> Path | None:
    """Which checkpoint to continue from.

    ``auto``: this run folder's newest checkpoint if any (a re-launched job with a fixed hydra.run.dir);
    ``true``: the newest run of this stage under the outputs folder; ``false``: none; else a path (file or run folder).
    """
    if resume in (False, None, "false", "False", "none"):
        return None
    if resume == "auto":
        return latest_in_run(run_dir)
    if resume in (True, "true", "True"):
        found = latest_in_run(run_dir) or latest_run_checkpoint(stage_dir, exclude=run_dir)
        if found is None:
            raise FileNotFoundError(f"resume=true: no checkpoint of this stage under {stage_dir}")
        return found
    path = Path(str(resume))
    if path.is_dir():
        found = latest_in_run(path)
        if found is None:
            raise FileNotFoundError(f"resume={path}: no checkpoints/step_*.pt in that folder")
        return found
    if not path.is_file():
        raise FileNotFoundError(f"resume={path}: no such checkpoint")
    return path


# --------------------------------------------------------------------------------------------------- main
def _final_evaluation(cfg: DictConfig, trainer: Trainer, device, precision: Precision, run_dir: Path) -> dict:
    """Evaluate the final generator and the baselines on ``cfg.evaluation.dataset``; print the table."""
    from bgmatting.evaluation import markdown_table

    dataset = build_dataset(cfg.evaluation.dataset, "evaluation.dataset")
    generator = distributed.unwrap(trainer.generator)
    teacher = getattr(trainer.stage, "teacher", None)  # stage=real: how far the stage moved from its teacher
    summaries = evaluate_against_baselines(
        generator, dataset, device, precision, run_dir / "eval", cfg.evaluation.limit,
        title=f"{cfg.stage.name} stage after {trainer.state.step} steps",
        reference_models={"teacher (adobe stage)": teacher} if teacher is not None else None,
    )
    table = markdown_table(summaries)
    print(f"\nHeld-out evaluation ({summaries['model']['images']} images, DIM metrics, unknown region of the trimap):\n{table}", flush=True)
    return summaries


def run_training(
    cfg: DictConfig,
    run_dir: str | os.PathLike,
    train_dataset: Dataset | None = None,
    val_dataset: Dataset | None = None,
) -> dict[str, Any]:
    """Train one stage as configured; returns the summary (also written to ``run_dir/summary.json``).

    ``train_dataset`` / ``val_dataset`` replace ``cfg.data.train`` / ``cfg.data.val`` (tests, notebooks).
    """
    ctx = distributed.init_distributed(cfg.distributed.backend)
    if not ctx.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    device = distributed.device_for(ctx, cfg.device)
    precision = resolve_precision(device, cfg.precision, purpose="train")
    stage_name = cfg.stage.name
    outputs_root = Path(cfg.outputs_root)
    run_dir = Path(run_dir)

    # Where do we continue from? (rank 0 decides)
    resume_path = find_resume_checkpoint(cfg.resume, run_dir, outputs_root / stage_name) if ctx.is_main else None
    resume_path = distributed.broadcast_object(resume_path)
    resume_state = None
    if resume_path is not None:
        resume_state = require_training_checkpoint(load_checkpoint(resume_path), resume_path)
        if resume_state.get("stage") != stage_name:
            raise CheckpointError(f"{resume_path} is a {resume_state.get('stage')!r} checkpoint, not {stage_name!r}")
        if run_dir_of(resume_path) != run_dir.resolve():
            log.info("resuming the run in %s (this launch's folder %s keeps only its config)", run_dir_of(resume_path), run_dir)
            run_dir = run_dir_of(resume_path)

    if cfg.get("cpu_threads"):
        torch.set_num_threads(int(cfg.cpu_threads))
    seed = int(cfg.seed)
    seed_everything(seed + ctx.rank)
    torch.use_deterministic_algorithms(bool(cfg.trainer.deterministic), warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.trainer.deterministic

    # Data
    train_dataset = train_dataset if train_dataset is not None else build_dataset(cfg.data.get("train"), "train")
    trainer_cfg = cfg.trainer
    loader, sampler = build_loader(
        train_dataset,
        ctx,
        batch_size=int(trainer_cfg.batch_size),
        num_workers=int(trainer_cfg.num_workers),
        seed=seed,
        on_error=trainer_cfg.data_errors,
        pin_memory=device.type == "cuda",
    )
    batch_transform = instantiate(cfg.data.batch_augment) if cfg.data.get("batch_augment") else None

    # Networks
    resolved = to_plain(cfg)
    generator, discriminator, teacher, model_config, teacher_path = build_networks(cfg, resume_state, outputs_root)
    if teacher_path is not None:
        resolved["teacher"] = str(teacher_path)  # a resumed run keeps its teacher even with teacher=auto

    for module in (generator, discriminator, teacher):
        if module is not None:
            module.to(device)
            precision.prepare_module(module)
    sync_bn = bool(cfg.distributed.sync_batchnorm)
    if sync_bn and device.type != "cuda":
        log.warning("distributed.sync_batchnorm needs CUDA; ignored on %s", device)
        sync_bn = False
    if cfg.compile:
        generator = torch.compile(generator)
    generator = distributed.wrap_module(generator, ctx, device, sync_batchnorm=sync_bn)
    if discriminator is not None:
        discriminator = distributed.wrap_module(discriminator, ctx, device)
    stage = build_stage(to_plain(cfg.stage), generator, precision, discriminator, teacher, seed=seed + 104729 * (ctx.rank + 1))

    # Optimisation
    steps_per_epoch = len(loader)
    total_steps = int(trainer_cfg.epochs) * steps_per_epoch
    if trainer_cfg.max_steps is not None:
        total_steps = min(total_steps, int(trainer_cfg.max_steps))
    optimizers = {name: build_optimizer(module, cfg.optim[name]) for name, module in stage.networks.items()}
    schedulers = {name: build_schedule(opt, to_plain(cfg.optim.get("schedule")), total_steps) for name, opt in optimizers.items()}

    # Validation (rank 0)
    validate = None
    validation_enabled = bool(cfg.trainer.validate_every) and (val_dataset is not None or cfg.data.get("val") is not None)
    if ctx.is_main and validation_enabled:
        val_dataset = val_dataset if val_dataset is not None else build_dataset(cfg.data.val, "val")
        validate = make_validation(val_dataset, device, precision, int(trainer_cfg.batch_size), cfg.trainer.val_limit)

    options = LoopOptions(
        epochs=int(trainer_cfg.epochs),
        max_steps=trainer_cfg.max_steps,
        grad_clip_norm=trainer_cfg.grad_clip_norm,
        nonfinite=trainer_cfg.nonfinite,
        max_skipped_steps=int(trainer_cfg.max_skipped_steps),
        log_every=int(cfg.logging.log_every),
        image_every=int(cfg.logging.image_every),
        checkpoint_every=int(cfg.checkpoint.every_n_steps),
        validate_every=int(trainer_cfg.validate_every),
        best_metric=cfg.checkpoint.best_metric,
        time_limit_minutes=trainer_cfg.get("time_limit_minutes"),
        fail_at_step=trainer_cfg.get("fail_at_step"),
    )
    start_step = int(resume_state["step"]) if resume_state else 0
    logger = RunLogger(
        run_dir,
        enabled=ctx.is_main,
        tensorboard=bool(cfg.logging.tensorboard),
        progress=bool(cfg.logging.progress),
        total_steps=total_steps,
        initial_step=start_step,
    )
    trainer = Trainer(
        stage,
        optimizers,
        loader,
        sampler,
        precision,
        device,
        run_dir,
        options,
        ctx=ctx,
        schedulers=schedulers,
        logger=logger,
        checkpoints=CheckpointManager(run_dir / CHECKPOINT_DIRNAME, keep_last=int(cfg.checkpoint.keep_last), mode=cfg.checkpoint.best_mode),
        validate=validate,
        model_config=model_config,
        config=resolved,
        batch_transform=batch_transform,
        seed=seed,
        validation_enabled=validation_enabled,
    )
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
        logger.message(f"resumed from {resume_path} at step {trainer.state.step} (epoch {trainer.state.epoch})")
    logger.message(
        f"stage {stage_name}: {len(train_dataset)} training samples, {steps_per_epoch} steps/epoch x {options.epochs} "
        f"epochs (max {total_steps} steps), batch {trainer_cfg.batch_size} x {ctx.world_size} process(es), "
        f"device {device}, precision {precision.name}, run folder {run_dir}"
    )
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            summary = trainer.fit()
    finally:
        logger.close()
    summary["run_dir"] = str(run_dir)
    summary["device"] = str(device)
    summary["precision"] = precision.name
    if ctx.is_main and cfg.evaluation.enabled:
        summary["evaluation"] = _final_evaluation(cfg, trainer, device, precision, run_dir)
    if ctx.is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
