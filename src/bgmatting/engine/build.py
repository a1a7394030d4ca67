"""From a composed training config to running objects (the only engine module that reads configs).

``run_training(cfg, run_dir)`` is what ``python -m bgmatting.train`` calls: it joins the process group,
builds data, networks, the stage, optimisers and the loop, resumes when asked, trains, and (rank 0)
evaluates the result with :func:`bgmatting.evaluation.evaluate`. Each ``build_*`` function turns one config
section into objects so it can be used and tested alone.
"""
from __future__ import annotations

import inspect
import logging
import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.contrib.logging import logging_redirect_tqdm

from bgmatting.data.io import write_json
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
from bgmatting.engine.initialization import initialize_from, load_matching_weights
from bgmatting.engine.loop import LoopOptions, Trainer
from bgmatting.engine.run_logging import RunLogger
from bgmatting.engine.sampling import ResumableDistributedSampler, SeededSamples, collate_skipping_none
from bgmatting.engine.settings import Change, check_batch_fits, check_values, is_learning_rate, resume_changes
from bgmatting.engine.stages import Stage
from bgmatting.evaluation import SuiteValidation, evaluate_suite, suite_table, write_learning_curves
from bgmatting.models import Generator, MattingModel, MultiscaleDiscriminator, Refiner, load_matting_model
from bgmatting.models.checkpoints import require_finite
from bgmatting.runtime import Precision, resolve_precision

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
def build_generator(generator_cfg: Mapping[str, Any]) -> Generator:
    return Generator(**dict(generator_cfg))


def build_discriminator(discriminator_cfg: Mapping[str, Any]) -> MultiscaleDiscriminator:
    return MultiscaleDiscriminator(**dict(discriminator_cfg))


def build_matting_model(model_cfg: Mapping[str, Any]) -> MattingModel:
    """The :class:`MattingModel` of a ``model`` config section: ``generator`` (Generator arguments) and, for a
    refining model, ``refiner`` (Refiner arguments) and ``refine`` (its run options, see
    :meth:`MattingModel.set_refine_options`). A section without ``refiner`` builds exactly the plain model."""
    generator = build_generator(model_cfg["generator"])
    if not model_cfg.get("refiner"):
        return MattingModel(generator)
    return MattingModel(generator, Refiner(**dict(model_cfg["refiner"])), **dict(model_cfg.get("refine") or {}))


