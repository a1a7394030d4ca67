"""Precision modes: names resolve to autocast dtype and memory format; "auto" follows the hardware."""
from __future__ import annotations

import pytest
import torch

from bgmatting import runtime as P


@pytest.mark.parametrize("name,dtype,cl", [("fp32", None, False), ("fp32_cl", None, True), ("bf16", torch.bfloat16, True)])
def test_explicit_names(name, dtype, cl):
    p = P.resolve_precision("cpu", name)
    assert (p.name, p.dtype, p.channels_last) == (name, dtype, cl)
    assert not p.needs_grad_scaler


def test_auto_on_cpu_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    assert P.resolve_precision("cpu", "auto", purpose="train").name == "fp32"
    assert P.resolve_precision("cpu", "auto", purpose="infer").name == "fp32_cl"
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    assert P.resolve_precision("cpu", "auto", purpose="train").name == "bf16"


def test_bad_names_and_fp16_on_cpu_are_errors():
    with pytest.raises(ValueError, match="unknown precision"):
        P.resolve_precision("cpu", "fp8")
    with pytest.raises(ValueError, match="CUDA"):
        P.resolve_precision("cpu", "fp16")
    with pytest.raises(ValueError, match="purpose"):
        P.resolve_precision("cpu", "auto", purpose="eval")


def test_modes_prepare_inputs_and_run_autocast():
    x = torch.randn(1, 3, 8, 8)
    cl = P.resolve_precision("cpu", "fp32_cl")
    assert cl.prepare_input(x).is_contiguous(memory_format=torch.channels_last)
    conv = cl.prepare_module(torch.nn.Conv2d(3, 4, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with P.resolve_precision("cpu", "bf16").autocast():
        assert conv(x).dtype == torch.bfloat16


def test_auto_inference_takes_a_reduced_precision_only_where_measured_accurate(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(P, "MEASURED_INFERENCE_ALPHA_DELTA", {"bf16": 5e-2, "fp16": 4e-3})
    assert P.resolve_precision("cpu", "auto", purpose="infer").name == "fp32_cl"  # bf16 too far from fp32
    assert P.resolve_precision("cpu", "auto", purpose="train").name == "bf16"  # training is not ruled by it
    monkeypatch.setattr(P, "MEASURED_INFERENCE_ALPHA_DELTA", {"bf16": P.INFERENCE_ALPHA_TOLERANCE})
    assert P.resolve_precision("cpu", "auto", purpose="infer").name == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    for table, expected in (({"bf16": 5e-2, "fp16": 4e-3}, "fp16"), ({"bf16": 1e-3, "fp16": 4e-3}, "bf16"),
                            ({"bf16": 5e-2}, "fp32_cl"), ({}, "fp32_cl")):
        monkeypatch.setattr(P, "MEASURED_INFERENCE_ALPHA_DELTA", table)
        assert P._automatic(torch.device("cuda"), "infer") == expected, table
        assert P._automatic(torch.device("cuda"), "train") == "bf16"
    assert not P.reduced_precision_allowed("fp8")  # never measured: never picked


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return {flag for line in f if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return None


@pytest.mark.skipif(_cpu_flags() is None, reason="needs /proc/cpuinfo (Linux) to know the truth")
def test_the_real_native_bf16_detector_agrees_with_the_cpu_flags(monkeypatch):
    """Not stubbed: native bf16 means AVX512-BF16 or AMX. AVX512 alone (oneDNN's own bf16 check) only emulates it,
    slower than fp32, so "auto" must not pick bf16 there."""
    monkeypatch.delenv(P.NATIVE_BF16_ENV, raising=False)  # CI also runs the suite with the detection forced
    flags = _cpu_flags()
    native = bool({"avx512_bf16", "amx_bf16"} & flags)
    assert P.cpu_has_native_bf16() is native
    infer = "bf16" if native and P.reduced_precision_allowed("bf16") else "fp32_cl"  # the measured accuracy rule
    expected = ("bf16" if native else "fp32", infer)
    assert (P.resolve_precision("cpu", "auto", purpose="train").name,
            P.resolve_precision("cpu", "auto", purpose="infer").name) == expected


@pytest.mark.parametrize("forced, train", [("1", "bf16"), ("0", "fp32")])
def test_the_environment_forces_the_bf16_detection_either_way(monkeypatch, forced, train):
    """How CI runs the native-bf16 paths on an AVX2-only CPU (and the fp32 paths on an AMX one)."""
    monkeypatch.setenv(P.NATIVE_BF16_ENV, forced)
    assert P.cpu_has_native_bf16() is (forced == "1")
    assert P.resolve_precision("cpu", "auto", purpose="train").name == train
    assert P.resolve_precision("cpu", "auto", purpose="infer").name == "fp32_cl"  # bf16 inference is off by 2.6e-2
