"""Run the benchmark suites in order and keep the report files up to date as results come in.

Suites: ``peak`` (machine peak), ``model`` (generator train step and inference, every mode), ``scaling``
(train step against resolution), ``data`` (data pipeline alone), ``metrics`` (SAD/MSE/Grad/Conn on a
full-HD pair), ``video`` (``infer`` end to end on full-HD clips: refine vs crop mode, this code vs another's),
``refine`` (network time per 1080p / 4K frame: refining model vs native full frame vs the 512 crop),
``train_compile`` (torch.compile of the quickstarts' training steps vs eager), ``precision`` (bf16 / fp16
inference accuracy, with ``--checkpoint``'s trained weights). A failing suite is recorded in the report's
``errors`` and the run goes on.
"""
from __future__ import annotations

import datetime
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bgmatting.benchmarks.cases import CaseSettings, bench_case, skipped_entry
from bgmatting.benchmarks.data import bench_data
from bgmatting.benchmarks.environment import describe_environment
from bgmatting.benchmarks.metrics import bench_metrics
from bgmatting.benchmarks.optim import time_optimizer_step
from bgmatting.benchmarks.peak import measure_peak, merge_peaks, ratios_to_peak
from bgmatting.benchmarks.modes import BASELINE_MODE, BenchMode, default_mode_names, resolve_modes
from bgmatting.benchmarks.precision import bench_precision
from bgmatting.benchmarks.refine import bench_refine
from bgmatting.benchmarks.report import write_report
from bgmatting.benchmarks.scaling import scaling_table
from bgmatting.benchmarks.step_profile import add_peak_ratios, profile_train_step, step_lines
from bgmatting.benchmarks.summary import target_lines
from bgmatting.benchmarks.train_compile import bench_train_compile
from bgmatting.benchmarks.video import bench_video, video_lines
from bgmatting.runtime import resolve_device, resolve_precision

SUITES = ("peak", "model", "scaling", "data", "metrics", "video", "refine", "train_compile", "precision")


@dataclass
class BenchConfig:
    """Everything a benchmark run needs; defaults are the full matrix of the issue."""

    suites: list[str] = field(default_factory=lambda: list(SUITES))
    sizes: list[int] = field(default_factory=lambda: [256, 512, 1024])
    batches: list[int] = field(default_factory=lambda: [1, 4])
    kinds: list[str] = field(default_factory=lambda: ["train", "infer"])
    modes: list[str] | None = None  # None: every mode the device supports
    compile_kinds: list[str] = field(default_factory=lambda: ["train", "infer"])  # where "compile" runs
    repeats: int = 3
    warmup: int = 1
    model_config: str = "default"
    device: str = "auto"
    threads: int | None = None
    max_step_seconds: float | None = None
    optimizer: str = "default"
    inference_freezing: bool = True
    measure_memory: bool = True
    scaling_sizes: list[int] = field(default_factory=lambda: [128, 256, 512, 1024])
    scaling_mode: str = "auto"
    data_size: int = 512
    data_workers: list[int] = field(default_factory=lambda: [0, 1, 2])
    data_samples: int = 24
    metrics_repeats: int = 3
    video_frames: int = 8
    video_frame_sizes: list[tuple[int, int]] | None = None  # None: 1080 x 1920
    video_model: str = "quickstart_refine"  # configs/model/<name>.yaml, random weights when no checkpoint is given
    compare_src: str | None = None  # video suite: another checkout's src/ measured side by side
    frame_sizes: list[tuple[int, int]] = field(default_factory=lambda: [(1080, 1920), (2160, 3840)])
    refine_model: str = "paper_refine"  # configs/model/<name>.yaml
    plain_model: str = "paper"
    estimate_native_above: int | None = None  # refine suite: native frames above this many pixels are estimated
    compile_train: list[tuple[str, int]] = field(default_factory=lambda: [("quickstart", 96), ("quickstart_refine", 192)])
    compile_batch: int = 4
    checkpoint: str | None = None  # precision and video suites: trained weights
    precision_sizes: list[int] = field(default_factory=lambda: [256, 512])
    json_path: str | None = "bench.json"
    markdown_path: str | None = "bench.md"
    command: str = ""

    def __post_init__(self) -> None:
        unknown = [s for s in self.suites if s not in SUITES]
        if unknown:
            raise ValueError(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)} or all")
        frame_sides = [side for frame in [*self.frame_sizes, *(self.video_frame_sizes or [])] for side in frame]
        train_sides = [side for _, side in self.compile_train]
        for size in [*self.sizes, *self.scaling_sizes, self.data_size, *frame_sides, *train_sides, *self.precision_sizes]:
            if size < 8 or size % 4:
                raise ValueError(f"sizes must be multiples of 4 and >= 8, got {size}")
        if min(self.batches, default=1) < 1 or self.repeats < 1 or self.warmup < 0:
            raise ValueError("batches and repeats must be >= 1, warmup >= 0")
        if self.checkpoint and not Path(self.checkpoint).is_file():
            raise ValueError(f"{self.checkpoint}: checkpoint does not exist")
        if self.compare_src and not (Path(self.compare_src) / "bgmatting" / "__init__.py").is_file():
            raise ValueError(f"{self.compare_src}: no bgmatting package in this folder (give a checkout's src/)")


