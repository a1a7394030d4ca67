"""Shared fixtures. The real Hydra configs are composed here, once: the package ``bgmatting.configs`` (the
repository's configs/, found as a package resource exactly as the commands find it)."""
from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_MODULE = "bgmatting.configs"

# A tiny model on tiny synthetic data (generated in seconds): a fast run of either stage, by the command line
# or in process. Outputs and the data cache go to folders the test chooses.
TINY_RUN = ["model=tiny", "logging=quiet", "trainer.batch_size=2", "trainer.val_limit=2", "evaluation.limit=2",
            "cpu_threads=1", "trainer.validate_every=1"]
TINY_DATA = {
    "adobe": ["data.generation.n_fg=3", "data.generation.n_bg=4", "data.generation.size=48",
              "data.generation.n_test_fg=1", "data.generation.n_test_bg=2", "data.train.samples_per_fg=2",
              "data.train.augment.output_size=32",
              # the held-out photo set at one tiny scale of 2 scenes instead of 4 scales of 32
              "evaluation.sets.photo_96.size=32", "evaluation.sets.photo_96.n_scenes=2", "~evaluation.sets.photo_128",
              "~evaluation.sets.photo_192", "~evaluation.sets.photo_256",
              # the capture set at one tiny size: 2 stills, a network crop of 64 px instead of 512
              "evaluation.sets.captures_256.size=48", "+evaluation.sets.captures_256.n_stills=2",
              "+evaluation.sets.captures_256.n_clips=0", "+evaluation.sets.captures_256.network_size=64",
              "~evaluation.sets.captures_512"],
    "real": ["data.generation.n_clips=2", "data.generation.n_frames=6", "data.generation.frame_size=[48,64]",
             "data.generation.n_targets=2", "data.train.size=32", "data.train.motion_offsets=[-2,-1,1,2]",
             "data.val.n_clips=1", "data.val.n_targets=2", "data.val.size=32",
             # the capture set at one tiny size, as in the adobe stage's tiny run
             "evaluation.sets.captures_256.size=48", "+evaluation.sets.captures_256.n_stills=2",
             "+evaluation.sets.captures_256.n_clips=0", "+evaluation.sets.captures_256.network_size=64",
             "~evaluation.sets.captures_512"],
}


@functools.lru_cache(maxsize=None)
def _composed(config_name: str, overrides: tuple[str, ...], hydra_config: bool) -> DictConfig:
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3", job_name="test"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=hydra_config)


def _compose(config_name: str, overrides=(), hydra_config: bool = False) -> DictConfig:
    """A fresh copy of the composed config (each composition is made once per session)."""
    return copy.deepcopy(_composed(config_name, tuple(overrides), hydra_config))


@pytest.fixture(scope="session")
def compose_config():
    """``compose_config(name, overrides=(), hydra_config=False)``: configs/<name>.yaml composed with Hydra."""
    return _compose


@pytest.fixture(scope="session")
def tiny_train_overrides():
    """``tiny_train_overrides(stage, outputs, cache)``: command-line overrides for a tiny run of ``stage``."""

    def overrides(stage: str, outputs: Path, cache: Path) -> list[str]:
        return [f"stage={stage}", *TINY_RUN, *TINY_DATA[stage], f"outputs_root={outputs}", f"data.cache_dir={cache}"]

    return overrides


@pytest.fixture
def cfg_train(tmp_path, tiny_train_overrides):
    """``cfg_train(stage="adobe", *overrides)``: the composed tiny training config, writing under ``tmp_path``."""

    def make(stage: str = "adobe", *overrides: str) -> DictConfig:
        tiny = tiny_train_overrides(stage, tmp_path / "outputs", tmp_path / "cache")
        return _compose("train", [*tiny, *overrides])

    return make


@pytest.fixture(scope="session")
def run_module():
    """``run_module(module, args, cwd, timeout=240, launcher=())``: ``python [launcher] -m module args`` with this
    checkout's sources first on the path; asserts exit status 0 and returns the finished process."""

    def run(module: str, args: list[str], cwd: Path, timeout: int = 240, launcher: tuple[str, ...] = ()):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": "1"}
        env.pop("BGM_RUN_STAMP", None)
        command = [sys.executable, *launcher, "-m", module, *args]
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, (f"{' '.join(command)}\nstdout:\n{result.stdout[-3000:]}\n"
                                        f"stderr:\n{result.stderr[-5000:]}")
        return result

    return run


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