def resolve_teacher(teacher: str | None, outputs_root: str | os.PathLike) -> Path:
    """The teacher checkpoint: an explicit path, or ``auto`` = the newest Adobe-stage run's best checkpoint."""
    if teacher in (None, "", "auto"):
        found = latest_run_checkpoint(Path(outputs_root) / "adobe", prefer_best=True)
        if found is None:
            raise CheckpointError(
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
            raise CheckpointError(f"teacher={path}: folder holds no checkpoints/ with step_*.pt or best.pt")
        return found
    if not path.is_file():
        raise CheckpointError(f"teacher={path}: checkpoint not found")
    return path


@dataclass
class Networks:
    """The networks of a stage: the trained ``model``, and for stage real the ``discriminator`` and the frozen
    ``teacher`` (loaded from ``teacher_path``)."""

    model: MattingModel
    discriminator: nn.Module | None = None
    teacher: MattingModel | None = None
    teacher_path: Path | None = None


def build_networks(cfg: DictConfig, resume_state: dict | None, outputs_root: Path) -> Networks:
    """The configured stage's networks, on the CPU.

    The trained model is ``cfg.model`` (plain or refining). A fresh run with ``init_from=PATH`` starts it from
    that checkpoint's weights as far as they fit (:func:`~bgmatting.engine.initialization.initialize_from`: e.g. the
    base of a refining model from a plain Adobe-stage run), reported in one log line. Stage real: the teacher comes
    from ``cfg.teacher`` (``auto``: the newest Adobe run, or the teacher of the run being resumed); with
    ``stage.student_init=teacher`` (and no ``init_from``) the student takes the teacher's architecture and weights
    (:func:`student_of`).
    """
    model_cfg = to_plain(cfg.model)
    init_from = cfg.get("init_from")
    if cfg.stage.name != "real":
        model = build_matting_model(model_cfg)
        if init_from and resume_state is None:
            log.info(initialize_from(model, init_from).line())
        return Networks(model)
    teacher_option = cfg.teacher
    if resume_state is not None and teacher_option in (None, "auto"):
        teacher_option = resume_state.get("config", {}).get("teacher", teacher_option)
    teacher_path = resolve_teacher(teacher_option, outputs_root)
    try:
        teacher = load_matting_model(teacher_path)
    except CheckpointError as error:
        raise CheckpointError(f"teacher: {error}") from None
    log.info("teacher: %s", teacher_path)
    init = cfg.stage.student_init
    if init not in ("teacher", "random"):
        raise ValueError(f"stage.student_init must be 'teacher' or 'random', got {init!r}")
    from_teacher = init == "teacher" and not init_from
    model = student_of(teacher, model_cfg) if from_teacher else build_matting_model(model_cfg)
    if resume_state is None and init_from:
        log.info("init_from=%s replaces stage.student_init=%s", init_from, init)
        log.info(initialize_from(model, init_from).line())
    elif resume_state is None and from_teacher:
        log.info(load_matching_weights(model, teacher.checkpoint_state(), f"teacher {teacher_path}").line())
    discriminator = build_discriminator(to_plain(cfg.model.discriminator))
    return Networks(model, discriminator, teacher, teacher_path)


def student_of(teacher: MattingModel, model_cfg: Mapping[str, Any]) -> MattingModel:
    """A fresh model with the teacher's architecture (``stage.student_init=teacher``; weights are loaded apart).

    The teacher's generator, and its refiner if it has one. A plain teacher under a refining ``model`` config
    gets that config's refine head and refiner (its base then starts as the teacher, the rest is new). The run
    options of a refiner are the config's ``refine`` when it has them, else the teacher's.
    """
    generator_config = teacher.generator.config
    refiner_config = teacher.refiner.config if teacher.refiner is not None else None
    if refiner_config is None and model_cfg.get("refiner"):
        refiner_config = dict(model_cfg["refiner"])
        generator_config.update(refine_head=True, refine_hidden=refiner_config["hidden_channels"])
    if generator_config != dict(model_cfg["generator"]):
        log.warning("the student starts from the teacher, so it takes the teacher's architecture %s", generator_config)
    generator = build_generator(generator_config)
    if refiner_config is None:
        return MattingModel(generator)
    options = model_cfg.get("refine") or teacher.refine_options
    return MattingModel(generator, Refiner(**refiner_config), **dict(options))


def place_networks(networks: Networks, cfg: DictConfig, ctx: distributed.DistContext, device: torch.device,
                   precision: Precision) -> tuple[nn.Module, nn.Module | None]:
    """Move the networks to ``device`` in ``precision`` (the teacher too); return the trained ones, compiled
    (``cfg.compile``) and DDP-wrapped as configured: (model, discriminator or None)."""
    networks.model.to(device).set_precision(precision)
    if networks.discriminator is not None:
        precision.prepare_module(networks.discriminator.to(device))
    if networks.teacher is not None:
        networks.teacher.to(device).set_precision(precision)
    sync_bn = bool(cfg.distributed.sync_batchnorm)
    if sync_bn and device.type != "cuda":
        log.warning("distributed.sync_batchnorm needs CUDA; ignored on %s", device)
        sync_bn = False
    model = torch.compile(networks.model) if cfg.compile else networks.model
    # a refining model needs no find_unused_parameters: a step that selects no patch still runs the refiner on
    # an empty batch of windows, which gives its weights zero gradients (tests/engine/test_refine_training.py)
    model = distributed.wrap_module(model, ctx, device, sync_batchnorm=sync_bn)
    discriminator = networks.discriminator
    if discriminator is not None:
        discriminator = distributed.wrap_module(discriminator, ctx, device)
    return model, discriminator


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
def build_test_sets(sets_cfg: Mapping[str, Any] | None) -> dict[str, Dataset]:
    """{name: dataset} from ``evaluation.sets`` (name -> a ``_target_`` dataset node); null entries are skipped."""
    return {str(name): build_dataset(node, f"evaluation.sets.{name}") for name, node in (sets_cfg or {}).items()
            if node is not None}


def final_evaluation(cfg: DictConfig, trainer: Trainer, run_dir: Path) -> dict[str, Any]:
    """Score the trained model, both baselines and (stage real) the teacher on every set of
    ``cfg.evaluation.sets``; write the reports, galleries and the learning curves into the run folder and print
    the table (saying how many of the planned steps ran); returns {set: scores}."""
    teacher = getattr(trainer.stage, "teacher", None)  # stage=real: how far the stage moved from its teacher
    steps = f"{trainer.state.step} of {trainer.total_steps} steps"
    if trainer.stopped_by_time_limit:
        steps += f" (STOPPED by trainer.time_limit_minutes={cfg.trainer.time_limit_minutes})"
    scores = evaluate_suite(
        distributed.unwrap(trainer.model), build_test_sets(cfg.evaluation.sets),
        references={"teacher (adobe stage)": teacher} if teacher is not None else None, limit=cfg.evaluation.limit,
        output_dir=run_dir / "eval", gallery=int(cfg.evaluation.gallery), title=f"{cfg.stage.name} stage, {steps}",
    )
    print(f"\nHeld-out evaluation, {cfg.stage.name} stage after {steps} (DIM metrics on the trimap's unknown band; "
          f"reports and galleries in {run_dir / 'eval'}):\n{suite_table(scores)}", flush=True)
    if trainer.validation_enabled:
        write_learning_curves(run_dir / "metrics.jsonl", run_dir / "learning_curves.png",
                              title=f"{cfg.stage.name} stage: validation SAD (first {cfg.trainer.val_limit} images per set)")
    return {name: score.as_dict() for name, score in scores.items()}


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
            raise CheckpointError(f"resume=true: no checkpoint of this stage under {stage_dir} to resume")
        return found
    path = Path(str(resume))
    if path.is_dir():
        found = latest_in_run(path)
        if found is None:
            raise CheckpointError(f"resume={path}: no checkpoints/step_*.pt in that folder")
        return found
    if not path.is_file():
        raise CheckpointError(f"resume={path}: no such checkpoint")
    return path


@dataclass
class Resume:
    """Where a launch continues: the checkpoint ``path`` and its ``state`` (None for a fresh run), the run
    folder it writes to (the resumed run's own folder), and the config ``changes`` to apply (see
    :mod:`bgmatting.engine.settings`)."""

    path: Path | None
    state: dict | None
    run_dir: Path
    changes: list[Change] = field(default_factory=list)


def resolve_resume(cfg: DictConfig, ctx: distributed.DistContext, run_dir: Path) -> Resume:
    """Find and load the checkpoint ``cfg.resume`` asks for (rank 0 decides, every rank loads); compare its
    config with this launch's (ConfigError for changes a resume cannot take) and its tensors (CheckpointError
    for NaN or infinity)."""
    stage_name = cfg.stage.name
    path = find_resume_checkpoint(cfg.resume, run_dir, Path(cfg.outputs_root) / stage_name) if ctx.is_main else None
    path = distributed.broadcast_object(path)
    if path is None:
        return Resume(None, None, run_dir)
    state = require_training_checkpoint(load_checkpoint(path), path)
    if state.get("stage") != stage_name:
        raise CheckpointError(f"{path} is a {state.get('stage')!r} checkpoint, not {stage_name!r}")
    require_finite(state, str(path), "the run cannot resume from it (resume=PATH picks an earlier checkpoint)")
    changes = resume_changes(state.get("config") or {}, to_plain(cfg), str(path)) if state.get("config") else []
    for change in changes:
        log.info("resume: %s (applied)", change)
    if run_dir_of(path) != run_dir.resolve():
        log.info("resuming the run in %s (this launch's folder %s keeps only its config)", run_dir_of(path), run_dir)
        run_dir = run_dir_of(path)
    return Resume(path, state, run_dir, changes)


# --------------------------------------------------------------------------------------------------- main
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


def loop_options(cfg: DictConfig) -> LoopOptions:
    """The loop's settings from ``trainer``, ``logging`` and ``checkpoint``."""
    trainer_cfg = cfg.trainer
    return LoopOptions(
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


def _validation(cfg: DictConfig, ctx: distributed.DistContext, val_dataset: Dataset | None):
    """(validate callable on rank 0 or None, whether validation runs at all). Validation scores the first
    ``trainer.val_limit`` images of every set of ``evaluation.sets`` (or of ``val_dataset``, named ``val``)."""
    named = any(node is not None for node in (cfg.evaluation.get("sets") or {}).values())
    enabled = bool(cfg.trainer.validate_every) and (val_dataset is not None or named)
    if not (ctx.is_main and enabled):
        return None, enabled
    sets = {"val": val_dataset} if val_dataset is not None else build_test_sets(cfg.evaluation.sets)
    return SuiteValidation(sets, cfg.trainer.val_limit, batch_size=int(cfg.trainer.batch_size)), enabled


def _stage_and_optimisation(cfg: DictConfig, networks: Networks, ctx: distributed.DistContext, device: torch.device,
                            precision: Precision, seed: int, total_steps: int):
    """(stage, optimisers, schedulers) around the placed networks."""
    model, discriminator = place_networks(networks, cfg, ctx, device, precision)
    stage_seed = seed + 104729 * (ctx.rank + 1)
    stage = build_stage(to_plain(cfg.stage), model, precision, discriminator, networks.teacher, seed=stage_seed)
    optimizers = {name: build_optimizer(module, cfg.optim[name]) for name, module in stage.networks.items()}
    schedule = to_plain(cfg.optim.get("schedule"))
    schedulers = {name: build_schedule(opt, schedule, total_steps) for name, opt in optimizers.items()}
    return stage, optimizers, schedulers


def build_trainer(cfg: DictConfig, ctx: distributed.DistContext, device: torch.device, precision: Precision,
                  resume: Resume, seed: int, train_dataset: Dataset | None = None,
                  val_dataset: Dataset | None = None) -> Trainer:
    """Data, networks, stage, optimisation, validation and logging as configured, in one :class:`Trainer`
    (restored from ``resume`` when it holds a checkpoint)."""
    train_dataset = train_dataset if train_dataset is not None else build_dataset(cfg.data.get("train"), "train")
    batch_size = int(cfg.trainer.batch_size)
    check_batch_fits(batch_size, len(train_dataset), ctx.world_size)
    loader, sampler = build_loader(train_dataset, ctx, batch_size=batch_size, num_workers=int(cfg.trainer.num_workers),
                                   seed=seed, on_error=cfg.trainer.data_errors, pin_memory=device.type == "cuda")
    batch_transform = instantiate(cfg.data.batch_augment) if cfg.data.get("batch_augment") else None
    resolved = to_plain(cfg)
    networks = build_networks(cfg, resume.state, Path(cfg.outputs_root))
    if networks.teacher_path is not None:
        resolved["teacher"] = str(networks.teacher_path)  # a resumed run keeps its teacher even with teacher=auto
    options = loop_options(cfg)
    total_steps = options.epochs * len(loader)
    if options.max_steps is not None:
        total_steps = min(total_steps, int(options.max_steps))
    stage, optimizers, schedulers = _stage_and_optimisation(cfg, networks, ctx, device, precision, seed, total_steps)
    validate, validation_enabled = _validation(cfg, ctx, val_dataset)
    logger = RunLogger(resume.run_dir, enabled=ctx.is_main, tensorboard=bool(cfg.logging.tensorboard),
                       progress=bool(cfg.logging.progress), total_steps=total_steps,
                       initial_step=int(resume.state["step"]) if resume.state else 0)
    checkpoints = CheckpointManager(resume.run_dir / CHECKPOINT_DIRNAME, keep_last=int(cfg.checkpoint.keep_last),
                                    mode=cfg.checkpoint.best_mode)
    trainer = Trainer(stage, optimizers, loader, sampler, precision, device, resume.run_dir, options, ctx=ctx,
                      schedulers=schedulers, logger=logger, checkpoints=checkpoints, validate=validate,
                      config=resolved, batch_transform=batch_transform, seed=seed,
                      validation_enabled=validation_enabled)
    if resume.state is not None:
        trainer.load_state_dict(resume.state)
        for change in resume.changes:
            if is_learning_rate(change.key) and change.key.split(".")[1] in trainer.optimizers:
                trainer.set_learning_rate(change.key.split(".")[1], float(change.new))
        logger.message(f"resumed from {resume.path} at step {trainer.state.step} (epoch {trainer.state.epoch})")
    logger.message(
        f"stage {cfg.stage.name}: {len(train_dataset)} training samples, {len(loader)} steps/epoch x {options.epochs} "
        f"epochs (max {total_steps} steps), batch {batch_size} x {ctx.world_size} process(es), "
        f"device {device}, precision {precision.name}, run folder {resume.run_dir}"
    )
    return trainer


def run_training(
    cfg: DictConfig,
    run_dir: str | os.PathLike,
    train_dataset: Dataset | None = None,
    val_dataset: Dataset | None = None,
) -> dict[str, Any]:
    """Train one stage as configured; returns the summary (also written to ``run_dir/summary.json``).

    ``train_dataset`` / ``val_dataset`` replace ``cfg.data.train`` / the validation sets (tests, notebooks).
    """
    check_values(to_plain(cfg))
    ctx = distributed.init_distributed(cfg.distributed.backend)
    if not ctx.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    device = distributed.device_for(ctx, cfg.device)
    precision = resolve_precision(device, cfg.precision, purpose="train")
    resume = resolve_resume(cfg, ctx, Path(run_dir))
    seed = configure_process(cfg, ctx, device)
    trainer = build_trainer(cfg, ctx, device, precision, resume, seed, train_dataset, val_dataset)
    try:
        with logging_redirect_tqdm():
            summary = trainer.fit()
    finally:
        trainer.logger.close()
    summary.update(run_dir=str(resume.run_dir), device=str(device), precision=precision.name)
    if ctx.is_main and cfg.evaluation.enabled:
        summary["evaluation"] = final_evaluation(cfg, trainer, resume.run_dir)
    if ctx.is_main:
        write_json(resume.run_dir / "summary.json", summary)
    return summary
