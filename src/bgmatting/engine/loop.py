"""The one training loop, shared by every stage.

The loop owns optimisation and bookkeeping: device transfer, autocast, backward with an optional
GradScaler, gradient clipping, optimiser and LR-schedule steps, NaN/inf checks, logging, validation,
checkpoints and exact resumption. What to optimise comes from the stage (``engine.stages``): per batch
it yields :class:`~bgmatting.engine.stages.Update` s (named loss terms + the optimiser to step).
"""
from __future__ import annotations

import copy
import hashlib
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
from bgmatting.engine.checkpointing import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    CheckpointManager,
    capture_rng_state,
    restore_rng_state,
)
from bgmatting.runtime import Precision
from bgmatting.engine.run_logging import RunLogger
from bgmatting.engine.sampling import ResumableDistributedSampler
from bgmatting.engine.stages import Stage, Update

log = logging.getLogger(__name__)

#: After this many steps of a run the loop announces how long the rest of its schedule will take.
ESTIMATE_AFTER_STEPS = 20


class NonFiniteLossError(FloatingPointError):
    """A loss term (or a gradient norm) became NaN or infinite; the message names the step and the term."""


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
    fail_at_step: int | None = None  # testing aid: raise RuntimeError after this step (simulated crash)

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
class _Meter:
    """Running sums of one :meth:`Trainer.fit` call: the current logging interval and the totals."""

    start_step: int = 0
    start: float = field(default_factory=time.perf_counter)
    last_log: float = field(default_factory=time.perf_counter)
    interval: dict[str, float] = field(default_factory=dict)
    interval_count: int = 0
    interval_samples: int = 0
    interval_wait: float = 0.0
    samples_seen: int = 0
    skipped: int = 0
    wait_total: float = 0.0
    step_time_total: float = 0.0

    def waited(self, seconds: float) -> None:
        self.wait_total += seconds
        self.interval_wait += seconds

    def stepped(self, scalars: dict[str, float] | None, samples: int) -> None:
        """Count a training step of ``samples`` samples (all ranks); ``scalars`` None = a step skipped as
        non-finite."""
        self.samples_seen += samples
        self.interval_samples += samples
        if scalars is None:
            self.skipped += 1
            return
        for k, v in scalars.items():
            self.interval[k] = self.interval.get(k, 0.0) + v
        self.interval_count += 1

    def new_interval(self, now: float) -> None:
        self.interval, self.interval_count, self.interval_samples, self.interval_wait = {}, 0, 0, 0.0
        self.last_log = now

    def interval_state(self) -> dict:
        """The loss sums of the unfinished logging interval (kept in checkpoints: a resumed run logs the same means)."""
        return {"sums": dict(self.interval), "count": self.interval_count}

    def resume_interval(self, state: dict | None) -> None:
        if state:
            self.interval, self.interval_count = dict(state["sums"]), int(state["count"])


def move_to_device(batch: dict, device: torch.device) -> dict:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}


