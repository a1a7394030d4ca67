"""``python -m bgmatting.train stage=adobe|real [overrides]``: train one stage (Hydra main; thin).

Multi-process: ``torchrun --nproc_per_node=N -m bgmatting.train ...`` runs DDP; every rank joins the process
group before Hydra starts, so all ranks share rank 0's run folder. ``--help`` lists the config groups and common
overrides; the options are in configs/train.yaml (the package ``bgmatting.configs``, shipped inside the wheel).
Bad input (config values, checkpoints, teacher, data, an unwritable outputs root): one line on stderr, exit 2.
"""
from __future__ import annotations

import os
from datetime import datetime

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bgmatting.cli import fail
from bgmatting.data.io import DataError
from bgmatting.engine import distributed
from bgmatting.engine.checkpointing import CheckpointError
from bgmatting.engine.nonfinite import NonFiniteLossError
from bgmatting.engine.sampling import SampleError
from bgmatting.engine.settings import ConfigError
from bgmatting.engine.training import run_training


#: Errors that are the user's to fix (one line, exit status 2); a non-finite loss ends the run (one line, status 1).
USER_ERRORS = (ConfigError, CheckpointError, DataError, SampleError)


@hydra.main(version_base="1.3", config_path="pkg://bgmatting.configs", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        run_training(cfg, HydraConfig.get().runtime.output_dir)
    except USER_ERRORS as error:
        fail("train", error)
    except NonFiniteLossError as error:
        fail("train", error, status=1)


def launch() -> None:
    """Join a torchrun/Slurm process group (if any) and share rank 0's timestamp, then run Hydra's main."""
    ctx = distributed.init_distributed()
    if ctx.is_distributed and "BGM_RUN_STAMP" not in os.environ:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")  # the configs' run-folder stamp (train.yaml)
        os.environ["BGM_RUN_STAMP"] = distributed.broadcast_object(stamp)
    try:
        main()
    finally:
        distributed.destroy()


if __name__ == "__main__":
    launch()
