"""Fixtures for engine tests: tiny in-memory datasets and a composed training config."""
from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from bgmatting.engine.loop import Trainer
from bgmatting.engine.training import run_training


def _soft_disk(size: int, cx: float, cy: float, radius: float, softness: float = 2.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    distance = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    return np.clip((radius - distance) / softness + 0.5, 0.0, 1.0).astype(np.float32)


class TinySupervised(Dataset):
    """Supervised samples (sample dict of the data package) drawn with numpy's *global* RNG.

    Used through ``SeededSamples``, which seeds that RNG per (seed, epoch, index). ``nan_at`` puts NaNs
    in the image of that index; ``broken_at`` raises a file error for that index.
    """

    def __init__(self, length: int = 8, size: int = 32, nan_at: int | None = None, broken_at: int | None = None):
        self.length, self.size, self.nan_at, self.broken_at = length, size, nan_at, broken_at

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if index == self.broken_at:
            raise OSError(f"/data/tiny/fg_{index:03d}.png: truncated PNG file")
        s = self.size
        alpha = _soft_disk(s, *np.random.uniform(s * 0.35, s * 0.65, 2), np.random.uniform(s * 0.15, s * 0.3))
        fg = np.random.uniform(0.3, 1.0, (3, 1, 1)).astype(np.float32) * np.ones((3, s, s), np.float32)
        ramp = np.linspace(0, 1, s, dtype=np.float32)[None, None, :]
        bg = np.clip(np.random.uniform(0, 0.6, (3, 1, 1)) + 0.3 * ramp, 0, 1).astype(np.float32) * np.ones((3, s, s), np.float32)
        image = alpha[None] * fg + (1 - alpha[None]) * bg
        if index == self.nan_at:
            image = image * np.nan
        captured = np.clip(bg + np.random.normal(0, 0.02, bg.shape), 0, 1).astype(np.float32)
        seg = (alpha > 0.5).astype(np.float32)[None]
        gray = image.mean(axis=0, keepdims=True)
        trimap = np.where(alpha >= 1, 255, np.where(alpha <= 0, 0, 128)).astype(np.uint8)[None]
        return {
            "image": torch.from_numpy(image.astype(np.float32)),
            "background": torch.from_numpy(captured),
            "background_clean": torch.from_numpy(bg),
            "segmentation": torch.from_numpy(seg),
            "motion": torch.from_numpy(np.repeat(gray, 4, axis=0).astype(np.float32)),
            "alpha": torch.from_numpy(alpha[None]),
            "foreground": torch.from_numpy(fg),
            "trimap": torch.from_numpy(trimap),
        }


class TinyReal(Dataset):
    """Real-capture samples: image, background, segmentation, motion, target_background, clip."""

    def __init__(self, length: int = 8, size: int = 32):
        self.supervised = TinySupervised(length, size)

    def __len__(self) -> int:
        return len(self.supervised)

    def __getitem__(self, index: int) -> dict:
        sample = self.supervised[index]
        s = self.supervised.size
        target = torch.from_numpy(np.random.uniform(0, 1, (3, 1, 1)).astype(np.float32)).expand(3, s, s).clone()
        return {
            "image": sample["image"],
            "background": sample["background"],
            "segmentation": sample["segmentation"],
            "motion": sample["motion"],
            "target_background": target,
            "clip": torch.tensor(index % 2, dtype=torch.int64),
        }


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded, and do not suffer when other processes share the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def crash_after():
    """``with crash_after(n): run_training(...)``: the run raises ``RuntimeError("simulated failure after step
    n")`` right after step n's bookkeeping (logging, periodic checkpoint), as a killed job would stop there."""

    @contextlib.contextmanager
    def armed(step: int):
        after_step = Trainer._after_step

        def crashing(trainer, meter):
            after_step(trainer, meter)
            if trainer.state.step == step:
                raise RuntimeError(f"simulated failure after step {step}")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Trainer, "_after_step", crashing)
            yield

    return armed


@pytest.fixture
def tiny_supervised():
    return TinySupervised


@pytest.fixture
def tiny_real():
    return TinyReal


TINY_OVERRIDES = [
    "model=tiny",
    "logging=quiet",
    "trainer.batch_size=2",
    "trainer.epochs=1",
    "trainer.validate_every=1",  # the quickstart validates every 4 epochs; these tests run 1-3 epochs
    "evaluation.enabled=false",
]


@pytest.fixture
def tiny_cfg(tmp_path, compose_config):
    """Factory: a composed tiny config writing under ``tmp_path/outputs``."""

    def make(*overrides: str):
        return compose_config("train", [*TINY_OVERRIDES, f"outputs_root={tmp_path / 'outputs'}", *overrides])

    return make


@pytest.fixture
def adobe_teacher(tmp_path, tiny_cfg):
    """A finished tiny Adobe-stage run (2 steps) under tmp_path/outputs/adobe/run; returns its summary."""
    cfg = tiny_cfg("trainer.max_steps=2", "trainer.validate_every=0")
    return run_training(cfg, tmp_path / "outputs" / "adobe" / "run", train_dataset=TinySupervised(4, 32))


def finite(x: float) -> bool:
    return math.isfinite(x)