# A run sized for a 2-core CPU (about 15 minutes there): the 512 cases only, and no compile of the training
# step, whose compilation alone takes minutes on such a machine.
# The refine suite measures the native 1080p frame once (minutes here) and estimates the native 4K frame from it.
QUICK = dict(sizes=[512], batches=[1], repeats=2, warmup=1, max_step_seconds=60.0, compile_kinds=["infer"],
             scaling_sizes=[128, 256, 512], data_samples=12, metrics_repeats=2, video_frames=4,
             estimate_native_above=1920 * 1080)


def _settings(config: BenchConfig, device: torch.device) -> CaseSettings:
    return CaseSettings(device=device, model_config=config.model_config, warmup=config.warmup,
                        repeats=config.repeats, max_step_seconds=config.max_step_seconds,
                        optimizer_impl=config.optimizer, inference_freezing=config.inference_freezing,
                        measure_memory=config.measure_memory)


def run_benchmarks(config: BenchConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Run the configured suites; returns the report dict (also written to the JSON/Markdown paths)."""
    progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, progress)
    finally:
        torch.set_num_threads(threads_before)


def _run(config: BenchConfig, progress: Callable[[str], None]) -> dict:
    device = resolve_device(config.device)
    mode_names = config.modes or default_mode_names(device)
    modes = resolve_modes(mode_names, device)  # validates names before anything runs
    return _BenchRun(config, device, modes, progress).run()


class _BenchRun:
    """One run of the configured suites: the report dict, rewritten to its files after every measurement."""

    def __init__(self, config: BenchConfig, device: torch.device, modes: list[BenchMode],
                 progress: Callable[[str], None]) -> None:
        self.config, self.device, self.modes, self.progress = config, device, modes, progress
        self.history: dict[str, float] = {}
        self.report: dict = {
            "command": config.command,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "environment": describe_environment(device),
            "settings": {**asdict(config), "modes": [m.name for m in modes]},
            "errors": {},
        }

    def save(self) -> None:
        write_report(self.report, self.config.json_path, self.config.markdown_path)

    def run(self) -> dict:
        self.save()
        for name, body in (("peak", self.run_peak), ("model", self.run_model), ("scaling", self.run_scaling),
                           ("data", self.run_data), ("metrics", self.run_metrics), ("video", self.run_video),
                           ("refine", self.run_refine), ("train_compile", self.run_train_compile),
                           ("precision", self.run_precision)):
            self.suite(name, body)
        if self.report.get("peak") and (self.report.get("model") or self.report.get("refine")):
            self.suite("peak", self.run_peak_again)
        self.report["summary"] = summarize(self.report, self.device)
        self.report["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        self.save()
        return self.report

    def suite(self, name: str, body: Callable[[], None]) -> None:
        """Run one configured suite, timing it; a broken suite is reported and the others still run."""
        if name not in self.config.suites:
            return
        self.progress(f"== {name} ==")
        start = time.perf_counter()
        try:
            body()
        except Exception as error:
            self.report["errors"][name] = f"{type(error).__name__}: {error}"
            self.progress(traceback.format_exc())
        seconds = self.report.setdefault("suite_seconds", {})
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        self.save()

    def run_peak(self) -> None:
        self.report["peak"] = measure_peak(self.device, progress=self.progress)

    def run_model(self) -> None:
        config, report = self.config, self.report
        report["model"] = {"cases": []}
        settings = _settings(config, self.device)
        for kind in config.kinds:
            kind_modes = [m for m in self.modes if not m.compiled or kind in config.compile_kinds]
            for size in config.sizes:
                for batch in config.batches:
                    case = bench_case(kind, size, batch, kind_modes, settings, report.get("peak"), self.history,
                                      self.progress)
                    for mode in self.modes:
                        if mode.compiled and mode.name not in case["modes"]:
                            reason = f"not run for {kind} (--compile-kinds {','.join(config.compile_kinds)})"
                            case["modes"][mode.name] = skipped_entry(mode, reason)
                    report["model"]["cases"].append(case)
                    self.save()
        report["model"]["optimizer"] = time_optimizer_step(config.model_config, self.device, progress=self.progress)
        if "train" in config.kinds:
            size = 512 if 512 in config.sizes else max(config.sizes)
            report["model"]["train_step"] = profile_train_step(config.model_config, size, 1, self.device,
                                                               report.get("peak"), config.repeats, self.progress)

    def run_scaling(self) -> None:
        mode_name = resolve_precision(self.device, self.config.scaling_mode).name
        mode = BenchMode(mode_name, resolve_precision(self.device, mode_name))
        points = _reuse_train_points(self.report, mode_name)
        settings = _settings(self.config, self.device)
        settings.measure_memory = False
        for size in self.config.scaling_sizes:
            if any(p["size"] == size for p in points):
                continue
            case = bench_case("train", size, 1, [mode], settings, self.report.get("peak"), self.history, self.progress)
            entry = case["modes"][mode_name]
            if entry["status"] == "ok":
                points.append({"size": size, "batch": 1, "median_s": entry["median_s"]})
        self.report["scaling"] = {"mode": mode_name, **scaling_table(points)}

    def run_data(self) -> None:
        config = self.config
        self.report["data"] = bench_data(config.data_size, tuple(config.data_workers), config.data_samples,
                                         self.device, self.progress)

    def run_metrics(self) -> None:
        self.report["metrics"] = bench_metrics(repeats=self.config.metrics_repeats, progress=self.progress)

    def run_video(self) -> None:
        config = self.config
        self.report["video"] = bench_video(config.video_frame_sizes, config.video_frames, config.checkpoint,
                                           config.compare_src, config.repeats, config.video_model, config.threads,
                                           progress=self.progress)

    def run_refine(self) -> None:
        config = self.config  # ratios to peak only when the peak suite ran first (--suite peak,refine)
        self.report["refine"] = bench_refine(config.frame_sizes, config.refine_model, config.plain_model, self.device,
                                             config.repeats, self.report.get("peak"), config.estimate_native_above,
                                             self.progress)

    def run_train_compile(self) -> None:
        config = self.config
        self.report["train_compile"] = bench_train_compile(config.compile_train, config.compile_batch, config.repeats,
                                                           self.device, self.progress)

    def run_precision(self) -> None:
        config = self.config
        self.report["precision"] = bench_precision(config.checkpoint, config.precision_sizes, device=self.device,
                                                   progress=self.progress)

    def run_peak_again(self) -> None:
        """Measure the peak again at the end and keep the larger values: load during one measurement only
        lowers it, and a too-low peak would overstate every ratio."""
        self.report["peak_runs"] = [self.report["peak"], measure_peak(self.device, progress=self.progress)]
        self.report["peak"] = merge_peaks(*self.report["peak_runs"])
        _update_peak_ratios(self.report)


def _update_peak_ratios(report: dict) -> None:
    """Recompute every model and refine entry's ratios to peak from ``report["peak"]``."""
    entries = [entry for case in report.get("model", {}).get("cases", []) for entry in case["modes"].values()
               if entry.get("status") == "ok"]
    entries += [entry for frame in report.get("refine", {}).get("frames", []) for entry in frame["methods"].values()]
    for entry in entries:
        entry.update(ratios_to_peak(entry["gflops_per_s"], entry["peak_dtype"], report["peak"]))
    if report.get("model", {}).get("train_step"):
        add_peak_ratios(report["model"]["train_step"], report["peak"])


def _reuse_train_points(report: dict, mode_name: str) -> list[dict]:
    """Batch-1 train cases of the model suite already measured in ``mode_name`` (no need to re-run them)."""
    points = []
    for case in report.get("model", {}).get("cases", []):
        entry = case["modes"].get(mode_name, {})
        if (case["kind"] == "train" and case["batch"] == 1 and entry.get("status") == "ok"
                and entry.get("precision") == mode_name):
            points.append({"size": case["size"], "batch": 1, "median_s": entry["median_s"]})
    return points


def _reference_case(report: dict, kind: str) -> dict | None:
    """The batch-1 case of ``kind`` at 512 (the paper's resolution), else the largest batch-1 case."""
    cases = [c for c in report.get("model", {}).get("cases", []) if c["kind"] == kind and c["batch"] == 1]
    return next((c for c in cases if c["size"] == 512), max(cases, key=lambda c: c["size"], default=None))


def _measured_modes(case: dict) -> dict[str, dict]:
    return {name: m for name, m in case["modes"].items() if m.get("status") == "ok"}


def _case_summary(case: dict, summary: dict, default_mode: str) -> None:
    """Fastest mode of a case against fp32 NCHW eager, and the default mode's speed-up (train: the 5x target)."""
    measured = _measured_modes(case)
    baseline = measured.get(BASELINE_MODE)
    if not baseline:
        return
    name = min(measured, key=lambda n: measured[n]["median_s"])
    fastest = measured[name]
    kind, size = case["kind"], case["size"]
    summary[f"{kind}_reference"] = {"size": size, "fastest_mode": name,
                                    "fastest_speedup_vs_fp32": fastest.get("speedup_vs_fp32"),
                                    "fastest_alpha_max_abs_diff": fastest.get("alpha_max_abs_diff")}
    peak_part = ""
    if fastest.get("ratio_to_conv_peak") is not None:
        peak_part = f", {100 * fastest['ratio_to_conv_peak']:.0f}% of the measured {fastest['peak_dtype']} conv peak"
    label = "Train step" if kind == "train" else "Inference"
    summary["lines"].append(
        f"{label} {size}² batch 1: fp32 NCHW eager {baseline['median_s']:.2f} s; fastest mode {name} "
        f"{fastest['median_s']:.2f} s ({fastest.get('speedup_vs_fp32') or 0:.2f}x, max alpha difference "
        f"{fastest.get('alpha_max_abs_diff') or 0:.1e}{peak_part}).")
    if default_mode in measured:
        speedup = measured[default_mode].get("speedup_vs_fp32") or 0.0
        summary[f"{kind}_default_mode_speedup"] = speedup
        target = f"; target 5x: {'met' if speedup >= 5 else 'not met'}" if kind == "train" else ""
        summary["lines"].append(f"{label} in the default mode ('auto' = {default_mode}): {speedup:.2f}x fp32 NCHW"
                                f"{target}.")


def _data_summary(report: dict, train_case: dict | None, summary: dict) -> None:
    """Pipeline samples/s against what the fastest training mode consumes at the same size (target: 3x)."""
    data = report.get("data")
    if not data or not train_case or data.get("size") != train_case["size"]:
        return
    measured = _measured_modes(train_case)
    if not measured:
        return
    consumer = min(measured.values(), key=lambda m: m["median_s"])
    data["training_samples_per_s"] = consumer["samples_per_s"]
    data["training_mode"] = consumer["mode"]
    for loader in data["loaders"]:
        loader["vs_training"] = loader["samples_per_s"] / consumer["samples_per_s"]
    best = max(data["loaders"], key=lambda e: e["samples_per_s"])
    summary["data_vs_training"] = best["vs_training"]
    summary["lines"].append(
        f"Data pipeline: {best['samples_per_s']:.2f} samples/s with {best['workers']} workers = "
        f"{best['vs_training']:.1f}x what training consumes in its fastest mode, {consumer['mode']} "
        f"(target 3x: {'met' if best['vs_training'] >= 3 else 'not met'}).")


def summarize(report: dict, device: torch.device) -> dict:
    """Headline numbers and the issue's targets, in plain sentences (``lines``) and as fields."""
    default_mode = resolve_precision(device, "auto").name
    summary: dict = {"lines": [], "default_mode": default_mode}
    train_case = _reference_case(report, "train")
    for case in (train_case, _reference_case(report, "infer")):
        if case:
            _case_summary(case, summary, default_mode)
    peak = report.get("peak", {})
    if "fp32" in peak and "bf16" in peak:
        bf16_kind = "native" if report["environment"].get("onednn_native_bf16") else "emulated: no AMX/AVX512-BF16"
        summary["lines"].append(f"Measured conv peak: fp32 {peak['fp32']['conv_gflops']:.1f} GFLOP/s, bf16 "
                                f"{peak['bf16']['conv_gflops']:.1f} GFLOP/s ({bf16_kind}).")
    _data_summary(report, train_case, summary)
    summary["lines"] += step_lines(report.get("model", {}).get("train_step"))
    summary["lines"] += video_lines(report.get("video"))
    scaling = report.get("scaling")
    if scaling and scaling.get("exponent") is not None:
        summary["lines"].append(f"Scaling ({scaling['mode']}): step time ∝ pixels^{scaling['exponent']:.2f}.")
    summary["lines"] += target_lines(report)
    return summary
