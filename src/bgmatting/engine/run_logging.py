"""What a training run reports: TensorBoard scalars and image grids (columns labelled), a JSON-lines log, and a
progress bar.

Only the main process (rank 0) writes; other ranks get a :class:`RunLogger` with ``enabled=False`` whose
methods do nothing. ``metrics.jsonl`` holds one JSON object per logged step (``{"step", "epoch", ...scalars}``)
so runs can be compared without TensorBoard.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from bgmatting.io import write_text
from bgmatting.engine.distributed import all_gather_object, unwrap

log = logging.getLogger(__name__)

GRID_ORDER = (
    "image",
    "captured_background",
    "segmentation",
    "motion",
    "alpha_pred",
    "alpha_reference",
    "foreground_pred",
    "composite_pred",
)


PADDING = 2


def column_labels(names: list[str], tile_width: int, padding: int = PADDING) -> torch.Tensor:
    """A white strip 3 x h x W' with each name written (black, shrunk to fit) above its column of a
    :func:`torchvision.utils.make_grid` of ``len(names)`` columns of ``tile_width`` px."""
    width = padding + len(names) * (tile_width + padding)
    height = max(12, min(24, tile_width // 6))
    strip = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for column, name in enumerate(names):
        scale = 0.4 * height / 14
        (text_w, text_h), _ = cv2.getTextSize(name, font, scale, 1)
        if text_w > tile_width - 2:
            scale *= (tile_width - 2) / text_w
            (text_w, text_h), _ = cv2.getTextSize(name, font, scale, 1)
        left = padding + column * (tile_width + padding) + max(0, (tile_width - text_w) // 2)
        cv2.putText(strip, name, (left, (height + text_h) // 2), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return torch.from_numpy(strip).permute(2, 0, 1).float() / 255.0


def image_grid(visuals: dict[str, torch.Tensor], order: tuple[str, ...] = GRID_ORDER) -> torch.Tensor:
    """One row per sample, one column per visual (``order`` first, others after), under a strip naming the
    columns: 3 x H' x W' in [0, 1].

    ``visuals``: name -> B x C x H x W in [0, 1], C in {1, 3} (1-channel maps are shown as gray).
    """
    names = [n for n in order if n in visuals] + [n for n in visuals if n not in order]
    if not names:
        raise ValueError("image_grid: no visuals")
    columns = []
    for name in names:
        v = visuals[name].detach().float().cpu().clamp(0, 1)
        columns.append(v.expand(-1, 3, -1, -1) if v.shape[1] == 1 else v[:, :3])
    rows = torch.stack(columns, dim=1).flatten(0, 1)  # sample-major: row i = sample i's visuals
    grid = make_grid(rows, nrow=len(names), padding=PADDING, pad_value=1.0)
    return torch.cat([column_labels(names, rows.shape[-1]), grid], dim=1)


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep the rows of ``metrics.jsonl`` up to ``last_step`` (and drop a torn last line), atomically."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= last_step:
            kept.append(line + "\n")
    write_text(path, "".join(kept))


class RunLogger:
    """TensorBoard + ``metrics.jsonl`` + tqdm progress, for the main process only.

    Args:
        run_dir: where ``tensorboard/`` and ``metrics.jsonl`` go.
        enabled: False on non-main ranks (then nothing is written or shown).
        tensorboard: write TensorBoard event files.
        progress: show a tqdm bar (with ETA) on the console.
        total_steps / initial_step: for the progress bar. A run resumed from the checkpoint of step
            ``initial_step`` first drops what the interrupted run logged after that step (TensorBoard events
            and ``metrics.jsonl`` rows of later steps), so its logs equal an uninterrupted run's.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        enabled: bool = True,
        tensorboard: bool = True,
        progress: bool = True,
        total_steps: int | None = None,
        initial_step: int = 0,
    ):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._writer = None
        self._bar = None
        self._jsonl = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if initial_step > 0:
            truncate_jsonl(self.run_dir / "metrics.jsonl", initial_step)
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imports TensorBoard (~1 s): only when asked for

            # purge_step: events at steps >= it are dropped; the resumed checkpoint's own step stays
            self._writer = SummaryWriter(
                log_dir=str(self.run_dir / "tensorboard"), purge_step=initial_step + 1 if initial_step > 0 else None
            )
        if progress:
            self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True, desc="train")

    def scalars(self, step: int, values: dict[str, float], epoch: int | None = None, record: bool = True) -> None:
        """Log scalars (names like ``loss/alpha``) at ``step`` to TensorBoard and, with ``record``, to the JSONL."""
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in values.items()}
        if self._writer is not None:
            for name, value in clean.items():
                if math.isfinite(value):
                    self._writer.add_scalar(name, value, step)
        if record and self._jsonl is not None:
            row = {"step": step, **({"epoch": epoch} if epoch is not None else {}), **clean}
            self._jsonl.write(json.dumps(row) + "\n")
            self._jsonl.flush()

    def images(self, step: int, tag: str, visuals: dict[str, torch.Tensor]) -> None:
        if not self.enabled or self._writer is None or not visuals:
            return
        self._writer.add_image(tag, image_grid(visuals), step)

    def progress(self, steps: int = 1, postfix: dict[str, float] | None = None) -> None:
        if not self.enabled or self._bar is None:
            return
        self._bar.update(steps)
        if postfix:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def message(self, text: str) -> None:
        """An INFO line on the Python log (console and Hydra's train.log; the loop routes it around the bar)."""
        if self.enabled:
            log.info(text)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


