"""The starter weights shipped inside the package: the project's own quickstart, rebuilt bit for bit by
``scripts/build_starter_weights.py`` (docs/MODEL_CARD.md).

``infer``, ``bgmatting.matte``, ``export`` and the demo use them when no checkpoint is given; ``--checkpoint starter``
names them. :func:`resolve_checkpoint` is the one place that turns "no checkpoint" and ``"starter"`` into the file.
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from bgmatting.models.config_check import CheckpointError

#: The name that stands for the starter weights wherever a checkpoint is given.
STARTER = "starter"
WEIGHTS_NAME, CARD_NAME = "starter.pt", "starter.json"
#: What a run that uses them says once.
STARTER_NOTE = ("starter weights: the project's quickstart, minutes of CPU training on synthetic data "
                "(docs/MODEL_CARD.md); train on Adobe data or load released weights for quality")


def starter_folder() -> Path:
    """The package folder that holds ``starter.pt`` and its card ``starter.json``."""
    return Path(str(resources.files("bgmatting.models") / "weights"))


def starter_path() -> Path:
    """The starter weights file; CheckpointError (one line) when this installation has none."""
    path = starter_folder() / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: the starter weights are not in this installation; build them with "
                              "scripts/build_starter_weights.py or give a checkpoint")
    return path


def starter_card() -> dict[str, Any]:
    """The starter weights' card: how they were made (command, commit, seed, CPU, steps), their checksum and the
    measured tables."""
    path = starter_folder() / CARD_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: the starter weights' card is missing")
    return json.loads(path.read_text(encoding="utf-8"))


def is_starter(checkpoint: Any) -> bool:
    """Whether a checkpoint argument asks for the starter weights: None or ``"starter"``."""
    return checkpoint is None or (isinstance(checkpoint, (str, os.PathLike)) and str(checkpoint) == STARTER)


def resolve_checkpoint(checkpoint: Any) -> Any:
    """``checkpoint`` as given, except None and ``"starter"``, which become the starter weights' path."""
    return starter_path() if is_starter(checkpoint) else checkpoint
