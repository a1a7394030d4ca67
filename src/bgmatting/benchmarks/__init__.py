"""Benchmarks of speed, memory and scaling (``python -m bgmatting.bench`` is the command line).

Modules: ``peak`` (machine peak FLOP/s), ``modes`` (fp32 / channels_last / bf16 / fp16 / compile),
``model`` (generator train step and inference per mode), ``scaling`` (time per megapixel), ``data``
(data pipeline samples/s), ``metrics`` (metric timings), ``video`` (inference end to end on full HD),
``timing`` and ``memory`` (measurement helpers), ``report`` (JSON + Markdown), ``runner`` (the suites).
"""
from __future__ import annotations

from bgmatting.benchmarks.runner import QUICK, SUITES, BenchConfig, run_benchmarks

__all__ = ["QUICK", "SUITES", "BenchConfig", "run_benchmarks"]
