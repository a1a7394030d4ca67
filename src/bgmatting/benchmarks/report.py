"""Benchmark results as JSON (complete, machine-readable) and Markdown (the readable tables).

Both files are rewritten atomically after every measurement, so an interrupted run leaves valid,
partial results behind.
"""
from __future__ import annotations

import math
import os

from bgmatting.io import json_text, write_text

SCHEMA = "bgmatting-bench/1"


def _num(value, digits: int = 2, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float) and abs(value) >= 100:
        return f"{value:,.0f}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def _sci(value) -> str:
    return "–" if value is None else f"{value:.1e}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _environment_lines(report: dict) -> list[str]:
    env = report.get("environment", {})
    flags = ", ".join(env.get("cpu_flags", [])) or "none"
    line = (f"Machine: {env.get('cpu', '?')} ({env.get('cpu_count', '?')} CPUs, torch threads "
            f"{env.get('torch_threads', '?')}; flags: {flags}; oneDNN native bf16: {env.get('onednn_native_bf16')})")
    if env.get("gpu"):
        line += f", GPU {env['gpu']}"
    settings = report.get("settings", {})
    return [line + f"; torch {env.get('torch', '?')}.", "",
            f"Command: `{report.get('command', '')}`", "",
            f"Model config `{settings.get('model_config')}`, warm-up {settings.get('warmup')}, "
            f"repeats {settings.get('repeats')} (median shown, modes interleaved).", ""]


def _peak_lines(peak: dict, runs: int) -> list[str]:
    rows = [[dtype, _num(p.get("matmul_gflops"), 1), _num(p.get("conv_nchw_gflops"), 1),
             _num(p.get("conv_channels_last_gflops"), 1)] for dtype, p in peak.items()]
    note = " (best of the measurements at the start and the end of the run)" if runs > 1 else ""
    return [f"### Measured peak (GFLOP/s){note}", "",
            *_table(["dtype", "matmul", "conv 3x3 256ch NCHW", "conv 3x3 256ch channels_last"], rows)]


def _model_lines(model: dict) -> list[str]:
    rows = []
    for case in model.get("cases", []):
        for name, m in case["modes"].items():
            label = name + (f" ({m['base_mode']})" if m.get("base_mode") else "")
            head = [case["kind"], f"{case['size']}", f"{case['batch']}", label]
            if m.get("status") != "ok":
                rows.append(head + [m.get("status", "?") + ": " + m.get("reason", "")] + [""] * 7)
                continue
            rows.append(head + [
                _num(m["median_s"], 3), _num(m["samples_per_s"], 2), _num(m["gflops_per_s"], 1),
                _num(100 * m["ratio_to_conv_peak"], 0, "%") if m.get("ratio_to_conv_peak") is not None else "–",
                _num(m.get("speedup_vs_fp32"), 2, "x"), _sci(m.get("alpha_max_abs_diff")),
                _num(m.get("peak_memory_mib"), 0), _num(m.get("compile_s"), 0),
            ])
    lines = ["### Generator: training step and inference", "",
             "train = forward + supervised loss + backward + Adam; infer = eval forward. "
             "% peak: achieved FLOP/s over the measured conv peak of the mode's dtype. "
             "max Δα: largest absolute alpha difference from fp32 on the first call (same weights and input). "
             "Memory: extra resident memory during one call (CPU) or peak allocated (CUDA).", ""]
    lines += _table(["kind", "size", "batch", "mode", "s / call", "samples/s", "GFLOP/s", "% peak",
                     "vs fp32", "max Δα", "memory MiB", "compile s"], rows)
    optimizer = model.get("optimizer")
    if optimizer:
        impl_rows = [[name, _num(v["median_s"] * 1e3, 1)] for name, v in optimizer.items()
                     if isinstance(v, dict) and "median_s" in v]
        lines += [f"Adam step alone ({optimizer.get('parameters', 0) / 1e6:.1f} M parameters):", "",
                  *_table(["implementation", "ms / step"], impl_rows)]
    return lines


