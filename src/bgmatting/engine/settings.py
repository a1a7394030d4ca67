"""Checks of a training configuration: the values a run needs, and what may change when a run is resumed.

Configs are plain (resolved) dicts here. :func:`check_values` refuses values that would fail later with a
traceback (a batch size of 0, a negative worker count ...). :func:`resume_changes` compares the config of a
resumed run with the one stored in its checkpoint, key by key (dotted names):

* applied: settings that only steer the run from here on: logging, evaluation, validation, checkpoint
  retention and frequency, the step and epoch limits (a run can be extended), time limit, workers, device,
  precision, compile, gradient clipping, non-finite handling, and the learning rates ``optim.<name>.lr`` (set on
  the restored optimisers; a schedule keeps its factor at the resumed step). With a cosine schedule an extended
  ``max_steps`` stretches the rest of the schedule from the resumed step on.
* refused: everything else (the model, data, batch size, losses, optimiser kind and betas, schedule, seed, the
  teacher, the best-checkpoint metric): the run would silently not be the run it claims to continue. Each such
  change stops the launch with one line naming the keys, unless the user accepts it with
  ``resume_allow_changes=[key, ...]`` (a key accepts itself and everything below it, e.g. ``data``).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Keys (and everything below them) that may change when a run resumes; ``optim.<name>.lr`` too.
CHANGEABLE_ON_RESUME = (
    "resume", "resume_allow_changes", "outputs_root", "device", "precision", "compile", "cpu_threads", "logging",
    "evaluation", "distributed", "data.cache_dir",
    "checkpoint.keep_last", "checkpoint.every_n_steps",
    "trainer.epochs", "trainer.max_steps", "trainer.num_workers", "trainer.grad_clip_norm", "trainer.nonfinite",
    "trainer.max_skipped_steps", "trainer.data_errors", "trainer.deterministic", "trainer.validate_every",
    "trainer.val_limit", "trainer.time_limit_minutes",
)
SHOWN = 6  # changes listed in a message


class ConfigError(ValueError):
    """A training configuration that cannot run: the message names the key and the value."""


# ------------------------------------------------------------------------------------------------- values
def _int_at_least(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


#: key -> (check, what it must be), for the keys every training run reads.
_VALUE_RULES = {
    "trainer.batch_size": (lambda v: _int_at_least(v, 1), "an integer >= 1"),
    "trainer.epochs": (lambda v: _int_at_least(v, 1), "an integer >= 1"),
    "trainer.max_steps": (lambda v: v is None or _int_at_least(v, 1), "null or an integer >= 1"),
    "trainer.num_workers": (lambda v: _int_at_least(v, 0), "an integer >= 0"),
    "trainer.max_skipped_steps": (lambda v: _int_at_least(v, 0), "an integer >= 0"),
    "trainer.validate_every": (lambda v: _int_at_least(v, 0), "an integer >= 0"),
    "trainer.val_limit": (lambda v: v is None or _int_at_least(v, 1), "null or an integer >= 1"),
    "trainer.grad_clip_norm": (lambda v: v is None or (isinstance(v, (int, float)) and v > 0), "null or a number > 0"),
    "trainer.nonfinite": (lambda v: v in ("stop", "skip"), "stop or skip"),
    "trainer.data_errors": (lambda v: v in ("raise", "skip"), "raise or skip"),
    "logging.log_every": (lambda v: _int_at_least(v, 1), "an integer >= 1"),
    "logging.image_every": (lambda v: _int_at_least(v, 0), "an integer >= 0"),
    "checkpoint.keep_last": (lambda v: _int_at_least(v, 1), "an integer >= 1"),
    "checkpoint.every_n_steps": (lambda v: _int_at_least(v, 0), "an integer >= 0"),
    "checkpoint.best_mode": (lambda v: v in ("min", "max"), "min or max"),
    "resume_allow_changes": (lambda v: isinstance(v, list) and all(isinstance(k, str) for k in v),
                             "a list of keys, e.g. [trainer.batch_size]"),
}


def lookup(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value at a dotted ``key`` of a nested dict, ``default`` when a part is missing."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def check_values(config: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first value of :data:`_VALUE_RULES` that a run cannot use."""
    missing = object()
    for key, (valid, expected) in _VALUE_RULES.items():
        value = lookup(config, key, missing)
        if value is not missing and not valid(value):
            raise ConfigError(f"{key}={value!r}: must be {expected}")


def check_batch_fits(batch_size: int, samples: int, processes: int = 1) -> None:
    """ConfigError when the training set gives no full batch per process (batches drop the remainder)."""
    if samples // max(processes, 1) < batch_size:
        per = f" per process ({samples} over {processes} processes)" if processes > 1 else ""
        raise ConfigError(f"trainer.batch_size={batch_size}: larger than the training set's "
                          f"{samples // max(processes, 1)} samples{per}; no full batch can be formed")


# ------------------------------------------------------------------------------------------------- resume
def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a.b.c": leaf}`` (lists and other values are leaves; an empty dict is a leaf)."""
    if isinstance(config, Mapping) and config:
        return {k: v for key, value in config.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: config} if prefix else {}


@dataclass(frozen=True)
class Change:
    """One key whose value differs between the checkpoint's config (``old``) and this launch's (``new``);
    ``MISSING`` stands for a key one side does not have."""

    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key} ({_short(self.old)} -> {_short(self.new)})"


MISSING = "<absent>"


def _short(value: Any, limit: int = 40) -> str:
    text = value if value is MISSING else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _covered(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def is_learning_rate(key: str) -> bool:
    parts = key.split(".")
    return len(parts) == 3 and parts[0] == "optim" and parts[2] == "lr"


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every dotted key whose value differs between ``old`` and ``new``, sorted by key."""
    flat_old, flat_new = flatten(old), flatten(new)
    keys = sorted(set(flat_old) | set(flat_new))
    return [Change(k, flat_old.get(k, MISSING), flat_new.get(k, MISSING))
            for k in keys if flat_old.get(k, MISSING) != flat_new.get(k, MISSING)]


def resume_changes(old: Mapping[str, Any], new: Mapping[str, Any], checkpoint: str) -> list[Change]:
    """The changes of :func:`config_changes` to apply on resume; ConfigError (one line naming the keys) when a
    change is neither changeable (:data:`CHANGEABLE_ON_RESUME`, learning rates) nor accepted by the new
    config's ``resume_allow_changes``. ``teacher: auto`` (or null) means the checkpoint's teacher."""
    changes = config_changes(old, new)
    if new.get("teacher") in (None, "", "auto"):
        changes = [c for c in changes if c.key != "teacher"]
    accepted = list(new.get("resume_allow_changes") or [])
    refused = [c for c in changes
               if not (_covered(c.key, CHANGEABLE_ON_RESUME) or is_learning_rate(c.key) or _covered(c.key, accepted))]
    if refused:
        more = f" (+{len(refused) - SHOWN} more)" if len(refused) > SHOWN else ""
        shown = ", ".join(map(str, refused[:SHOWN])) + more
        keys = ",".join(sorted({c.key for c in refused}))
        raise ConfigError(f"resume from {checkpoint}: {len(refused)} setting(s) differ from the checkpoint's and "
                          f"cannot change on resume: {shown}. Start a new run (resume=false), or accept the change "
                          f"with resume_allow_changes=[{keys}]")
    return changes
