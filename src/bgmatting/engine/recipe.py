"""From a composed training config to running objects: the only engine module that turns config sections into
objects, each through Hydra's ``_target_`` (datasets, networks, the stage, optimisers and schedules).

:func:`build_trainer` assembles a :class:`~bgmatting.engine.loop.Trainer` from them; ``engine.training`` runs it.
Each ``build_*`` function turns one config section into objects so it can be used and tested alone.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bgmatting.io import DataError
from bgmatting.engine import distributed, model_start
from bgmatting.engine.run_checkpoints import CHECKPOINT_DIRNAME, CheckpointError, CheckpointManager
from bgmatting.engine.loop import LoopOptions, RunPlace, Trainer, TrainingData
from bgmatting.engine.run_folder import Resume, resolve_teacher
from bgmatting.engine.run_logging import RunLogger
from bgmatting.engine.sampling import ResumableDistributedSampler, SeededSamples, collate_skipping_none
from bgmatting.engine.settings import ConfigError, check_batch_fits, is_learning_rate
from bgmatting.engine.stages import Networks, Stage
from bgmatting.engine.validation import Validation
from bgmatting.evaluation import SuiteValidation
from bgmatting.models import MattingModel, load_matting_model
from bgmatting.runtime import Precision

log = logging.getLogger(__name__)


def to_plain(node: Any) -> Any:
    """OmegaConf node -> plain Python containers (resolved); anything else unchanged."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _instantiate(node: Any, key: str, **objects: Any) -> Any:
    """``instantiate(node, **objects)``; a ConfigError naming ``key`` when the section does not fit its class (a
    bad value, an unknown option), the DataError of a dataset whose files are missing or broken as it is."""
    try:
        return instantiate(node, _convert_="all", **objects)
    except InstantiationException as error:
        cause = error.__cause__ or error
        if isinstance(cause, DataError):
            raise DataError(str(cause)) from None
        raise ConfigError(f"{key}: {str(cause).strip().splitlines()[0]}") from None


# --------------------------------------------------------------------------------------------------- data
def build_dataset(node: Any, name: str) -> Dataset:
    """A dataset from a ``_target_`` config node (``cfg.data.train``, a set of ``evaluation.sets``)."""
    if node is None:
        raise ConfigError(f"the data config has no {name!r} block")
    return _instantiate(node, name if name.startswith("evaluation") else f"data.{name}")


def build_loader(dataset: Dataset, ctx: distributed.DistContext, batch_size: int, num_workers: int, seed: int,
                 on_error: str = "raise", pin_memory: bool = False, name: str = "train") -> TrainingData:
    """Shuffled, seeded, resumable batches of ``dataset`` (this rank's share; full batches only)."""
    seeded = SeededSamples(dataset, seed=seed, on_error=on_error, name=name)
    sampler = ResumableDistributedSampler(seeded, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                          seed=seed, drop_last=True)
    loader = DataLoader(seeded, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate_skipping_none, drop_last=True, pin_memory=pin_memory,
                        persistent_workers=False)  # workers are recreated per epoch and see the epoch
    return TrainingData(loader, sampler)


def build_test_sets(sets_cfg: Mapping[str, Any] | None) -> dict[str, Dataset]:
    """{name: dataset} from ``evaluation.sets`` (name -> a ``_target_`` dataset node); null entries are skipped."""
    return {str(name): build_dataset(node, f"evaluation.sets.{name}") for name, node in (sets_cfg or {}).items()
            if node is not None}


# ----------------------------------------------------------------------------------------------- networks
def build_matting_model(model_cfg: Mapping[str, Any]) -> MattingModel:
    """The :class:`MattingModel` of a ``model`` config section: its ``generator`` (a ``_target_`` node) and, for a
    refining model, its ``refiner`` (``_target_`` node) run with the ``refine`` options (see
    :meth:`MattingModel.set_refine_options`). A section without ``refiner`` builds exactly the plain model."""
    generator = _instantiate(model_cfg["generator"], "model.generator")
    if not model_cfg.get("refiner"):
        return MattingModel(generator)
    refiner = _instantiate(model_cfg["refiner"], "model.refiner")
    return MattingModel(generator, refiner, **dict(model_cfg.get("refine") or {}))


