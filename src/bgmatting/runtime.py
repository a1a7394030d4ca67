"""Where and how networks run: device, numeric mode (autocast dtype and memory format) and CPU threads.

Used by every layer (training, evaluation, inference, benchmarks); imports nothing of the package.

``resolve_precision(device, "auto")`` picks the fastest mode that is known to be equivalent:

* Training on CUDA: autocast bf16 when the GPU supports it, else fp16 (with a GradScaler); channels_last.
  On a CPU with native bf16 (AMX / AVX512-BF16, detected through oneDNN): autocast bf16 + channels_last.
* Inference: a reduced-precision autocast only where it keeps alpha within ``INFERENCE_ALPHA_TOLERANCE`` of
  fp32 as measured with trained weights (``MEASURED_INFERENCE_ALPHA_DELTA``, :func:`reduced_precision_allowed`):
  on CUDA bf16 (where supported) or else fp16, the first allowed; on a native-bf16 CPU bf16 if allowed; else
  fp32 + channels_last. The measurement (the trained quickstart, 512^2) found bf16 off by up to 2.6e-2 in alpha
  (not allowed) and fp16 by 4.4e-3 (allowed): CUDA inference runs fp16 autocast, native-bf16 CPUs fp32 + channels_last.
* CPU without native bf16 (e.g. AVX2-only AMD EPYC): fp32; NCHW for training and channels_last for inference.
  bf16 autocast is *emulated* there and measured ~10x slower than fp32, so "auto" never picks it; oneDNN's
  AVX2 channels_last weight-gradient kernels made the 512^2 training step 2.05x slower than NCHW, while the
  channels_last forward was 1.10-1.48x faster (``python -m bgmatting.bench``, README Performance).

Explicit names: ``fp32`` (NCHW, the original's way), ``fp32_cl``, ``bf16`` (autocast + channels_last),
``fp16`` (CUDA only).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp32", "fp32_cl", "bf16", "fp16")

#: "auto" runs inference in a reduced-precision autocast only where its largest |alpha - alpha_fp32|, measured
#: with trained weights, stays within this (2.55 levels of an 8-bit alpha).
INFERENCE_ALPHA_TOLERANCE = 1e-2

#: The measurement behind that rule: largest |alpha - alpha_fp32| of inference under autocast of each dtype
#: (channels_last), ``python -m bgmatting.bench --suite precision --checkpoint CKPT``: a quickstart checkpoint
#: (the default stage=adobe run: model=quickstart_refine, 2400 steps), batches of 2 photo composites at 256^2 and 512^2, measured on an
#: AMD EPYC Zen 3 (the CPU's autocast rounds like a GPU's: operands to the dtype, fp32 accumulation).
#: Re-measure with the checkpoint you ship and update these; a dtype missing here is never picked.
MEASURED_INFERENCE_ALPHA_DELTA: dict[str, float] = {"bf16": 2.6e-2, "fp16": 4.4e-3}


def reduced_precision_allowed(name: str) -> bool:
    """Whether "auto" may run inference in autocast ``name`` ("bf16" or "fp16"): its measured alpha difference
    (:data:`MEASURED_INFERENCE_ALPHA_DELTA`) is within :data:`INFERENCE_ALPHA_TOLERANCE`."""
    measured = MEASURED_INFERENCE_ALPHA_DELTA.get(name)
    return measured is not None and measured <= INFERENCE_ALPHA_TOLERANCE


#: Environment variable that overrides the bf16 detection: ``1`` (report native bf16, as on AMX / AVX512-BF16
#: CPUs) or ``0`` (report none, as on AVX2-only CPUs). CI runs the training tests under both, whatever its CPU.
NATIVE_BF16_ENV = "BGMATTING_NATIVE_BF16"


def cpu_has_native_bf16() -> bool:
    """True when oneDNN has fast bf16 kernels on this CPU: AVX512-BF16 or AMX, and oneDNN's bf16 support.
    (oneDNN's own check alone asks only for AVX512 core, where bf16 is emulated and slower than fp32.)
    ``BGMATTING_NATIVE_BF16=1|0`` overrides the detection (:data:`NATIVE_BF16_ENV`)."""
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(native and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Precision:
    """A resolved numeric mode. ``dtype`` is the autocast dtype, or None for plain fp32."""

    name: str
    device_type: str
    dtype: torch.dtype | None
    channels_last: bool

    @property
    def needs_grad_scaler(self) -> bool:
        return self.device_type == "cuda" and self.dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context manager running the forward pass in this mode."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def prepare_module(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move parameters to channels_last when the mode uses it (in place; returns the module)."""
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Convert a B x C x H x W tensor to the mode's memory format."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x


def resolve_precision(device: torch.device | str, precision: str = "auto", purpose: str = "infer") -> Precision:
    """Turn a precision name into a :class:`Precision` for ``device``; raises ValueError on unknown names.

    ``purpose`` ("train" or "infer") only matters for "auto" on a CPU without native bf16 (see module doc).
    """
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if purpose not in ("train", "infer"):
        raise ValueError(f"purpose must be 'train' or 'infer', got {purpose!r}")
    if precision == "auto":
        precision = _automatic(device, purpose)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; on CPU use bf16 or fp32_cl")
    dtype = {"fp32": None, "fp32_cl": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return Precision(name=precision, device_type=device.type, dtype=dtype, channels_last=precision != "fp32")


def _automatic(device: torch.device, purpose: str) -> str:
    """The precision name "auto" stands for on ``device`` for ``purpose`` (see the module docstring)."""
    if device.type == "cuda":
        candidates = (["bf16"] if torch.cuda.is_bf16_supported() else []) + ["fp16"]
    elif device.type == "cpu" and cpu_has_native_bf16():
        candidates = ["bf16"]
    else:
        return "fp32" if purpose == "train" else "fp32_cl"
    if purpose == "train":
        return candidates[0]
    return next((name for name in candidates if reduced_precision_allowed(name)), "fp32_cl")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; any torch device string otherwise."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def set_cpu_threads(threads: int | None) -> None:
    """Use ``threads`` intra-op threads for torch on the CPU (None or 0: keep PyTorch's default, one per core)."""
    if threads:
        torch.set_num_threads(int(threads))
