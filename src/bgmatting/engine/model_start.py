"""How the trained model starts: the one key ``init`` = ``scratch`` | ``teacher`` | ``PATH``.

* ``scratch``: the configured model with its fresh initialisation (stage adobe's default; in stage real the
  public code's bug (a), a student that forgets its teacher);
* ``teacher`` (stage real, the paper): the student takes the teacher's architecture and weights;
* ``PATH``: the configured model starts from a checkpoint's weights as far as they fit (ours, with or without a
  refiner, or an original release): e.g. the base of a refining model from a trained plain run, whose refine head
  and refiner keep their fresh initialisation.

What was loaded and what is new is reported in one line. A tensor whose shape differs (another architecture) is
an error, never silently skipped. A resumed run builds the same architecture and loads the checkpoint instead.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import logging

from bgmatting.engine.settings import ConfigError
from bgmatting.models import CheckpointError, Generator, MattingModel, Refiner, load_matting_model

log = logging.getLogger(__name__)

NETWORKS = ("generator", "refiner")  # the MattingModel.checkpoint_state entries that hold weights
INIT_CHOICES = ("scratch", "teacher")  # or a checkpoint path


@dataclass
class InitReport:
    """Which tensors (``network.key``) an initialisation loaded, which the model has but the source lacks
    (``new``: they keep their initialisation) and which the source has but the model lacks (``unused``)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    total: Counter = field(default_factory=Counter)  # tensors per network of the model

    def line(self) -> str:
        """One log line, e.g. ``init from X: loaded generator 322/324, refiner 0/8 tensors; new: generator.error_head
        (2), refiner.coarse_stage (4), refiner.fine_stage (4); unused: none``."""
        loaded = Counter(key.split(".", 1)[0] for key in self.loaded)
        counts = ", ".join(f"{net} {loaded[net]}/{self.total[net]}" for net in NETWORKS if self.total[net])
        return (f"init from {self.source}: loaded {counts} tensors; new: {_modules(self.new)}; "
                f"unused: {_modules(self.unused)}")


def _modules(keys: list[str]) -> str:
    """``generator.error_head.conv.weight``, ... -> ``generator.error_head (2)``, ...; ``none`` when empty."""
    groups = Counter(".".join(key.split(".")[:2]) for key in keys)
    return ", ".join(f"{name} ({count})" for name, count in groups.items()) or "none"


def load_matching_weights(model: MattingModel, state: Mapping[str, Any], source: str) -> InitReport:
    """Copy into ``model`` every tensor of ``state`` (entries as :meth:`MattingModel.checkpoint_state` gives
    them: ``generator`` and optionally ``refiner`` state dicts) whose name it has; returns the report.

    Raises :class:`~bgmatting.models.CheckpointError` when a shared name has another shape or nothing at all
    was loaded (not the same kind of network).
    """
    report = InitReport(source)
    for name in NETWORKS:
        module = getattr(model, name)
        given = dict(state.get(name) or {})
        if module is None:
            report.unused += [f"{name}.{key}" for key in given]
            continue
        target = module.state_dict()
        report.total[name] = len(target)
        mismatched = [f"{name}.{k}: {tuple(given[k].shape)} vs {tuple(v.shape)}"
                      for k, v in target.items() if k in given and given[k].shape != v.shape]
        if mismatched:
            raise CheckpointError(f"{source} does not fit the model ({len(mismatched)} shape mismatch(es): "
                                  f"{'; '.join(mismatched[:5])}); it holds another architecture")
        matching = {k: given[k] for k in target if k in given}
        module.load_state_dict({**target, **matching})
        report.loaded += [f"{name}.{k}" for k in matching]
        report.new += [f"{name}.{k}" for k in target if k not in given]
        report.unused += [f"{name}.{k}" for k in given if k not in target]
    if not report.loaded:
        raise CheckpointError(f"{source}: none of its tensors fits the model (unused: {_modules(report.unused)})")
    return report


def initialize_from(model: MattingModel, path: str | os.PathLike) -> InitReport:
    """:func:`load_matching_weights` from a checkpoint file: ours (with or without a refiner) or an original
    release's generator state dict (read by :func:`bgmatting.models.load_matting_model`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"init={path}: no such checkpoint file")
    return load_matching_weights(model, load_matting_model(path).checkpoint_state(), str(path))


def check_init(init: Any, stage: str) -> str:
    """``init`` as given (``scratch``, ``teacher`` or a checkpoint path); ConfigError for ``teacher`` outside
    stage real and for an empty value."""
    init = str(init) if init is not None else ""
    if not init:
        raise ConfigError("init must be scratch, teacher or a checkpoint path (got nothing)")
    if init == "teacher" and stage != "real":
        raise ConfigError(f"init=teacher: only stage real has a teacher (this is stage {stage}); use init=scratch "
                          "or init=PATH")
    return init


def student_of(teacher: MattingModel, model_cfg: Mapping[str, Any]) -> MattingModel:
    """A fresh model with the teacher's architecture (``init=teacher``; the weights are loaded apart).

    The teacher's generator, and its refiner if it has one. A plain teacher under a refining ``model`` config
    gets that config's refine head and refiner (its base then starts as the teacher, the rest is new). The run
    options of a refiner are the config's ``refine`` when it has them, else the teacher's.
    """
    generator_config = teacher.generator.config
    refiner_config = teacher.refiner.config if teacher.refiner is not None else None
    if refiner_config is None and model_cfg.get("refiner"):
        refiner_config = {k: v for k, v in model_cfg["refiner"].items() if k != "_target_"}
        generator_config.update(refine_head=True, refine_hidden=refiner_config["hidden_channels"])
    configured = {k: v for k, v in model_cfg["generator"].items() if k != "_target_"}
    if generator_config != configured:
        log.warning("the student starts from the teacher, so it takes the teacher's architecture %s", generator_config)
    generator = Generator(**generator_config)
    if refiner_config is None:
        return MattingModel(generator)
    options = model_cfg.get("refine") or teacher.refine_options
    return MattingModel(generator, Refiner(**refiner_config), **dict(options))


def initialize(model: MattingModel, init: str, teacher: MattingModel | None = None,
               teacher_path: str | os.PathLike | None = None) -> str | None:
    """Load the starting weights ``init`` asks for into a fresh ``model``; returns the report line (None for
    ``scratch``)."""
    if init == "scratch":
        return None
    if init == "teacher":
        return load_matching_weights(model, teacher.checkpoint_state(), f"teacher {teacher_path}").line()
    return initialize_from(model, init).line()
