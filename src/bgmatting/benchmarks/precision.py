"""Inference accuracy of reduced-precision autocast against fp32, with trained weights.

``precision=auto`` runs inference in bf16 (or fp16) only where this measurement, made with a trained
checkpoint, keeps the largest alpha difference from fp32 within
:data:`bgmatting.runtime.INFERENCE_ALPHA_TOLERANCE` (the measured values are recorded in
:data:`bgmatting.runtime.MEASURED_INFERENCE_ALPHA_DELTA`). Random weights are no basis for that rule (their
pre-tanh activations are far larger than a trained network's), so without a checkpoint the suite still runs,
on a calibrated random model, but says so.

The comparison runs on the CPU or the given device: autocast rounds weights and activations to the dtype and
accumulates convolutions in fp32 on both, so the CPU shows the same rounding as a GPU or a native-bf16 CPU
(only slower where bf16 is emulated). Inputs: photo composites (:func:`bgmatting.benchmarks.inputs.make_batch`).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch

from bgmatting.benchmarks.inputs import make_batch, model_inputs
from bgmatting.benchmarks.model import calibrate_batchnorm, configured_model
from bgmatting.models import MattingModel, load_matting_model
from bgmatting.runtime import (
    INFERENCE_ALPHA_TOLERANCE,
    MEASURED_INFERENCE_ALPHA_DELTA,
    Precision,
    reduced_precision_allowed,
)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _model(checkpoint: str | None, fallback: str, device: torch.device) -> tuple[MattingModel, str]:
    if checkpoint:
        return load_matting_model(Path(checkpoint)).to(device), str(checkpoint)
    model = configured_model(fallback, device=device)
    calibrate_batchnorm(model, {k: v.to(device) for k, v in make_batch(1, 256).items()})
    return model.eval(), f"random weights (model={fallback}, BatchNorm calibrated): not a basis for the rule"


def _alpha(model: MattingModel, precision: Precision | None, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    copied = copy.deepcopy(model).set_precision(precision)
    with torch.inference_mode():
        return copied(*inputs)[0].float()


def bench_precision(checkpoint: str | None, sizes: list[int], batch: int = 2, fallback_model: str = "quickstart",
                    device: torch.device = torch.device("cpu"), progress: Callable[[str], None] = print) -> dict:
    """Largest and mean |alpha - alpha_fp32| of bf16 and fp16 autocast inference (channels_last) per size.

    Returns ``{"model", "trained", "rows": [...], "max_abs_diff": {dtype: value}, "tolerance", "within":
    {dtype: bool}, "runtime_table": ..., "runtime_allows": {dtype: bool}}``.
    """
    model, label = _model(checkpoint, fallback_model, device)
    rows = []
    for size in sizes:
        inputs = model_inputs(make_batch(batch, size), device)
        reference = _alpha(model, None, inputs)
        for name, dtype in DTYPES.items():
            alpha = _alpha(model, Precision(name, device.type, dtype, channels_last=True), inputs)
            difference = (alpha - reference).abs()
            rows.append({"dtype": name, "size": size, "batch": batch, "alpha_max_abs_diff": float(difference.max()),
                         "alpha_mean_abs_diff": float(difference.mean())})
            progress(f"[precision] {name} at {size}²: max |Δα| {rows[-1]['alpha_max_abs_diff']:.2e} "
                     f"(mean {rows[-1]['alpha_mean_abs_diff']:.1e})")
    worst = {name: max(r["alpha_max_abs_diff"] for r in rows if r["dtype"] == name) for name in DTYPES}
    return {"model": label, "trained": bool(checkpoint), "rows": rows, "max_abs_diff": worst,
            "tolerance": INFERENCE_ALPHA_TOLERANCE,
            "within": {name: value <= INFERENCE_ALPHA_TOLERANCE for name, value in worst.items()},
            "runtime_table": dict(MEASURED_INFERENCE_ALPHA_DELTA),
            "runtime_allows": {name: reduced_precision_allowed(name) for name in DTYPES}}