def parameter_fingerprint(module: nn.Module) -> str:
    """SHA-256 of every parameter's bytes in name order: equal fingerprints = identical weights."""
    digest = hashlib.sha256()
    for name, param in sorted(distributed.unwrap(module).named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Trainer:
    """Runs a stage's updates over a data loader for a number of epochs, resumably.

    Args:
        stage: supplies ``networks`` (trained, possibly DDP-wrapped) and per-batch updates.
        optimizers / schedulers: by name, matching the names the stage's updates use; every scheduler steps once
            per training step (also for an optimiser, like the discriminator's, that does not step every time).
        loader / sampler: the training DataLoader and its :class:`ResumableDistributedSampler`.
        precision: autocast/layout mode; a GradScaler is used when it needs one (fp16 on CUDA).
        run_dir: checkpoints go to ``run_dir/checkpoints`` (rank 0 only).
        validate: optional ``callable(model) -> {"val/...": value}`` run every ``validate_every`` epochs on the
            bare :class:`~bgmatting.models.MattingModel` (in eval mode, without gradients).
        config: the resolved run configuration (plain dict), stored in checkpoints.
        batch_transform: optional device-side augmentation ``callable(batch, generator) -> batch`` (e.g.
            ``bgmatting.data.batch_augment.BackgroundPerturbation``), applied after the transfer to ``device``.
        seed: seeds the batch transform's generator (per rank).
        validation_enabled: whether validation runs at all; must be the same on every rank (``validate`` itself
            is only needed on rank 0). Default: ``validate is not None``.
    """

    def __init__(
        self,
        stage: Stage,
        optimizers: dict[str, torch.optim.Optimizer],
        loader: torch.utils.data.DataLoader,
        sampler: ResumableDistributedSampler,
        precision: Precision,
        device: torch.device,
        run_dir: str | Path,
        options: LoopOptions,
        ctx: distributed.DistContext = distributed.DistContext(),
        schedulers: dict[str, Any] | None = None,
        logger: RunLogger | None = None,
        checkpoints: CheckpointManager | None = None,
        validate: Callable[[nn.Module], dict[str, float]] | None = None,
        config: dict | None = None,
        batch_transform: Callable[[dict, torch.Generator], dict] | None = None,
        seed: int = 0,
        validation_enabled: bool | None = None,
    ):
        self.stage = stage
        self.optimizers = optimizers
        self.schedulers = schedulers or {}
        self.loader = loader
        self.sampler = sampler
        self.precision = precision
        self.device = device
        self.run_dir = Path(run_dir)
        self.options = options
        self.ctx = ctx
        self.logger = logger or RunLogger(self.run_dir, enabled=False)
        self.checkpoints = checkpoints or CheckpointManager(self.run_dir / "checkpoints")
        if ctx.is_main:
            for orphan in self.checkpoints.remove_orphans():
                log.info("removed %s, a partial checkpoint left by an interrupted write", orphan)
        self.validate = validate
        self.validation_enabled = (validate is not None) if validation_enabled is None else validation_enabled
        self.config = config or {}
        self.state = LoopState()
        self.batch_transform = batch_transform
        self.batch_rng = torch.Generator(device=device).manual_seed(seed + 7919 * (ctx.rank + 1))
        scaler_device = device.type if device.type in ("cuda", "cpu") else "cpu"
        self.scalers = {
            name: torch.amp.GradScaler(scaler_device, enabled=precision.needs_grad_scaler) for name in optimizers
        }
        self.batch_size = loader.batch_size
        self.steps_per_epoch = len(loader)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the training data gives no full batch: {len(sampler.dataset)} samples over "
                f"{ctx.world_size} process(es) with batch size {self.batch_size} (drop_last)"
            )
        self.history: list[dict[str, float]] = []  # per logged interval, for callers and tests
        self._meter: _Meter | None = None
        self._resumed_interval: dict | None = None
        self._consecutive_skips = 0
        self._last_saved_step: int | None = None
        self._last_validated_step: int | None = None
        self.stopped_by_time_limit = False  # set by fit() when trainer.time_limit_minutes cut the schedule

    # ------------------------------------------------------------------------------------------- totals
    @property
    def total_steps(self) -> int:
        total = self.options.epochs * self.steps_per_epoch
        return min(total, self.options.max_steps) if self.options.max_steps is not None else total

    @property
    def model(self) -> nn.Module:
        """The trained :class:`~bgmatting.models.MattingModel` (as the stage holds it: possibly DDP-wrapped)."""
        return self.stage.networks["generator"]

    # --------------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """Everything needed to continue exactly (see ``engine.checkpointing`` for the keys).

        The matting model's entries (``generator``, ``model_config``) come from
        :meth:`~bgmatting.models.MattingModel.checkpoint_state`, so :func:`bgmatting.models.load_generator` reads
        the file; the other networks' state dicts go under ``modules``.
        """
        networks = {
            name: distributed.unwrap(m).state_dict() for name, m in self.stage.networks.items() if name != "generator"
        }
        rng_per_rank = distributed.all_gather_object(
            {**capture_rng_state(), "batch_transform": self.batch_rng.get_state().cpu()}
        )
        stage_per_rank = distributed.all_gather_object(self.stage.state_dict())
        state = {
            "format": CHECKPOINT_FORMAT,
            "stage": self.stage.name,
            "step": self.state.step,
            "epoch": self.state.epoch,
            "batches_done": self.state.batches_done,
            "world_size": self.ctx.world_size,
            **distributed.unwrap(self.model).checkpoint_state(),
            "modules": networks,
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "grad_scalers": {name: s.state_dict() for name, s in self.scalers.items()},
            "stage_state": stage_per_rank,
            "rng": rng_per_rank,
            "best": self.state.best,
            "metrics": dict(self.state.metrics),
            "log_interval": self._meter.interval_state() if self._meter is not None else None,
            "config": self.config,
        }
        if "discriminator" in networks:  # also readable by bgmatting.models.load_discriminator
            state["discriminator"] = networks["discriminator"]
            discriminator = distributed.unwrap(self.stage.networks["discriminator"])
            if hasattr(discriminator, "config"):
                state["discriminator_config"] = discriminator.config
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint written by :meth:`state_dict` (same stage and networks)."""
        if state.get("stage") != self.stage.name:
            raise CheckpointError(f"checkpoint is of stage {state.get('stage')!r}, "
                                  f"this run is stage {self.stage.name!r}")
        try:
            distributed.unwrap(self.model).load_checkpoint_state(state)
            for name, module in self.stage.networks.items():
                if name != "generator":
                    distributed.unwrap(module).load_state_dict(state.get("modules", {})[name])
            for name, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
        except (KeyError, RuntimeError, ValueError) as error:  # torch reports size mismatches as RuntimeError
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise CheckpointError(f"the checkpoint's networks or optimisers do not fit this run's: {first}") from None
        for name, sched in self.schedulers.items():
            if name in state.get("schedulers", {}):
                sched.load_state_dict(state["schedulers"][name])
        for name, scaler in self.scalers.items():
            if state.get("grad_scalers", {}).get(name):
                scaler.load_state_dict(state["grad_scalers"][name])
        same_layout = state.get("world_size", 1) == self.ctx.world_size
        rank = self.ctx.rank if same_layout else 0
        if not same_layout:
            log.warning(
                "checkpoint was written by %s process(es), this run has %s: the data order and random streams "
                "continue from rank 0's state, so the run is not an exact continuation",
                state.get("world_size"),
                self.ctx.world_size,
            )
        restore_rng_state(state["rng"][rank])
        if "batch_transform" in state["rng"][rank]:
            self.batch_rng.set_state(state["rng"][rank]["batch_transform"])
        self.stage.load_state_dict(state["stage_state"][rank])
        self._resumed_interval = state.get("log_interval")
        self.state = LoopState(
            step=int(state["step"]),
            epoch=int(state["epoch"]),
            batches_done=int(state["batches_done"]),
            best=state.get("best"),
            metrics=dict(state.get("metrics") or {}),
        )
        self._last_saved_step = self.state.step

    def set_learning_rate(self, name: str, lr: float) -> None:
        """Give optimiser ``name`` the base learning rate ``lr`` (e.g. a resumed run's new ``optim.<name>.lr``);
        its schedule keeps its factor at the current step."""
        optimizer, scheduler = self.optimizers[name], self.schedulers.get(name)
        if scheduler is not None and not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            raise CheckpointError(f"cannot change the learning rate of {name!r} under {type(scheduler).__name__}")
        groups = optimizer.param_groups
        factors = [f(scheduler.last_epoch) for f in scheduler.lr_lambdas] if scheduler else [1.0] * len(groups)
        for group, factor in zip(groups, factors):
            group["initial_lr"], group["lr"] = lr, lr * factor
        if scheduler is not None:
            scheduler.base_lrs = [lr] * len(groups)
            scheduler._last_lr = [group["lr"] for group in groups]

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current state (rank 0 writes; every rank contributes its RNG state)."""
        state = self.state_dict()  # collective: every rank must call it
        self.checkpoints.require_writable(state, self.state.step)  # every rank: all stop together
        path = None
        if self.ctx.is_main:
            # best.pt only for weights whose score was measured (validated at this very step)
            value = self.state.metrics.get(self.options.best_metric) if self._validated_now() else None
            is_best = self.checkpoints.is_better(value, self.state.best)
            if is_best:
                self.state.best = value
                state["best"] = value
            path = self.checkpoints.save(state, self.state.step, is_best=is_best)
        self._last_saved_step = self.state.step
        distributed.barrier()
        return path

    def _validated_now(self) -> bool:
        return self._last_validated_step == self.state.step

    # ----------------------------------------------------------------------------------------- training
    def _set_train_mode(self, mode: bool) -> None:
        for module in self.stage.networks.values():
            module.train(mode)
        self.stage.train(mode)

    def _check_finite(self, update: Update, values: dict[str, float]) -> str | None:
        bad = [name for name, v in values.items() if not math.isfinite(v)]
        if not bad:
            return None
        return (
            f"non-finite loss at step {self.state.step + 1} (epoch {self.state.epoch}): "
            + ", ".join(f"term '{n}' = {values[n]}" for n in bad)
            + f" (optimiser '{update.optimizer}')"
        )

    def _optimize(self, update: Update) -> dict[str, float] | str:
        """Backward + clip + step for one update; returns logged scalars, or a problem description."""
        names = list(update.terms)
        values = dict(zip(names, torch.stack([update.terms[n].value.detach().float() for n in names]).tolist()))
        problem = self._check_finite(update, values)
        if problem:
            return problem
        optimizer = self.optimizers[update.optimizer]
        scaler = self.scalers[update.optimizer]
        optimizer.zero_grad(set_to_none=True)
        total = update.total()
        scaler.scale(total).backward()
        scalars = {f"loss/{n}": v for n, v in values.items()}
        scalars[f"loss/{update.optimizer}_total"] = float(total.detach())
        scalars.update({f"loss/{k}": v for k, v in update.extra.items()})
        if self.options.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.options.grad_clip_norm))
            scalars[f"grad_norm/{update.optimizer}"] = norm
            if not math.isfinite(norm) and not scaler.is_enabled():
                optimizer.zero_grad(set_to_none=True)
                return (
                    f"non-finite gradient norm at step {self.state.step + 1} (epoch {self.state.epoch}) "
                    f"for optimiser '{update.optimizer}'"
                )
        scaler.step(optimizer)
        scaler.update()
        return scalars

    def _snapshot(self) -> dict | None:
        """With ``nonfinite=skip``: a copy of all a step changes (weights, BatchNorm statistics, optimiser and
        scaler states), so that a skipped step can be undone completely; None otherwise."""
        if self.options.nonfinite != "skip":
            return None
        return {
            "networks": {name: {k: v.detach().clone() for k, v in distributed.unwrap(m).state_dict().items()}
                         for name, m in self.stage.networks.items()},
            "optimizers": {name: copy.deepcopy(opt.state_dict()) for name, opt in self.optimizers.items()},
            "scalers": {name: scaler.state_dict() for name, scaler in self.scalers.items()},
        }

    def _restore(self, snapshot: dict) -> None:
        """Undo a step: back to :meth:`_snapshot`'s state, gradients cleared."""
        for name, module in self.stage.networks.items():
            distributed.unwrap(module).load_state_dict(snapshot["networks"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(snapshot["optimizers"][name])
            opt.zero_grad(set_to_none=True)
        for name, scaler in self.scalers.items():
            if snapshot["scalers"][name]:
                scaler.load_state_dict(snapshot["scalers"][name])

    def train_step(self, batch: dict) -> dict[str, float] | None:
        """One batch through all of the stage's updates. Returns scalars, or None when the step was skipped: a
        skipped step leaves every network, optimiser and scaler exactly as before it (``nonfinite=skip``)."""
        snapshot = self._snapshot()
        updates = self.stage.updates(batch, self.state.step, self.state.epoch)
        scalars: dict[str, float] = {}
        while True:
            with self.precision.autocast():
                update = next(updates, None)
            if update is None:
                break
            result = self._optimize(update)
            if isinstance(result, str):
                updates.close()
                for opt in self.optimizers.values():
                    opt.zero_grad(set_to_none=True)
                if self.options.nonfinite == "stop":
                    raise NonFiniteLossError(
                        result + "; the run stopped and the last good checkpoint is kept "
                        f"({self.checkpoints.latest() or 'none written yet'}). Set trainer.nonfinite=skip to skip such steps."
                    )
                self._restore(snapshot)
                self._consecutive_skips += 1
                self.logger.message(f"skipping step: {result}")
                if self._consecutive_skips > self.options.max_skipped_steps:
                    raise NonFiniteLossError(f"{self._consecutive_skips} consecutive non-finite steps; last: {result}")
                return None
            scalars.update(result)
        for scheduler in self.schedulers.values():  # schedules count training steps, not each optimiser's steps
            scheduler.step()
        self._consecutive_skips = 0
        return scalars

    def fit(self) -> dict[str, Any]:
        """Train until ``epochs`` (or ``max_steps``) are done; returns a summary dict (on every rank)."""
        meter = self._meter = _Meter(start_step=self.state.step)
        meter.resume_interval(self._resumed_interval)
        self._resumed_interval = None
        start_step = self.state.step
        stopped_early = False
        while self.state.epoch < self.options.epochs and self.state.step < self.total_steps:
            stopped_early = self._train_epoch(meter)
            if stopped_early:
                self.stopped_by_time_limit = True
                self.logger.message(
                    f"time limit of {self.options.time_limit_minutes} min reached after step {self.state.step} of "
                    f"{self.total_steps}; stopping (the final evaluation says so too)"
                )
                break
            if self.state.batches_done < self.steps_per_epoch:
                break  # max_steps reached mid-epoch
            self._end_epoch()
        self._end_training()
        return self._summary(meter, start_step, stopped_early)

    def _train_epoch(self, meter: _Meter) -> bool:
        """Steps of the current epoch from where it stands; True when the time limit stopped it."""
        self._set_train_mode(True)
        self.sampler.set_epoch(self.state.epoch)
        self.sampler.set_start(self.state.batches_done * self.batch_size)
        batches = iter(self.loader)
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
            if self._out_of_time(meter.start):
                return True
        return False

    def _train_batch(self, batch: dict, meter: _Meter) -> None:
        """Transfer, batch transform and :meth:`train_step` of one batch, counted in ``meter``."""
        batch = move_to_device(batch, self.device)
        if self.batch_transform is not None:
            batch = self.batch_transform(batch, self.batch_rng)
        step_start = time.perf_counter()
        scalars = self.train_step(batch)
        meter.step_time_total += time.perf_counter() - step_start
        self.state.step += 1
        meter.stepped(scalars, batch["image"].shape[0] * self.ctx.world_size)
        self.logger.progress(1, {k.split("/")[-1]: v for k, v in (scalars or {}).items() if k.endswith("_total")})

    def _after_step(self, meter: _Meter) -> None:
        """Per-step bookkeeping: logged means, image grid, periodic checkpoint, simulated failure."""
        opts, step = self.options, self.state.step
        if step % opts.log_every == 0 or step == self.total_steps:
            self._log_interval(meter)
        if opts.image_every and step % opts.image_every == 0:
            self.logger.images(step, "train/grid", self.stage.visuals())
        ends_epoch_or_run = self.state.batches_done == self.steps_per_epoch or step == self.total_steps
        if opts.checkpoint_every and step % opts.checkpoint_every == 0 and not ends_epoch_or_run:
            self.save_checkpoint()  # an epoch's or the run's end saves after its validation, for best.pt
        if step - meter.start_step == ESTIMATE_AFTER_STEPS and step < self.total_steps:
            self._announce_duration(meter)
        if opts.fail_at_step is not None and step == opts.fail_at_step:
            raise RuntimeError(f"simulated failure after step {step} (trainer.fail_at_step)")

    def _announce_duration(self, meter: _Meter) -> None:
        """Say how long the rest of the schedule will take at the speed of the steps so far."""
        done = self.state.step - meter.start_step
        per_step = (time.perf_counter() - meter.start) / done
        remaining = self.total_steps - self.state.step
        self.logger.message(
            f"{per_step:.2f} s per step over the first {done} steps: about {per_step * remaining / 60:.1f} min for "
            f"the remaining {remaining} of {self.total_steps} steps (plus validation and the final evaluation)"
        )

    def _log_interval(self, meter: _Meter) -> None:
        """Log the means of the interval since the last log (losses, LRs, stage scalars, throughput)."""
        now = time.perf_counter()
        row = {k: v / max(meter.interval_count, 1) for k, v in meter.interval.items()}
        row.update({f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()})
        row.update({f"stage/{k}": v for k, v in self.stage.scalars(self.state.epoch).items()})
        elapsed = max(now - meter.last_log, 1e-9)
        row["perf/samples_per_s"] = meter.interval_samples / elapsed
        row["perf/data_wait_s"] = meter.interval_wait / max(meter.interval_count, 1)
        row["perf/data_wait_fraction"] = meter.interval_wait / elapsed
        self.logger.scalars(self.state.step, row, epoch=self.state.epoch)
        self.history.append({"step": self.state.step, **row})
        meter.new_interval(now)

    def _end_epoch(self) -> None:
        """Count the finished epoch, validate when due, and checkpoint (unless this step already has one)."""
        opts = self.options
        self.state.epoch += 1
        self.state.batches_done = 0
        if self.validation_enabled and opts.validate_every and self.state.epoch % opts.validate_every == 0:
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

    def _summary(self, meter: _Meter, start_step: int, stopped_early: bool) -> dict[str, Any]:
        elapsed = time.perf_counter() - meter.start
        fingerprints = distributed.all_gather_object(parameter_fingerprint(self.model))
        if len(set(fingerprints)) > 1:
            log.warning("model weights differ between ranks at the end of training: %s", fingerprints)
        self.logger.flush()
        return {
            "stage": self.stage.name,
            "steps": self.state.step,
            "steps_this_run": self.state.step - start_step,
            "epochs_completed": self.state.epoch,
            "world_size": self.ctx.world_size,
            "skipped_steps": meter.skipped,
            "stopped_by_time_limit": stopped_early,
            "seconds": elapsed,
            "samples_per_s": meter.samples_seen / elapsed if elapsed > 0 else float("nan"),
            "train_samples_per_s": meter.samples_seen / meter.step_time_total if meter.step_time_total > 0 else float("nan"),
            "data_wait_fraction": meter.wait_total / elapsed if elapsed > 0 else float("nan"),
            "last_losses": self.history[-1] if self.history else {},
            "validation": dict(self.state.metrics),
            "best": self.state.best,
            "checkpoint": str(self.checkpoints.step_path(self.state.step)),
            "generator_fingerprints": fingerprints,
        }

    def _out_of_time(self, start: float) -> bool:
        """Whether the time limit is used up (rank 0 decides, so every rank stops at the same step)."""
        if self.options.time_limit_minutes is None:
            return False
        expired = (time.perf_counter() - start) / 60.0 >= self.options.time_limit_minutes
        return bool(distributed.broadcast_object(expired))

    def _run_validation(self) -> None:
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
            self.logger.message(
                f"epoch {self.state.epoch}, step {self.state.step}: "
                + ", ".join(f"{k}={v:.4g}" for k, v in (headline or metrics).items())
                + " (all values in metrics.jsonl and TensorBoard)"
            )
