"""Training checkpoints: atomic writes, keep-last-N plus best-by-validation, RNG capture, discovery.

A checkpoint is a plain dict saved with ``torch.save`` and loaded with ``weights_only=True`` (never
executes pickled code). Keys written by the training loop:

``format``, ``stage``, ``step``, ``epoch``, ``batches_done`` (in the current epoch), ``generator`` (state
dict), ``model_config`` (Generator kwargs; with ``generator`` this is what ``bgmatting.models.load_generator``
reads), ``modules`` (other trained networks, e.g. ``discriminator``), ``optimizers``, ``schedulers``,
``grad_scalers``, ``stage_state`` (e.g. the stage's own RNG), ``rng`` (python / numpy / torch / cuda),
``best`` (best validation value so far), ``metrics`` (last validation), ``log_interval`` (loss sums of the
unfinished logging interval), ``config`` (resolved config).
A state holding a NaN or infinite tensor is never written.
"""
from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bgmatting.io import atomic_path
from bgmatting.engine import distributed
from bgmatting.models.checkpoints import (  # one error type for every checkpoint problem
    CheckpointError,
    read_weights_file,
    require_finite,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "bgmatting.train/1"
CHECKPOINT_DIRNAME = "checkpoints"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
BEST_NAME = "best.pt"
#: Temporaries of checkpoint writes (``bgmatting.io.atomic_path``): left behind only when a write was killed.
_ORPHAN = re.compile(r"^\.(step_\d+\.pt|best\.pt)\..+\.tmp$")


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    with atomic_path(path, fsync=True) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict safely (``weights_only=True``); clear error for missing or foreign files."""
    state = read_weights_file(path, map_location)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def require_training_checkpoint(state: dict, path: str | os.PathLike) -> dict:
    """Check that ``state`` was written by the training loop (needed to resume, not just to load weights)."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a bgmatting training checkpoint (format {state.get('format')!r}); "
            "it can initialise a generator but not resume a run"
        )
    return state


# ----------------------------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict:
    """Python, numpy and torch (CPU + CUDA) global RNG states in a ``weights_only``-loadable form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# --------------------------------------------------------------------------------------- a trainer's state
def training_state(trainer: Any) -> dict:
    """Everything a :class:`~bgmatting.engine.loop.Trainer` needs to continue exactly (the keys of the module
    docstring); collective under DDP (every rank contributes its RNG and stage state).

    The matting model's entries (``generator``, ``model_config``, with a refiner ``refiner`` ...) come from
    :meth:`~bgmatting.models.MattingModel.checkpoint_state`, so :func:`bgmatting.models.load_matting_model` reads
    the file; the other trained networks' state dicts go under ``modules`` (the discriminator also under
    ``discriminator``, with its ``discriminator_config``, for :func:`bgmatting.models.load_discriminator`).
    """
    trained = trainer.stage.trained
    networks = {name: distributed.unwrap(m).state_dict() for name, m in trained.items() if name != "generator"}
    rng = distributed.all_gather_object({**capture_rng_state(), "batch_transform": trainer.batch_rng.get_state().cpu()})
    state = {
        "format": CHECKPOINT_FORMAT,
        "stage": trainer.stage.name,
        "step": trainer.state.step,
        "epoch": trainer.state.epoch,
        "batches_done": trainer.state.batches_done,
        "world_size": trainer.ctx.world_size,
        **distributed.unwrap(trainer.model).checkpoint_state(),
        "modules": networks,
        "optimizers": {name: opt.state_dict() for name, opt in trainer.optimizers.items()},
        "schedulers": {name: s.state_dict() for name, s in trainer.schedulers.items()},
        "grad_scalers": {name: s.state_dict() for name, s in trainer.scalers.items()},
        "stage_state": distributed.all_gather_object(trainer.stage.state_dict()),
        "rng": rng,
        "best": trainer.state.best,
        "metrics": dict(trainer.state.metrics),
        "log_interval": trainer.meter.interval_state() if trainer.meter is not None else None,
        "config": trainer.config,
    }
    if "discriminator" in networks:
        state["discriminator"] = networks["discriminator"]
        discriminator = distributed.unwrap(trained["discriminator"])
        if hasattr(discriminator, "config"):
            state["discriminator_config"] = discriminator.config
    return state


def load_networks_and_optimizers(trainer: Any, state: dict) -> None:
    """Load the trained networks' and optimisers' states of a :func:`training_state`; CheckpointError (one line)
    when they do not fit this run's (another architecture, another optimiser layout)."""
    if state.get("stage") != trainer.stage.name:
        raise CheckpointError(f"checkpoint is of stage {state.get('stage')!r}, this run is stage {trainer.stage.name!r}")
    try:
        distributed.unwrap(trainer.model).load_checkpoint_state(state)
        for name, module in trainer.stage.trained.items():
            if name != "generator":
                distributed.unwrap(module).load_state_dict(state.get("modules", {})[name])
        for name, opt in trainer.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
    except (KeyError, RuntimeError, ValueError) as error:  # torch reports size mismatches as RuntimeError
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise CheckpointError(f"the checkpoint's networks or optimisers do not fit this run's: {first}") from None


