"""Benchmark modes: a precision from ``bgmatting.runtime`` plus, optionally, torch.compile.

The modes are the ones training and inference actually run (``resolve_precision``), so the benchmark
measures the real code path:

* ``fp32``     fp32, NCHW, eager: the original implementation's way and the baseline of every ratio.
* ``fp32_cl``  fp32, channels_last, eager.
* ``bf16``     bf16 autocast + channels_last, eager (emulated, slow, on CPUs without AMX/AVX512-BF16).
* ``fp16``     fp16 autocast + channels_last with a GradScaler in training (CUDA only).
* ``compile``  torch.compile (inductor) of the fastest eager mode measured in the same case.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from bgmatting.runtime import Precision, resolve_precision

EAGER_MODES = ("fp32", "fp32_cl", "bf16", "fp16")
ALL_MODES = (*EAGER_MODES, "compile")
BASELINE_MODE = "fp32"


@dataclass(frozen=True)
class BenchMode:
    """One column of the comparison. ``precision`` is None for ``compile`` until its base is chosen."""

    name: str
    precision: Precision | None
    compiled: bool = False

    @property
    def peak_dtype(self) -> str:
        """Name of the dtype whose measured peak this mode is compared with ("fp32", "bf16", "fp16")."""
        if self.precision is None or self.precision.dtype is None:
            return "fp32"
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}[self.precision.dtype]


def default_mode_names(device: torch.device) -> list[str]:
    """All modes that make sense on ``device``: fp16 only on CUDA."""
    return [m for m in ALL_MODES if m != "fp16" or device.type == "cuda"]


def resolve_modes(names: list[str], device: torch.device) -> list[BenchMode]:
    """Turn mode names into :class:`BenchMode` objects; the fp32 baseline is always first.

    Raises ValueError for unknown names and for fp16 on a non-CUDA device.
    """
    unknown = [n for n in names if n not in ALL_MODES]
    if unknown:
        raise ValueError(f"unknown benchmark mode(s) {', '.join(unknown)}; choose from {', '.join(ALL_MODES)}")
    ordered = [BASELINE_MODE] + [n for n in dict.fromkeys(names) if n != BASELINE_MODE]
    modes = []
    for name in ordered:
        if name == "compile":
            modes.append(BenchMode(name, None, compiled=True))
        else:
            modes.append(BenchMode(name, resolve_precision(device, name)))
    return modes


def compiled_variant(base: BenchMode) -> BenchMode:
    """The ``compile`` mode built on the eager mode ``base``."""
    return BenchMode("compile", base.precision, compiled=True)