def _scaling_lines(scaling: dict) -> list[str]:
    rows = [[str(r["size"]), str(r["batch"]), _num(r["median_s"], 3), _num(r["s_per_megapixel"], 2),
             _num(r["relative_s_per_megapixel"], 2)] for r in scaling.get("rows", [])]
    exponent = scaling.get("exponent")
    return [f"### Scaling (train step, mode {scaling.get('mode')})", "",
            *_table(["size", "batch", "s / step", "s / megapixel", "relative"], rows),
            f"time ∝ pixels^{_num(exponent, 2)} (1 = linear).", ""]


def _data_lines(data: dict) -> list[str]:
    rows = [[str(e["workers"]), _num(e["samples_per_s"], 2), _num(e.get("vs_training"), 1, "x")]
            for e in data.get("loaders", [])]
    lines = [f"### Data pipeline alone (Adobe-style composites at {data.get('size')}, batch 1)", "",
             *_table(["workers", "samples/s", "× training consumption"], rows)]
    perturbation = data.get("batch_perturbation")
    if perturbation:
        lines += [f"Device-side BGMv2 background perturbation: {_num(perturbation['median_s'] * 1e3, 0)} ms per "
                  f"batch of {perturbation['batch']}.", ""]
    if data.get("training_samples_per_s"):
        lines += [f"Training consumes {_num(data['training_samples_per_s'], 3)} samples/s at this size "
                  f"(batch 1, fastest mode measured: {data.get('training_mode')}).", ""]
    return lines


def _metrics_lines(metrics: dict) -> list[str]:
    names = sorted({k.split("/")[0] for k in metrics.get("metrics", {})}, key=["sad", "mse", "grad", "conn"].index)
    rows = [[name.upper() if name != "conn" else "Conn",
             _num(metrics["metrics"].get(f"{name}/trimap", {}).get("median_s", float("nan")) * 1e3, 1),
             _num(metrics["metrics"].get(f"{name}/full_frame", {}).get("median_s", float("nan")) * 1e3, 1)]
            for name in names]
    return [f"### Metrics on one {metrics.get('width')}x{metrics.get('height')} pair (ms)", "",
            *_table(["metric", "with trimap", "whole frame"], rows)]


def _video_lines(video: dict) -> list[str]:
    stages = ("decode", "alignment", "segmentation", "prepare", "base", "refiner", "postprocess", "temporal",
              "composite", "encode")
    lines = [f"### Video end to end ({video.get('checkpoint')}; stage columns: ms per frame, exclusive, on the "
             "thread that ran them)", ""]
    for size in video.get("sizes", []):
        rows = []
        for name, c in size["configs"].items():
            runs = "/".join(_num(r, 3) for r in c["frames_per_s_runs"])
            stage_ms = [_num(c["stages_s_per_frame"][s] * 1e3, 0) for s in stages]
            rows.append([name, _num(c["frames_per_s"], 3), runs, *stage_ms, _num(c["peak_rss_mib"], 0)])
        ratios = "; ".join(f"{k} {_num(v['median'], 2)}x ({_num(v['min'], 2)}-{_num(v['max'], 2)})"
                           for k, v in size.get("ratios", {}).items())
        alpha = ", ".join(f"{k} {v:.1e}" for k, v in size.get("alpha", {}).items() if k != "frames")
        lines += [f"**{size['width']}x{size['height']}, {size['frames']} frames.** {ratios}. Alpha: {alpha}.", "",
                  *_table(["code/mode", "frames/s", "runs", *stages, "peak RSS MiB"], rows)]
    return lines


