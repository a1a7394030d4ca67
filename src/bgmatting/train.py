"""``python -m bgmatting.train stage=adobe|real [overrides]``: train one stage (Hydra main; thin).

Multi-process: ``torchrun --nproc_per_node=N -m bgmatting.train ...`` runs DDP; every rank joins the process
group before Hydra starts, so all ranks share rank 0's run folder. ``--help`` lists the config groups and common
overrides; the options are in configs/train.yaml (the package ``bgmatting.configs``, shipped inside the wheel).
Bad input (config values, checkpoints, teacher, data, an unwritable outputs root): one line on stderr, exit 2.
"""
from __future__ import annotations

import os
import sys
from datetime import datetime

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bgmatting.cli import check_overrides, discard_unused_run_folder, fail
from bgmatting.io import DataError
from bgmatting.engine import distributed
from bgmatting.engine.run_checkpoints import CheckpointError
from bgmatting.engine.nonfinite import NonFiniteLossError
from bgmatting.engine.sampling import SampleError
from bgmatting.engine.settings import ConfigError
from bgmatting.engine.training import run_training


#: Errors that are the user's to fix (one line, exit status 2); a non-finite loss ends the run (one line, status 1).
USER_ERRORS = (ConfigError, CheckpointError, DataError, SampleError)
#: Keys of earlier versions, refused with a hint instead of Hydra's "not in struct".
RENAMED_KEYS = {
    "init_from": "is now init=PATH (init: scratch | teacher | PATH)",
    "stage.student_init": "is now init=teacher (the paper) or init=scratch (the public code's random start)",
    "trainer.fail_at_step": "was a test aid and is gone (the tests crash runs themselves)",
}


@hydra.main(version_base="1.3", config_path="pkg://bgmatting.configs", config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    run_dir = HydraConfig.get().runtime.output_dir
    try:
        run_training(cfg, run_dir)
    except USER_ERRORS as error:
        if distributed.current_context().is_main:
            discard_unused_run_folder(run_dir, f"{HydraConfig.get().job.name}.log")
        fail("train", error)
    except NonFiniteLossError as error:
        fail("train", error, status=1)


def main() -> None:
    """The command line checked in one line (:func:`bgmatting.cli.check_overrides`), then Hydra's main."""
    check_overrides("train", "train", sys.argv[1:], RENAMED_KEYS)
    _hydra_main()


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
