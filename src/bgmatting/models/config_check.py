"""Checks of what a checkpoint asks to build, before anything is built: the constructor arguments of the generator,
refiner and discriminator and the refine options (known keys, types, ranges), the network's size (parameters and
buffers counted on PyTorch's ``meta`` device, which allocates nothing) against a limit, and the dtypes of the
stored tensors against the network's.

Every problem is one :class:`CheckpointError` line naming the file. The size limit is
:data:`DEFAULT_MAX_PARAMETERS` values, or ``$BGMATTING_MAX_MODEL_PARAMETERS``.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bgmatting.models.blocks import NORM_NAMES
from bgmatting.models.discriminator import MultiscaleDiscriminator
from bgmatting.models.generator import Generator
from bgmatting.models.refiner import REFINE_MODES, Refiner


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: wrong file, unknown format, missing/unexpected keys or bad shapes."""


#: Environment variable that sets the largest network (parameters + buffers) a checkpoint may build.
MAX_PARAMETERS_VARIABLE = "BGMATTING_MAX_MODEL_PARAMETERS"
#: 500 M values (2 GB as float32); the paper's generator has 17.9 M.
DEFAULT_MAX_PARAMETERS = 500_000_000


@dataclass(frozen=True)
class Field:
    """One constructor argument: ``kind`` int, float, bool, choice or widths (a list of ``length`` ints); numbers
    lie in [low, high] (``open_low``: low itself excluded); ``choices`` for a choice; ``optional``: None allowed."""

    kind: str
    low: float = 0
    high: float = math.inf
    choices: tuple[str, ...] = ()
    length: int = 0
    open_low: bool = False
    optional: bool = False


GENERATOR_FIELDS = {
    "ngf": Field("int", 1, 4096), "nf_part": Field("int", 1, 4096), "n_blocks1": Field("int", 0, 64),
    "n_blocks2": Field("int", 0, 64), "motion_frames": Field("int", 1, 64), "norm": Field("choice", choices=NORM_NAMES),
    "motion_uses_background_feature": Field("bool"), "refine_head": Field("bool"),
    "refine_hidden": Field("int", 0, 1024),
}
DISCRIMINATOR_FIELDS = {
    "in_channels": Field("int", 1, 64), "ndf": Field("int", 1, 4096), "n_layers": Field("int", 1, 16),
    "num_d": Field("int", 1, 8), "norm": Field("choice", choices=NORM_NAMES), "return_features": Field("bool"),
}
REFINER_FIELDS = {"hidden_channels": Field("int", 0, 1024), "channels": Field("widths", 1, 4096, length=3)}
REFINE_OPTION_FIELDS = {
    "downsample_ratio": Field("float", 0.0, 1.0, open_low=True, optional=True),
    "base_long_side": Field("int", 4, 2**16),
    "refine_mode": Field("choice", choices=REFINE_MODES), "refine_pixels": Field("int", 0, 2**40),
    "refine_threshold": Field("float", 0.0, 1.0),
}
NETWORK_FIELDS = {Generator: GENERATOR_FIELDS, Refiner: REFINER_FIELDS, MultiscaleDiscriminator: DISCRIMINATOR_FIELDS}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_problem(key: str, value: Any, field: Field) -> str | None:
    """Why ``value`` does not fit ``field`` (None when it does)."""
    if value is None and field.optional:
        return None
    if field.kind == "bool":
        return None if isinstance(value, bool) else f"{key} must be true or false, got {value!r}"
    if field.kind == "choice":
        return None if isinstance(value, str) and value in field.choices else \
            f"{key} must be one of {', '.join(field.choices)}, got {value!r}"
    if field.kind == "widths":
        if not (isinstance(value, (list, tuple)) and len(value) == field.length):
            return f"{key} must be a list of {field.length} integers, got {value!r}"
        width = Field("int", field.low, field.high)
        return next(filter(None, (_field_problem(f"{key}[{i}]", v, width) for i, v in enumerate(value))), None)
    number = _is_int(value) or (field.kind == "float" and isinstance(value, float) and math.isfinite(value))
    if not number:
        return f"{key} must be {'an integer' if field.kind == 'int' else 'a finite number'}, got {value!r}"
    low_ok = value > field.low if field.open_low else value >= field.low
    if not (low_ok and value <= field.high):
        return f"{key} must be in {'(' if field.open_low else '['}{field.low:g}, {field.high:g}], got {value!r}"
    return None


