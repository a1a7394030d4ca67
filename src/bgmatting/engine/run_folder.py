"""What a training run reads from and writes to disk outside the loop: which checkpoint a launch resumes (and
so which run folder it writes to), which teacher stage real uses, and the final evaluation's reports.

Runs live in ``<outputs_root>/<stage>/<timestamp>/`` with ``checkpoints/`` (see ``engine.run_checkpoints``),
``metrics.jsonl``, ``tensorboard/``, ``eval/`` and ``summary.json``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bgmatting.engine import distributed
from bgmatting.engine.run_checkpoints import (
    CHECKPOINT_DIRNAME,
    CheckpointError,
    latest_in_run,
    latest_run_checkpoint,
    load_checkpoint,
    require_training_checkpoint,
    run_dir_of,
)
from bgmatting.engine.settings import Change, resume_changes
from bgmatting.engine.validation import for_inference
from bgmatting.evaluation import evaluate_suite, suite_table, write_learning_curves
from bgmatting.models.checkpoints import require_finite

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------- teacher
def resolve_teacher(teacher: str | None, outputs_root: str | Path) -> Path:
    """The teacher checkpoint: an explicit path (a file, or a run folder: its best.pt, else its newest step), or
    ``auto`` = the newest Adobe-stage run's best checkpoint under ``outputs_root``."""
    if teacher in (None, "", "auto"):
        found = latest_run_checkpoint(Path(outputs_root) / "adobe", prefer_best=True)
        if found is None:
            raise CheckpointError(
                f"stage=real needs a teacher: no Adobe-stage checkpoint under {Path(outputs_root) / 'adobe'}. "
                "Run `python -m bgmatting.train stage=adobe` first, or pass teacher=/path/to/checkpoint.pt")
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
    folder it writes to (the resumed run's own folder; this launch's for a checkpoint that lies in no run folder),
    and the config ``changes`` to apply (see :mod:`bgmatting.engine.settings`)."""

    path: Path | None
    state: dict | None
    run_dir: Path
    changes: list[Change] = field(default_factory=list)


def resolve_resume(cfg: DictConfig, config: dict, ctx: distributed.DistContext, run_dir: Path) -> Resume:
    """Find and load the checkpoint ``cfg.resume`` asks for (rank 0 decides, every rank loads); compare its
    config with this launch's resolved ``config`` (ConfigError for changes a resume cannot take) and its tensors
    (CheckpointError for NaN or infinity). Reads only: nothing is written."""
    stage_name = cfg.stage.name
    path = find_resume_checkpoint(cfg.resume, run_dir, Path(cfg.outputs_root) / stage_name) if ctx.is_main else None
    path = distributed.broadcast_object(path)
    if path is None:
        return Resume(None, None, run_dir)
    state = require_training_checkpoint(load_checkpoint(path), path)
    if state.get("stage") != stage_name:
        raise CheckpointError(f"{path} is a {state.get('stage')!r} checkpoint, not {stage_name!r}")
    require_finite(state, str(path), "the run cannot resume from it (resume=PATH picks an earlier checkpoint)")
    changes = resume_changes(state.get("config") or {}, config, str(path)) if state.get("config") else []
    for change in changes:
        log.info("resume: %s (applied)", change)
    owner = run_dir_of(path)
    if owner is None:
        log.info("resuming from %s, which lies in no run folder: the run continues in this launch's folder %s",
                 path, run_dir)
    elif owner != run_dir.resolve():
        log.info("resuming the run in %s (this launch's folder %s keeps only its config)", owner, run_dir)
        run_dir = owner
    return Resume(path, state, run_dir, changes)


# ------------------------------------------------------------------------------------------ final evaluation
def final_evaluation(cfg: DictConfig, trainer: Any, run_dir: Path, sets: dict) -> dict[str, Any]:
    """Score the trained model, both baselines and (stage real) the teacher on every set of ``sets`` (networks in
    the inference precision); write the reports, galleries and the learning curves into the run folder and print
    the table (saying how many of the planned steps ran); returns {set: scores}."""
    device = trainer.place.device  # scored as `evaluate` scores the checkpoints: in the inference precision
    teacher = getattr(trainer.stage, "teacher", None)  # stage=real: how far the stage moved from its teacher
    teacher = for_inference(teacher, device) if teacher is not None else None
    steps = f"{trainer.state.step} of {trainer.total_steps} steps"
    if trainer.stopped_by_time_limit:
        steps += f" (STOPPED by trainer.time_limit_minutes={cfg.trainer.time_limit_minutes})"
    scores = evaluate_suite(
        for_inference(trainer.model, device), sets,
        references={"teacher (adobe stage)": teacher} if teacher is not None else None, limit=cfg.evaluation.limit,
        output_dir=run_dir / "eval", gallery=int(cfg.evaluation.gallery), title=f"{cfg.stage.name} stage, {steps}",
    )
    print(f"\nHeld-out evaluation, {cfg.stage.name} stage after {steps} (DIM metrics on the trimap's unknown band; "
          f"reports and galleries in {run_dir / 'eval'}):\n{suite_table(scores)}", flush=True)
    if trainer.validation_enabled:
        write_learning_curves(run_dir / "metrics.jsonl", run_dir / "learning_curves.png",
                              title=f"{cfg.stage.name} stage: validation SAD (first {cfg.trainer.val_limit} images per set)")
    return {name: score.as_dict() for name, score in scores.items()}