@dataclass
class Meter:
    """Running sums of one training call: the current logging interval (loss sums, samples, data wait) and
    the totals (samples, skipped steps, data wait, step time)."""

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

    def interval_row(self, now: float) -> dict[str, float]:
        """The interval's loss means and throughput (``perf/*``), then a new interval starts at ``now``."""
        row = {k: v / max(self.interval_count, 1) for k, v in self.interval.items()}
        elapsed = max(now - self.last_log, 1e-9)
        row["perf/samples_per_s"] = self.interval_samples / elapsed
        row["perf/data_wait_s"] = self.interval_wait / max(self.interval_count, 1)
        row["perf/data_wait_fraction"] = self.interval_wait / elapsed
        self.interval, self.interval_count, self.interval_samples, self.interval_wait = {}, 0, 0, 0.0
        self.last_log = now
        return row

    def interval_state(self) -> dict:
        """The loss sums of the unfinished logging interval (kept in checkpoints: a resumed run logs the same means)."""
        return {"sums": dict(self.interval), "count": self.interval_count}

    def resume_interval(self, state: dict | None) -> None:
        if state:
            self.interval, self.interval_count = dict(state["sums"]), int(state["count"])

    def minutes(self) -> float:
        """Minutes since the start."""
        return (time.perf_counter() - self.start) / 60.0

    def duration_estimate(self, step: int, total_steps: int) -> str:
        """How long the rest of the schedule takes at the speed of the steps since ``start_step``."""
        done = step - self.start_step
        per_step = (time.perf_counter() - self.start) / done
        remaining = total_steps - step
        return (f"{per_step:.2f} s per step over the first {done} steps: about {per_step * remaining / 60:.1f} min "
                f"for the remaining {remaining} of {total_steps} steps (plus validation and the final evaluation)")

    def totals(self) -> dict[str, float]:
        """Seconds since the start, samples per second (overall and while stepping), share of time waiting for data."""
        elapsed = time.perf_counter() - self.start
        return {
            "seconds": elapsed,
            "samples_per_s": self.samples_seen / elapsed if elapsed > 0 else float("nan"),
            "train_samples_per_s": (self.samples_seen / self.step_time_total if self.step_time_total > 0
                                    else float("nan")),
            "data_wait_fraction": self.wait_total / elapsed if elapsed > 0 else float("nan"),
        }


def parameter_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes in name order: equal fingerprints = identical weights."""
    digest = hashlib.sha256()
    for name, param in sorted(unwrap(module).named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def run_summary(trainer, meter: Meter) -> dict:
    """What a finished :meth:`~bgmatting.engine.loop.Trainer.fit` reports (``summary.json``'s training part);
    collective under DDP (every rank's weights are fingerprinted: they must be equal)."""
    fingerprints = all_gather_object(parameter_fingerprint(trainer.model))
    if len(set(fingerprints)) > 1:
        log.warning("model weights differ between ranks at the end of training: %s", fingerprints)
    state = trainer.state
    return {"stage": trainer.stage.name, "steps": state.step, "steps_this_run": state.step - meter.start_step,
            "epochs_completed": state.epoch, "world_size": trainer.ctx.world_size, "skipped_steps": meter.skipped,
            "stopped_by_time_limit": trainer.stopped_by_time_limit, **meter.totals(),
            "last_losses": trainer.history[-1] if trainer.history else {}, "validation": dict(state.metrics),
            "best": state.best, "checkpoint": str(trainer.place.checkpoints.step_path(state.step)),
            "generator_fingerprints": fingerprints}
