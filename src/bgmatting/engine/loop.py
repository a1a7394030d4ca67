"""The one training loop, shared by every stage.

:meth:`Trainer.train_step` is the optimisation step: for each update the stage yields (its forward pass and
loss terms, under autocast), backward, gradient clipping and the optimiser step; then the schedules step. The
rest of the loop is bookkeeping around it: epochs, logging, validation, checkpoints and exact resumption.
What to optimise comes from the stage (``engine.stages``); everything is built from the config by
``engine.recipe``.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bgmatting.engine import distributed
from bgmatting.engine.run_checkpoints import (
    CheckpointManager,
    load_networks_and_optimizers,
    restore_run_state,
    training_state,
)
from bgmatting.engine.nonfinite import NonFiniteLossError, StepUndo, non_finite_terms
from bgmatting.engine.run_logging import Meter, RunLogger, run_summary
from bgmatting.engine.sampling import ResumableDistributedSampler
from bgmatting.engine.stages import Stage
from bgmatting.runtime import Precision

log = logging.getLogger(__name__)

#: After this many steps of a run the loop announces how long the rest of its schedule will take.
ESTIMATE_AFTER_STEPS = 20


@dataclass
class LoopOptions:
    """Plain settings of the loop (see configs/train.yaml for the documented defaults)."""

    epochs: int = 1
    max_steps: int | None = None  # stop after this many steps in total (None: run all epochs)
    grad_clip_norm: float | None = None  # max global L2 norm per optimiser; None = no clipping
    nonfinite: str = "stop"  # "stop": raise NonFiniteLossError; "skip": drop the step and go on
    max_skipped_steps: int = 20  # with "skip": give up after this many skipped steps in a row
    log_every: int = 10  # scalars every N steps (means over the interval)
    image_every: int = 200  # image grid every N steps (0 = never)
    checkpoint_every: int = 0  # extra checkpoint every N steps (0 = only at epoch ends and the end)
    validate_every: int = 1  # validate every N epochs (0 = never)
    best_metric: str = "val/relative_sad"  # validation value deciding best.pt (see evaluation.SuiteValidation)
    time_limit_minutes: float | None = None  # stop cleanly (checkpoint, then evaluation) once training took this long

    def __post_init__(self) -> None:
        if self.nonfinite not in ("stop", "skip"):
            raise ValueError(f"nonfinite must be 'stop' or 'skip', got {self.nonfinite!r}")


@dataclass
class LoopState:
    step: int = 0  # optimisation steps (batches) done
    epoch: int = 0  # current epoch
    batches_done: int = 0  # batches of the current epoch already consumed
    best: float | None = None  # best validation value so far
    metrics: dict[str, float] = field(default_factory=dict)  # last validation


@dataclass
class TrainingData:
    """The training batches: a DataLoader over a :class:`ResumableDistributedSampler`, and an optional device-side
    ``transform(batch, generator) -> batch`` (e.g. ``bgmatting.data.batch_augment.BackgroundPerturbation``)."""

    loader: torch.utils.data.DataLoader
    sampler: ResumableDistributedSampler
    transform: Callable[[dict, torch.Generator], dict] | None = None


@dataclass
class RunPlace:
    """Where a run executes and writes: device, precision, process group; the run folder (checkpoints go to
    ``run_dir/checkpoints``, rank 0 only), its logger and checkpoint manager, and the resolved config (a plain
    dict, stored in checkpoints)."""

    device: torch.device
    precision: Precision
    run_dir: Path
    logger: RunLogger
    checkpoints: CheckpointManager
    ctx: distributed.DistContext = field(default_factory=distributed.DistContext)
    config: dict = field(default_factory=dict)


class Trainer:
    """Runs a stage's updates over the training data for a number of epochs, resumably.

    Args:
        stage: supplies the trained networks (``stage.trained``, by optimiser name) and per-batch updates.
        optimizers / schedulers: by name, matching the names the stage's updates use; every scheduler steps once
            per training step (also for an optimiser, like the discriminator's, that does not step every time).
        data: the training batches. options: the loop's settings. place: device, precision, outputs.
        validate: optional ``callable(model) -> {"val/...": value}``, run every ``validate_every`` epochs on rank
            0 (the loop passes a copy of the bare matting model in eval mode, without gradients).
        validation_enabled: whether validation runs at all (the same on every rank). seed: the batch transform's.
    """

    def __init__(self, stage: Stage, optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, Any],
                 data: TrainingData, options: LoopOptions, place: RunPlace,
                 validate: Callable[[nn.Module], dict[str, float]] | None = None,
                 validation_enabled: bool | None = None, seed: int = 0):
        self.stage, self.optimizers, self.schedulers = stage, optimizers, schedulers
        self.data, self.options, self.place = data, options, place
        self.validate = validate
        self.validation_enabled = (validate is not None) if validation_enabled is None else validation_enabled
        self.state = LoopState()
        self.batch_rng = torch.Generator(device=place.device).manual_seed(seed + 7919 * (place.ctx.rank + 1))
        scaler_device = place.device.type if place.device.type in ("cuda", "cpu") else "cpu"
        self.scalers = {name: torch.amp.GradScaler(scaler_device, enabled=place.precision.needs_grad_scaler)
                        for name in optimizers}
        self.steps_per_epoch = len(data.loader)
        if self.steps_per_epoch == 0:
            raise ValueError(f"the training data gives no full batch: {len(data.sampler.dataset)} samples over "
                             f"{place.ctx.world_size} process(es) with batch size {data.loader.batch_size} (drop_last)")
        self.history: list[dict[str, float]] = []  # per logged interval, for callers and tests
        self.meter: Meter | None = None
        self.stopped_by_time_limit = False  # set by fit() when trainer.time_limit_minutes cut the schedule
        self._resumed_interval: dict | None = None
        self._consecutive_skips = 0
        self._last_saved_step: int | None = None
        self._last_validated_step: int | None = None

    # --------------------------------------------------------------------------------------------- names
    ctx = property(lambda self: self.place.ctx)
    config = property(lambda self: self.place.config)
    logger = property(lambda self: self.place.logger)

    @property
    def model(self) -> nn.Module:
        """The trained :class:`~bgmatting.models.MattingModel` (as the stage holds it: possibly DDP-wrapped)."""
        return self.stage.trained["generator"]

    @property
    def total_steps(self) -> int:
        total = self.options.epochs * self.steps_per_epoch
        return min(total, self.options.max_steps) if self.options.max_steps is not None else total

    # ------------------------------------------------------------------------------------- the one step
    def train_step(self, batch: dict) -> dict[str, float] | None:
        """One batch: for each update of the stage (its forward pass and losses, under autocast) backward, clip
        and step its optimiser; then every schedule steps. Returns the scalars to log, or None for a step skipped
        as non-finite (``nonfinite=skip``; every network, optimiser and scaler is then exactly as before it)."""
        undo = StepUndo(self.stage.trained, self.optimizers, self.scalers) if self.options.nonfinite == "skip" else None
        updates = self.stage.updates(batch, self.state.step, self.state.epoch)
        scalars: dict[str, float] = {}
        while True:
            with self.place.precision.autocast():
                update = next(updates, None)  # the stage's forward pass and loss terms
            if update is None:
                break
            values = update.values()
            problem = non_finite_terms(values, self.state.step + 1, self.state.epoch, update.optimizer)
            if problem is None:
                optimizer, scaler = self.optimizers[update.optimizer], self.scalers[update.optimizer]
                optimizer.zero_grad(set_to_none=True)
                total = update.total()
                scaler.scale(total).backward()
                norm, problem = self._clip(update.optimizer)
            if problem is not None:
                updates.close()
                return self._skip(problem, undo)
            scaler.step(optimizer)
            scaler.update()
            scalars.update(update.scalars(values, total, norm))
        for scheduler in self.schedulers.values():  # schedules count training steps, not each optimiser's steps
            scheduler.step()
        self._consecutive_skips = 0
        return scalars

    def _clip(self, name: str) -> tuple[float | None, str | None]:
        """Clip the gradients of optimiser ``name`` to ``grad_clip_norm`` (if set): (norm, problem or None)."""
        if self.options.grad_clip_norm is None:
            return None, None
        optimizer, scaler = self.optimizers[name], self.scalers[name]
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = float(torch.nn.utils.clip_grad_norm_(params, self.options.grad_clip_norm))
        if math.isfinite(norm) or scaler.is_enabled():
            return norm, None
        return norm, (f"non-finite gradient norm at step {self.state.step + 1} (epoch {self.state.epoch}) "
                      f"for optimiser '{name}'")

    def _skip(self, problem: str, undo: StepUndo | None) -> None:
        """A non-finite step: stop the run (``nonfinite=stop``), or undo the step and count it."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        if undo is None:
            raise NonFiniteLossError(
                f"{problem}; the run stopped and the last good checkpoint is kept "
                f"({self.place.checkpoints.latest() or 'none written yet'}). Set trainer.nonfinite=skip to skip such steps.")
        undo.restore()
        self._consecutive_skips += 1
        self.logger.message(f"skipping step: {problem}")
        if self._consecutive_skips > self.options.max_skipped_steps:
            raise NonFiniteLossError(f"{self._consecutive_skips} consecutive non-finite steps; last: {problem}")
        return None

    # -------------------------------------------------------------------------------------- the schedule
    def fit(self) -> dict[str, Any]:
        """Train until ``epochs`` (or ``max_steps``) are done; returns a summary dict (on every rank)."""
        self.meter = meter = Meter(start_step=self.state.step)
        meter.resume_interval(self._resumed_interval)
        self._resumed_interval = None
        while self.state.epoch < self.options.epochs and self.state.step < self.total_steps:
            self.stopped_by_time_limit = self._train_epoch(meter)
            if self.stopped_by_time_limit:
                self.logger.message(
                    f"time limit of {self.options.time_limit_minutes} min reached after step {self.state.step} of "
                    f"{self.total_steps}; stopping (the final evaluation says so too)")
                break
            if self.state.batches_done < self.steps_per_epoch:
                break  # max_steps reached mid-epoch
            self._end_epoch()
        self._end_training()
        self.logger.flush()
        return run_summary(self, meter)

    def _train_epoch(self, meter: Meter) -> bool:
        """Steps of the current epoch from where it stands; True when the time limit stopped it."""
        self._set_train_mode(True)
        self.data.sampler.set_epoch(self.state.epoch)
        self.data.sampler.set_start(self.state.batches_done * self.data.loader.batch_size)
        batches = iter(self.data.loader)
        while self.state.step < self.total_steps:
            wait_start = time.perf_counter()
            batch = next(batches, StopIteration)
            if batch is StopIteration:
                break
            meter.waited(time.perf_counter() - wait_start)
            self.state.batches_done += 1
            if batch is None:  # every sample of the batch failed to load (on_error=skip)
                meter.skipped += 1
                self.state.step += 1
                continue
            self._train_batch(batch, meter)
            self._after_step(meter)
            if self.options.time_limit_minutes is not None and distributed.broadcast_object(
                    meter.minutes() >= self.options.time_limit_minutes):  # rank 0 decides: all stop at one step
                return True
        return False

    def _train_batch(self, batch: dict, meter: Meter) -> None:
        """Transfer, batch transform and :meth:`train_step` of one batch, counted in ``meter``."""
        batch = {k: v.to(self.place.device, non_blocking=self.place.device.type == "cuda") if torch.is_tensor(v) else v
                 for k, v in batch.items()}
        if self.data.transform is not None:
            batch = self.data.transform(batch, self.batch_rng)
        step_start = time.perf_counter()
        scalars = self.train_step(batch)
        meter.step_time_total += time.perf_counter() - step_start
        self.state.step += 1
        meter.stepped(scalars, batch["image"].shape[0] * self.ctx.world_size)
        self.logger.progress(1, {k.split("/")[-1]: v for k, v in (scalars or {}).items() if k.endswith("_total")})

    def _after_step(self, meter: Meter) -> None:
        """Per-step bookkeeping: logged means, image grid, periodic checkpoint, the duration estimate."""
        opts, step = self.options, self.state.step
        if step % opts.log_every == 0 or step == self.total_steps:
            row = meter.interval_row(time.perf_counter())
            row.update({f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()})
            row.update({f"stage/{k}": v for k, v in self.stage.scalars(self.state.epoch).items()})
            self.logger.scalars(step, row, epoch=self.state.epoch)
            self.history.append({"step": step, **row})
        if opts.image_every and step % opts.image_every == 0:
            self.logger.images(step, "train/grid", self.stage.visuals())
        ends_epoch_or_run = self.state.batches_done == self.steps_per_epoch or step == self.total_steps
        if opts.checkpoint_every and step % opts.checkpoint_every == 0 and not ends_epoch_or_run:
            self.save_checkpoint()  # an epoch's or the run's end saves after its validation, for best.pt
        if step - meter.start_step == ESTIMATE_AFTER_STEPS and step < self.total_steps:
            self.logger.message(meter.duration_estimate(step, self.total_steps))

    def _end_epoch(self) -> None:
        """Count the finished epoch, validate when due, and checkpoint (unless this step already has one)."""
        self.state.epoch += 1
        self.state.batches_done = 0
        every = self.options.validate_every
        if self.validation_enabled and every and self.state.epoch % every == 0:
            self._run_validation()
        if self._last_saved_step != self.state.step or self._validated_now():
            self.save_checkpoint()

    def _end_training(self) -> None:
        """A last validation (so best.pt also considers the final weights) and checkpoint, unless already done."""
        validate = self.validation_enabled and self.options.validate_every and not self._validated_now()
        if validate:
            self._run_validation()
        if validate or self._last_saved_step != self.state.step:
            self.save_checkpoint()

    def _set_train_mode(self, mode: bool) -> None:
        for module in self.stage.trained.values():
            module.train(mode)
        self.stage.train(mode)

    # -------------------------------------------------------------------------- validation and checkpoints
    def _run_validation(self) -> None:
        """Score the model (rank 0) and log the values; they decide ``best.pt`` at the next checkpoint."""
        self._set_train_mode(False)
        with torch.no_grad():
            metrics = self.validate(distributed.unwrap(self.model)) if self.ctx.is_main and self.validate else {}
        metrics = distributed.broadcast_object(metrics)
        self._set_train_mode(True)
        self.state.metrics = dict(metrics)
        self._last_validated_step = self.state.step
        if metrics:
            self.logger.scalars(self.state.step, metrics, epoch=self.state.epoch)
            headline = {k: v for k, v in metrics.items() if k.count("/") <= 2 and k.endswith(("/sad", "relative_sad"))}
            self.logger.message(f"epoch {self.state.epoch}, step {self.state.step}: "
                                + ", ".join(f"{k}={v:.4g}" for k, v in (headline or metrics).items())
                                + " (all values in metrics.jsonl and TensorBoard)")

    def _validated_now(self) -> bool:
        return self._last_validated_step == self.state.step

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current state (rank 0 writes; every rank contributes its RNG state)."""
        state = training_state(self)  # collective: every rank must call it
        self.place.checkpoints.require_writable(state, self.state.step)  # every rank: all stop together
        path = None
        if self.ctx.is_main:  # best.pt only for weights whose score was measured (validated at this very step)
            score = self.state.metrics.get(self.options.best_metric) if self._validated_now() else None
            path, self.state.best = self.place.checkpoints.save_scored(state, self.state.step, score)
        self._last_saved_step = self.state.step
        distributed.barrier()
        return path

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint written by this loop (same stage and networks)."""
        load_networks_and_optimizers(self, state)
        self._resumed_interval = restore_run_state(self, state)
        self.state = LoopState(step=int(state["step"]), epoch=int(state["epoch"]),
                               batches_done=int(state["batches_done"]), best=state.get("best"),
                               metrics=dict(state.get("metrics") or {}))
        self._last_saved_step = self.state.step