def _refine_lines(refine: dict) -> list[str]:
    rows = []
    for frame in refine.get("frames", []):
        for name, m in frame["methods"].items():
            speedup = 1.0 if name == "refine" else frame["methods"][name]["seconds"] / frame["methods"]["refine"]["seconds"]
            network = "x".join(map(str, reversed(m["input"])))
            if m.get("base_input"):
                network = f"base {'x'.join(map(str, reversed(m['base_input'])))} + refiner at {network}"
            rows.append([f"{frame['width']}x{frame['height']}", name, network,
                         _num(m["seconds"], 2), _num(m["gflop"], 0), _num(m["gflops_per_s"], 1),
                         _num(100 * m["ratio_to_conv_peak"], 0, "%") if m.get("ratio_to_conv_peak") is not None else "–",
                         _num(speedup, 1, "x"), m.get("note", "")])
    options = refine.get("refine_options", {})
    return [f"### Per frame: refine (`model={refine.get('refine_model')}`) vs native full frame and 512 crop "
            f"(`model={refine.get('plain_model')}`), {refine.get('precision')}", "",
            f"Refine: base at the automatic size (long side {options.get('base_long_side')}), sampling with "
            "BGMv2's budget (80k pixels HD, 320k 4K). Network calls only; random weights (calibrated BatchNorm).", "",
            *_table(["frame", "method", "network input", "s / frame", "GFLOP", "GFLOP/s", "% peak",
                     "refine faster by", "note"], rows)]


def _train_compile_lines(rows: list[dict]) -> list[str]:
    table = [[row["model"], str(row["side"]), str(row["batch"]), row["precision"], _num(row["eager_s"], 3),
              _num(row["compiled_s"], 3), _num(row["speedup"], 2, "x"), _num(row["compile_s"], 0),
              _sci(row["alpha_max_abs_diff"])] for row in rows]
    return ["### Training step: torch.compile vs eager", "",
            *_table(["model", "crop", "batch", "precision", "eager s", "compiled s", "speed-up", "compile s",
                     "max Δα"], table)]


def _precision_lines(precision: dict) -> list[str]:
    table = [[row["dtype"], str(row["size"]), _sci(row["alpha_max_abs_diff"]), _sci(row["alpha_mean_abs_diff"])]
             for row in precision.get("rows", [])]
    return [f"### Inference accuracy of autocast vs fp32 ({precision.get('model')})", "",
            *_table(["dtype", "size", "max Δα", "mean Δα"], table),
            f"Tolerance of precision=auto for inference: {precision.get('tolerance')}.", ""]


def _summary_lines(summary: dict) -> list[str]:
    if not summary:
        return []
    lines = ["### Summary", ""]
    lines += [f"- {line}" for line in summary.get("lines", [])]
    return lines + [""]


def to_markdown(report: dict) -> str:
    """The readable report: environment, then one table per suite that ran, then the summary."""
    lines = ["## Benchmark results", ""]
    lines += _environment_lines(report)
    lines += _summary_lines(report.get("summary", {}))
    peak_runs = len(report.get("peak_runs", [])) or 1
    renderers = [("peak", lambda peak: _peak_lines(peak, peak_runs)), ("model", _model_lines),
                 ("scaling", _scaling_lines), ("data", _data_lines), ("video", _video_lines),
                 ("metrics", _metrics_lines), ("refine", _refine_lines), ("train_compile", _train_compile_lines),
                 ("precision", _precision_lines)]
    for key, render in renderers:
        if report.get(key):
            lines += render(report[key])
    for suite, message in report.get("errors", {}).items():
        lines += [f"- suite `{suite}` failed: {message}"]
    return "\n".join(lines).rstrip() + "\n"


def write_report(report: dict, json_path: str | os.PathLike | None, markdown_path: str | os.PathLike | None) -> None:
    """Write the JSON and/or Markdown files (atomically); None skips that file."""
    report["schema"] = SCHEMA
    if json_path:
        write_text(json_path, json_text(report))
    if markdown_path:
        write_text(markdown_path, to_markdown(report))