def build_networks(cfg: DictConfig, resuming: bool) -> Networks:
    """The configured stage's networks, on the CPU: the model as ``init`` says it starts
    (:mod:`~bgmatting.engine.model_start`; a resumed run only builds it), and for stage real the teacher
    (``cfg.teacher``: a path, or ``auto`` = the newest Adobe run) and the discriminator."""
    model_cfg = to_plain(cfg.model)
    init = model_start.check_init(cfg.get("init"), cfg.stage.name)
    teacher = teacher_path = discriminator = None
    if cfg.stage.name == "real":
        teacher_path = resolve_teacher(cfg.teacher, cfg.outputs_root)
        try:
            teacher = load_matting_model(teacher_path)
        except CheckpointError as error:
            raise CheckpointError(f"teacher: {error}") from None
        log.info("teacher: %s", teacher_path)
    model = model_start.student_of(teacher, model_cfg) if init == "teacher" else build_matting_model(model_cfg)
    if not resuming:
        report = model_start.initialize(model, init, teacher, teacher_path)
        if report:
            log.info(report)
    if cfg.stage.name == "real":  # built after the model: the order of the random initialisations is part of a run
        discriminator = _instantiate(model_cfg["discriminator"], "model.discriminator")
    return Networks(model, discriminator, teacher, str(teacher_path) if teacher_path else None)


def place_networks(networks: Networks, cfg: DictConfig, ctx: distributed.DistContext, device: torch.device,
                   precision: Precision) -> Networks:
    """The networks moved to ``device`` in ``precision`` (the teacher too), the trained ones compiled
    (``cfg.compile``) and DDP-wrapped as configured."""
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
    return Networks(model, discriminator, networks.teacher, networks.teacher_path)


def build_stage(stage_cfg: Any, networks: Networks, precision: Precision | None = None, seed: int = 0) -> Stage:
    """The stage of a ``stage`` config section: its ``_target_`` class called with the section's options (its
    ``name`` included) and the run's networks, precision and seed."""
    make = _instantiate(stage_cfg, "stage", _partial_=True)  # objects are passed by the call, not through the config
    try:
        return make(networks=networks, precision=precision, seed=seed)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"stage: {error}") from None


# ------------------------------------------------------------------------------------------- optimisation
def build_optimizer(module: nn.Module, node: Any, name: str = "generator") -> torch.optim.Optimizer:
    """The optimiser of a ``_partial_`` config node (e.g. ``torch.optim.Adam``) over the module's trainable
    parameters."""
    make = _instantiate(node, f"optim.{name}")
    params = [p for p in distributed.unwrap(module).parameters() if p.requires_grad]
    try:
        return make(params)
    except (TypeError, ValueError) as error:  # torch.optim checks its values (lr, betas ...) with ValueError
        raise ConfigError(f"optim.{name}: {error}") from None


def build_schedule(optimizer: torch.optim.Optimizer, node: Any, total_steps: int, last_step: int = -1):
    """The learning-rate schedule of a ``_partial_`` config node (``bgmatting.engine.schedules``) over
    ``total_steps``; ``last_step`` >= 0 places it at a step already taken (see the schedules module)."""
    make = _instantiate(node, "optim.schedule")
    try:
        return make(optimizer, total_steps, last_step=last_step)
    except TypeError as error:
        raise ConfigError(f"optim.schedule: {error}") from None


def set_learning_rates(trainer: Trainer, cfg: DictConfig, resume: Resume) -> None:
    """A resumed run's new ``optim.<name>.lr``: each such optimiser and its schedule restart from the new base
    learning rate at the resumed step (the schedule keeps its factor there)."""
    for change in resume.changes:
        if not (is_learning_rate(change.key) and change.key.split(".")[1] in trainer.optimizers):
            continue
        name = change.key.split(".")[1]
        optimizer = trainer.optimizers[name]
        for group in optimizer.param_groups:
            group["initial_lr"] = float(change.new)
        trainer.schedulers[name] = build_schedule(optimizer, cfg.optim.schedule, trainer.total_steps,
                                                  last_step=trainer.schedulers[name].last_epoch - 1)


# ------------------------------------------------------------------------------------------------- validation
def build_validation(cfg: DictConfig, ctx: distributed.DistContext, device: torch.device,
                     val_dataset: Dataset | None):
    """(validate callable on rank 0 or None, whether validation runs at all). Validation scores the first
    ``trainer.val_limit`` images of every set of ``evaluation.sets`` (or of ``val_dataset``, named ``val``) in the
    inference precision (:mod:`~bgmatting.engine.validation`). ConfigError for a ``checkpoint.best_metric`` that
    names no validation value (checked here by its set, at the first validation exactly)."""
    names = ["val"] if val_dataset is not None else [k for k, v in (cfg.evaluation.get("sets") or {}).items() if v]
    enabled = bool(cfg.trainer.validate_every) and bool(names)
    metric = str(cfg.checkpoint.best_metric)
    if enabled and metric != "val/relative_sad" and metric.split("/")[:2] not in [["val", n] for n in names]:
        raise ConfigError(f"checkpoint.best_metric={metric}: validation logs val/relative_sad and "
                          f"val/<set>/<metric> for the sets {', '.join(names)}")
    if not (ctx.is_main and enabled):
        return None, enabled
    sets = {"val": val_dataset} if val_dataset is not None else build_test_sets(cfg.evaluation.sets)
    suite = SuiteValidation(sets, cfg.trainer.val_limit, batch_size=int(cfg.trainer.batch_size))
    return Validation(suite, device, metric), enabled