def check_fields(config: Mapping[Any, Any], fields: Mapping[str, Field], what: str, name: str) -> None:
    """A :class:`CheckpointError` naming ``name`` (the file) and ``what`` at the first unknown key or bad value."""
    unknown = [str(k) for k in config if k not in fields]
    if unknown:
        raise CheckpointError(f"{name}: bad {what}: unknown key(s) {', '.join(unknown)} (known: {', '.join(fields)})")
    for key, value in config.items():
        problem = _field_problem(key, value, fields[key])
        if problem:
            raise CheckpointError(f"{name}: bad {what}: {problem}")


def max_parameters() -> int:
    """The size limit in force (values): ``$BGMATTING_MAX_MODEL_PARAMETERS`` or :data:`DEFAULT_MAX_PARAMETERS`."""
    text = os.environ.get(MAX_PARAMETERS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_PARAMETERS
    if not (text.isdigit() and int(text) >= 1):
        raise CheckpointError(f"{MAX_PARAMETERS_VARIABLE}: the model size limit must be a positive integer, "
                              f"got {text!r}")
    return int(text)


def network_size(cls: type[torch.nn.Module], config: Mapping[str, Any]) -> int:
    """Parameters and buffers of ``cls(**config)``, counted on the meta device (no memory is allocated)."""
    with torch.device("meta"):
        network = cls(**config)
    return sum(t.numel() for t in (*network.parameters(), *network.buffers()))


def check_network_config(cls: type[torch.nn.Module], config: Mapping[Any, Any], name: str) -> None:
    """``config`` may build ``cls`` (Generator, Refiner or MultiscaleDiscriminator): known keys, types and
    ranges (:data:`NETWORK_FIELDS`), a consistent combination, and at most :func:`max_parameters` values."""
    check_fields(config, NETWORK_FIELDS[cls], f"{cls.__name__} configuration", name)
    try:
        size = network_size(cls, config)
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{name}: bad {cls.__name__} configuration {dict(config)}: {error}") from None
    limit = max_parameters()
    if size > limit:
        raise CheckpointError(f"{name}: its {cls.__name__} configuration asks for {size:,} values "
                              f"({size * 4 / 2**30:,.1f} GiB as float32), above the limit of {limit:,} "
                              f"(raise it with {MAX_PARAMETERS_VARIABLE}=N)")


def check_refine_options(options: Any, name: str) -> dict[str, Any]:
    """A checkpoint's ``refine_options`` (None or a mapping of :data:`REFINE_OPTION_FIELDS`) as a dict."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise CheckpointError(f"{name}: 'refine_options' must be a dict, got {type(options).__name__}")
    check_fields(options, REFINE_OPTION_FIELDS, "refine_options", name)
    return dict(options)


def check_tensor_dtypes(model: torch.nn.Module, state: Mapping[str, Any], name: str) -> None:
    """Each stored entry is a tensor of the network's kind of dtype: floating point where the network holds floating
    point (an integer, boolean or complex tensor would be cast silently), integer where it counts (BatchNorm's
    ``num_batches_tracked``)."""
    expected = model.state_dict()
    for key, value in state.items():
        if key not in expected:
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{name}: {key} is a {type(value).__name__}, not a tensor")
        want_float = expected[key].is_floating_point()
        if value.is_floating_point() != want_float or value.is_complex() or value.dtype == torch.bool:
            kind = "floating-point" if want_float else "integer"
            raise CheckpointError(f"{name}: {key} is a {str(value.dtype).removeprefix('torch.')} tensor, expected "
                                  f"{kind} (the file was not written by a trainer of this network)")