def restore_run_state(trainer: Any, state: dict) -> dict | None:
    """Restore schedules, grad scalers, random streams (this rank's; rank 0's under another world size) and the
    stage's state of a :func:`training_state`; returns its unfinished logging interval."""
    for name, sched in trainer.schedulers.items():
        if name in state.get("schedulers", {}):
            sched.load_state_dict(state["schedulers"][name])
    for name, scaler in trainer.scalers.items():
        if state.get("grad_scalers", {}).get(name):
            scaler.load_state_dict(state["grad_scalers"][name])
    same_layout = state.get("world_size", 1) == trainer.ctx.world_size
    rank = trainer.ctx.rank if same_layout else 0
    if not same_layout:
        log.warning("checkpoint was written by %s process(es), this run has %s: the data order and random streams "
                    "continue from rank 0's state, so the run is not an exact continuation",
                    state.get("world_size"), trainer.ctx.world_size)
    restore_rng_state(state["rng"][rank])
    if "batch_transform" in state["rng"][rank]:
        trainer.batch_rng.set_state(state["rng"][rank]["batch_transform"])
    trainer.stage.load_state_dict(state["stage_state"][rank])
    return state.get("log_interval")


# ------------------------------------------------------------------------------------------ the manager
class CheckpointManager:
    """Writes ``step_XXXXXXXX.pt`` files into ``directory``, keeps the last ``keep_last`` and ``best.pt``.

    ``mode`` is ``"min"`` or ``"max"`` for the validation value that decides ``best.pt``.
    """

    def __init__(self, directory: str | os.PathLike, keep_last: int = 3, mode: str = "min"):
        if keep_last < 1:
            raise ValueError("keep_last must be >= 1")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.mode = mode

    def step_path(self, step: int) -> Path:
        return self.directory / f"step_{step:08d}.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / BEST_NAME

    def is_better(self, value: float | None, best: float | None) -> bool:
        if value is None or not np.isfinite(value):
            return False
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best

    def require_writable(self, state: dict, step: int) -> None:
        """CheckpointError naming the tensors when ``state`` holds NaN or infinity: such a checkpoint is never
        written (the newest good one stays the latest)."""
        kept = self.latest()
        require_finite(state, str(self.step_path(step)),
                       "not written, " + (f"the last good checkpoint {kept} is kept" if kept else "no checkpoint yet"))

    def save(self, state: dict, step: int, is_best: bool = False) -> Path:
        """Write the checkpoint of ``step`` atomically (refused when :meth:`require_writable` objects); refresh
        ``best.pt`` when ``is_best``; prune old files."""
        self.require_writable(state, step)
        path = atomic_save(state, self.step_path(step))
        if is_best:
            self._publish_best(path)
        self.prune()
        return path

    def save_scored(self, state: dict, step: int, score: float | None) -> tuple[Path, float | None]:
        """:meth:`save`, publishing ``best.pt`` when ``score`` beats ``state["best"]`` (the score then becomes the
        state's best); returns the path and the best score."""
        is_best = self.is_better(score, state.get("best"))
        if is_best:
            state["best"] = score
        return self.save(state, step, is_best=is_best), state.get("best")

    def _publish_best(self, path: Path) -> None:
        with atomic_path(self.best_path) as tmp:
            tmp.unlink()
            try:
                os.link(path, tmp)  # same bytes, no copy
            except OSError:
                shutil.copyfile(path, tmp)

    def step_files(self) -> list[tuple[int, Path]]:
        """(step, path) of every step checkpoint, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            match = _STEP_FILE.match(entry.name)
            if match:
                found.append((int(match.group(1)), entry))
        return sorted(found)

    def latest(self) -> Path | None:
        files = self.step_files()
        return files[-1][1] if files else None

    def remove_orphans(self) -> list[Path]:
        """Delete partial checkpoints (temporaries of writes killed before their rename); returns them. Call it
        only when no other process writes into this folder (the training loop does, at its start)."""
        if not self.directory.is_dir():
            return []
        orphans = sorted(p for p in self.directory.iterdir() if _ORPHAN.match(p.name) and p.is_file())
        for path in orphans:
            path.unlink(missing_ok=True)
        return orphans

    def prune(self) -> None:
        for _, path in self.step_files()[: -self.keep_last]:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- discovery
def latest_in_run(run_dir: str | os.PathLike) -> Path | None:
    """Newest step checkpoint of one run directory, or None."""
    return CheckpointManager(Path(run_dir) / CHECKPOINT_DIRNAME).latest()


def latest_run_checkpoint(stage_dir: str | os.PathLike, prefer_best: bool = False, exclude: Path | None = None) -> Path | None:
    """Newest checkpoint among the run folders of ``stage_dir`` (e.g. ``outputs/adobe``).

    Runs are ordered by the modification time of their newest checkpoint. With ``prefer_best`` the chosen
    run's ``best.pt`` is returned when it exists, else its newest step file.
    """
    stage_dir = Path(stage_dir)
    if not stage_dir.is_dir():
        return None
    candidates = []
    for run_dir in stage_dir.iterdir():
        if not run_dir.is_dir() or (exclude is not None and run_dir.resolve() == Path(exclude).resolve()):
            continue
        latest = latest_in_run(run_dir)
        if latest is not None:
            candidates.append((latest.stat().st_mtime, latest))
    if not candidates:
        return None
    newest = max(candidates)[1]
    best = newest.parent / BEST_NAME
    return best if prefer_best and best.is_file() else newest


#: Files a training run writes beside its ``checkpoints/`` folder: one of them marks a folder as a run's.
RUN_MARKERS = ("metrics.jsonl", ".hydra", "tensorboard")


def run_dir_of(checkpoint: str | os.PathLike) -> Path | None:
    """The run folder a checkpoint file belongs to (``<run>/checkpoints/step_*.pt`` -> ``<run>``, where ``<run>``
    holds one of :data:`RUN_MARKERS`); None for a checkpoint anywhere else (a copied or downloaded file)."""
    checkpoint = Path(checkpoint).resolve()
    run = checkpoint.parent.parent
    if checkpoint.parent.name == CHECKPOINT_DIRNAME and any((run / marker).exists() for marker in RUN_MARKERS):
        return run
    return None