def loop_options(cfg: DictConfig) -> LoopOptions:
    """The loop's settings from ``trainer``, ``logging`` and ``checkpoint``."""
    trainer_cfg = cfg.trainer
    return LoopOptions(
        epochs=int(trainer_cfg.epochs), max_steps=trainer_cfg.max_steps, grad_clip_norm=trainer_cfg.grad_clip_norm,
        nonfinite=trainer_cfg.nonfinite, max_skipped_steps=int(trainer_cfg.max_skipped_steps),
        log_every=int(cfg.logging.log_every), image_every=int(cfg.logging.image_every),
        checkpoint_every=int(cfg.checkpoint.every_n_steps), validate_every=int(trainer_cfg.validate_every),
        best_metric=cfg.checkpoint.best_metric, time_limit_minutes=trainer_cfg.get("time_limit_minutes"))


# -------------------------------------------------------------------------------------------------- trainer
def build_trainer(cfg: DictConfig, ctx: distributed.DistContext, device: torch.device, precision: Precision,
                  resume: Resume, seed: int, train_dataset: Dataset | None = None,
                  val_dataset: Dataset | None = None) -> Trainer:
    """Data, networks, stage, optimisation, validation and logging as configured, in one :class:`Trainer`
    (restored from ``resume`` when it holds a checkpoint)."""
    train_dataset = train_dataset if train_dataset is not None else build_dataset(cfg.data.get("train"), "train")
    batch_size = int(cfg.trainer.batch_size)
    check_batch_fits(batch_size, len(train_dataset), ctx.world_size)
    data = build_loader(train_dataset, ctx, batch_size=batch_size, num_workers=int(cfg.trainer.num_workers),
                        seed=seed, on_error=cfg.trainer.data_errors, pin_memory=device.type == "cuda")
    if cfg.data.get("batch_augment"):
        data.transform = instantiate(cfg.data.batch_augment)
    config = to_plain(cfg)
    networks = build_networks(cfg, resuming=resume.state is not None)
    if networks.teacher_path is not None:
        config["teacher"] = networks.teacher_path  # a resumed run keeps its teacher even with teacher=auto
    options = loop_options(cfg)
    total_steps = options.epochs * len(data.loader)
    if options.max_steps is not None:
        total_steps = min(total_steps, int(options.max_steps))
    networks = place_networks(networks, cfg, ctx, device, precision)
    stage = build_stage(cfg.stage, networks, precision, seed=seed + 104729 * (ctx.rank + 1))
    optimizers = {name: build_optimizer(module, cfg.optim[name], name) for name, module in stage.trained.items()}
    schedulers = {name: build_schedule(opt, cfg.optim.schedule, total_steps) for name, opt in optimizers.items()}
    validate, validation_enabled = build_validation(cfg, ctx, device, val_dataset)
    checkpoints = CheckpointManager(resume.run_dir / CHECKPOINT_DIRNAME, keep_last=int(cfg.checkpoint.keep_last),
                                    mode=cfg.checkpoint.best_mode)
    place = RunPlace(device, precision, resume.run_dir, RunLogger(resume.run_dir, enabled=False), checkpoints, ctx,
                     config)
    trainer = Trainer(stage, optimizers, schedulers, data, options, place, validate, validation_enabled, seed)
    if resume.state is not None:
        trainer.load_state_dict(resume.state)  # refuses a checkpoint that does not fit, before anything is written
        set_learning_rates(trainer, cfg, resume)
    # everything is checked: from here on the run folder is written
    place.logger = logger = RunLogger(resume.run_dir, enabled=ctx.is_main, tensorboard=bool(cfg.logging.tensorboard),
                                      progress=bool(cfg.logging.progress), total_steps=total_steps,
                                      initial_step=trainer.state.step)
    for orphan in checkpoints.remove_orphans() if ctx.is_main else ():
        log.info("removed %s, a partial checkpoint left by an interrupted write", orphan)
    if resume.state is not None:
        logger.message(f"resumed from {resume.path} at step {trainer.state.step} (epoch {trainer.state.epoch})")
    logger.message(
        f"stage {cfg.stage.name} on {cfg.data.get('description', 'the configured data')}: {len(train_dataset)} "
        f"training samples, {len(data.loader)} steps/epoch x "
        f"{options.epochs} epochs (max {total_steps} steps), batch {batch_size} x {ctx.world_size} process(es), "
        f"device {device}, precision {precision.name}, run folder {resume.run_dir}")
    return trainer
