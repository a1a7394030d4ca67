"""Generator training step and inference forward, every mode side by side on the same weights and inputs.

One *case* is (kind, size, batch) with kind ``train`` (forward + supervised loss + backward + Adam step)
or ``infer`` (eval-mode forward under inference mode). Within a case every mode starts from a copy of the
same initial weights and sees the same batch; timed repeats are interleaved across modes (mode A, B, C,
A, B, C, ...) so machine noise hits all modes alike, and every speed is also given as a ratio to the
fp32 NCHW eager baseline. FLOPs are counted once per case with ``torch.utils.flop_counter`` on the meta
device (no compute), so they are the network's nominal work, identical for all modes.
"""
from __future__ import annotations

import copy
import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bgmatting.benchmarks.inputs import make_batch, network_inputs
from bgmatting.benchmarks.memory import PeakMemory
from bgmatting.benchmarks.modes import BASELINE_MODE, BenchMode, compiled_variant
from bgmatting.benchmarks.timing import synchronize, timed_call
from bgmatting.engine.stages import AdobeStage
from bgmatting.models.generator import Generator
from bgmatting.space import from_network

# Generator sizes. "default" is the paper's network (17.9 M parameters); "tiny" is for smoke tests only.
MODEL_CONFIGS: dict[str, dict] = {
    "default": {},
    "tiny": dict(ngf=8, nf_part=8, n_blocks1=1, n_blocks2=1),
}
KINDS = ("train", "infer")
LEARNING_RATE = 1e-4  # the paper's generator learning rate
OPTIMIZER_IMPLEMENTATIONS = ("default", "foreach", "fused", "for-loop")


def build_generator(model_config: str, seed: int = 0, device: torch.device | str = "cpu") -> Generator:
    """A freshly initialised Generator of the named size, seeded, on ``device`` (train mode)."""
    if model_config not in MODEL_CONFIGS:
        raise ValueError(f"unknown model config {model_config!r}; choose from {', '.join(MODEL_CONFIGS)}")
    if torch.device(device).type == "meta":
        with torch.device("meta"):
            return Generator(**MODEL_CONFIGS[model_config])
    rng = torch.Generator(device="cpu").manual_seed(seed)
    return Generator(**MODEL_CONFIGS[model_config], rng=rng).to(device)


def adobe_training_loss(stage: AdobeStage, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The supervised stage's total loss for ``batch`` (image-space sample dict on the model's device), computed
    exactly as training computes it (:class:`bgmatting.engine.stages.AdobeStage`)."""
    return next(stage.updates(batch, 0, 0)).total()


def make_optimizer(parameters, implementation: str = "default") -> torch.optim.Optimizer:
    """Adam (lr 1e-4) with torch's default, ``foreach``, ``fused`` or ``for-loop`` update kernels."""
    trainable = [p for p in parameters if p.requires_grad]
    options = {"default": {}, "foreach": dict(foreach=True), "fused": dict(fused=True),
               "for-loop": dict(foreach=False)}
    if implementation not in options:
        raise ValueError(f"unknown optimizer implementation {implementation!r}; choose from {', '.join(options)}")
    return torch.optim.Adam(trainable, lr=LEARNING_RATE, **options[implementation])


def count_flops(model_config: str, kind: str, batch: int, size: int) -> int:
    """FLOPs of one forward (``infer``) or forward + loss + backward (``train``), counted on the meta device."""
    model = build_generator(model_config, device="meta")
    data = make_batch(1, 8)  # placeholder values: only shapes matter on meta
    meta = {k: torch.empty((batch, v.shape[1], size, size), device="meta") for k, v in data.items()}
    counter = FlopCounterMode(display=False)
    with counter:
        if kind == "train":
            adobe_training_loss(AdobeStage(model), meta).backward()
        else:
            inputs = network_inputs(meta, torch.device("meta"))
            model.eval()
            with torch.no_grad():
                model(*inputs)
    return int(counter.get_total_flops())


def calibrate_batchnorm(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> nn.Module:
    """Set every BatchNorm's running statistics to the batch statistics of ``inputs``; leave ``model`` in eval mode.

    Fresh running statistics (mean 0, variance 1) make an untrained network's eval output saturate, which
    would make the comparison between modes meaningless; calibrated statistics keep alpha non-trivial.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch sets the statistics exactly
    model.train()
    with torch.no_grad():
        model(*inputs)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


def release_free_memory() -> None:
    """Collect garbage and return free heap pages to the OS (glibc ``malloc_trim``) so RSS reflects live memory."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            ctypes.CDLL(libc_name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


@dataclass
class ModeRunner:
    """A mode's prepared model and its one-call ``step`` (returns alpha B x 1 x H x W in [0, 1], detached)."""

    mode: BenchMode
    step: Callable[[], torch.Tensor]
    first_alpha: torch.Tensor | None = None
    first_call_s: float | None = None
    times: list[float] = field(default_factory=list)


def make_runner(kind: str, base_model: nn.Module, mode: BenchMode, batch: dict[str, torch.Tensor],
                optimizer_impl: str = "default", inference_freezing: bool = True) -> ModeRunner:
    """Copy ``base_model`` into ``mode`` and return its runner.

    ``batch``: image-space sample dict on the device. ``train`` steps run the supervised stage's loss
    (:class:`AdobeStage`) with the step order of the training loop (autocast forward + loss, then
    zero_grad, backward, optimiser step); the returned alpha is the stage's (first <= 4 samples).
    ``inference_freezing``: let inductor fold BatchNorm into convolutions and pre-pack weights when
    compiling the inference forward.
    """
    precision = mode.precision
    model = precision.prepare_module(copy.deepcopy(base_model))
    inputs = tuple(precision.prepare_input(x) for x in network_inputs(batch, next(model.parameters()).device))
    network = torch.compile(model, dynamic=False) if mode.compiled else model

    if kind == "infer":
        model.eval()

        def infer_step() -> torch.Tensor:
            with torch.inference_mode(), precision.autocast():
                alpha_raw, _ = network(*inputs)
            return from_network(alpha_raw.float())

        step = infer_step
        if mode.compiled and inference_freezing:
            def infer_step_frozen() -> torch.Tensor:
                import torch._inductor.config as inductor_config
                with inductor_config.patch(freezing=True):
                    return infer_step()
            step = infer_step_frozen
        return ModeRunner(mode, step)

    model.train()
    optimizer = make_optimizer(model.parameters(), optimizer_impl)
    scaler = torch.amp.GradScaler(precision.device_type) if precision.needs_grad_scaler else None

    stage = AdobeStage(network, precision)

    def train_step() -> torch.Tensor:
        with precision.autocast():
            update = next(stage.updates(batch, 0, 0))
        optimizer.zero_grad(set_to_none=True)
        loss = update.total()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return stage.visuals()["alpha_pred"]

    return ModeRunner(mode, train_step)


def _rate_key(kind: str, mode: BenchMode) -> str:
    return f"{kind}/{mode.name}"


def estimate_seconds(kind: str, mode: BenchMode, flops: int, history: dict[str, float], peak: dict | None) -> float | None:
    """Expected seconds per call: from this mode's achieved FLOP/s in earlier cases, else a lower bound from
    the measured conv peak of its dtype; None when nothing is known."""
    rate = history.get(_rate_key(kind, mode))
    if rate is None and peak and mode.peak_dtype in peak:
        rate = peak[mode.peak_dtype]["conv_gflops"] * 1e9
    return flops / rate if rate else None


@dataclass
class CaseSettings:
    """How to run one case; ``max_step_seconds`` skips a mode whose estimated call time exceeds it."""

    device: torch.device
    model_config: str = "default"
    warmup: int = 1
    repeats: int = 2
    max_step_seconds: float | None = None
    optimizer_impl: str = "default"
    inference_freezing: bool = True
    measure_memory: bool = True
    seed: int = 0


def bench_case(kind: str, size: int, batch: int, modes: list[BenchMode], settings: CaseSettings,
               peak: dict | None = None, history: dict[str, float] | None = None,
               progress: Callable[[str], None] = print) -> dict:
    """Benchmark every mode on one (kind, size, batch) case; returns a JSON-ready dict.

    Speed-ups and output differences are relative to the fp32 baseline when it is among ``modes`` (it is
    then run first and never skipped). A ``compile`` mode compiles the fastest eager mode of
    this case; its compile time (first call minus a steady call) is reported apart from its call time.
    ``history`` (mode -> achieved FLOP/s) is read for time estimates and updated with this case's results.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if not modes:
        raise ValueError("no modes to benchmark")
    modes = sorted(modes, key=lambda m: m.name != BASELINE_MODE)  # baseline first, others keep their order
    history = {} if history is None else history
    device = settings.device
    label = f"{kind} {size}x{size} batch {batch}"
    flops = count_flops(settings.model_config, kind, batch, size)
    data = {key: value.to(device) for key, value in make_batch(batch, size).items()}
    base_model = build_generator(settings.model_config, settings.seed, device)
    if kind == "infer":
        calibrate_batchnorm(base_model, network_inputs(data, device))

    results: dict[str, dict] = {}
    eager = [m for m in modes if not m.compiled]
    compile_requested = any(m.compiled for m in modes)

    def run_group(group: list[BenchMode]) -> list[ModeRunner]:
        runners = []
        for mode in group:
            estimate = estimate_seconds(kind, mode, flops, history, peak)
            if (settings.max_step_seconds is not None and estimate is not None and mode.name != BASELINE_MODE
                    and estimate > settings.max_step_seconds):
                results[mode.name] = _skipped(mode, f"estimated {estimate:.1f} s per call > limit {settings.max_step_seconds:g} s")
                progress(f"[model] {label} {mode.name}: skipped (estimated {estimate:.1f} s per call)")
                continue
            try:
                runner = make_runner(kind, base_model, mode, data, settings.optimizer_impl,
                                     settings.inference_freezing)
                seconds, alpha = timed_call(runner.step, device)
                runner.first_call_s, runner.first_alpha = seconds, alpha.cpu()
                # a compiled mode may still recompile on its second call (e.g. guards on optimiser state)
                for _ in range(max(1, settings.warmup) if mode.compiled else settings.warmup - 1):
                    timed_call(runner.step, device)
                runners.append(runner)
                progress(f"[model] {label} {mode.name}: first call {seconds:.2f} s")
            except Exception as error:  # a mode that cannot run here is reported, not fatal
                results[mode.name] = _failed(mode, error)
                progress(f"[model] {label} {mode.name}: FAILED ({type(error).__name__}: {error})")
        for repeat in range(settings.repeats):
            for runner in runners:
                runner.times.append(timed_call(runner.step, device)[0])
            progress(f"[model] {label} repeat {repeat + 1}/{settings.repeats}: "
                     + ", ".join(f"{r.mode.name} {r.times[-1]:.3f} s" for r in runners))
        return runners

    runners = run_group(eager)
    if compile_requested:
        measured = [r for r in runners if r.times]
        if measured:
            fastest = min(measured, key=lambda r: _median(r.times))
            runners += run_group([compiled_variant(fastest.mode)])
        else:
            results["compile"] = _skipped(BenchMode("compile", None, True), "no eager mode was measured")

    reference = next((r.first_alpha for r in runners if r.mode.name == BASELINE_MODE), None)
    baseline_s = next((_median(r.times) for r in runners if r.mode.name == BASELINE_MODE and r.times), None)
    for runner in runners:
        entry = _measured(runner, kind, flops, batch, peak, reference, baseline_s)
        if settings.measure_memory:
            release_free_memory()
            with PeakMemory(device) as memory:
                timed_call(runner.step, device)
            entry.update(peak_memory_mib=memory.peak_mib, memory_method=memory.method)
        if runner.mode.compiled:
            base_s = next((_median(r.times) for r in runners if r.mode.name == runner.mode.precision.name), None)
            entry["base_mode"] = runner.mode.precision.name
            entry["speedup_vs_base"] = base_s / entry["median_s"] if base_s else None
        results[runner.mode.name] = entry
        history[_rate_key(kind, runner.mode)] = flops / entry["median_s"]
    del runners
    release_free_memory()
    synchronize(device)
    return {"kind": kind, "size": size, "batch": batch, "flops": flops, "gflop": flops / 1e9,
            "model_config": settings.model_config, "modes": results}


def _median(times: list[float]) -> float:
    ordered = sorted(times)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def _mode_fields(mode: BenchMode) -> dict:
    precision = mode.precision
    return {
        "mode": mode.name,
        "precision": precision.name if precision else None,
        "autocast_dtype": str(precision.dtype).removeprefix("torch.") if precision and precision.dtype else None,
        "channels_last": precision.channels_last if precision else None,
        "compiled": mode.compiled,
    }


def _skipped(mode: BenchMode, reason: str) -> dict:
    return {**_mode_fields(mode), "status": "skipped", "reason": reason}


def _failed(mode: BenchMode, error: Exception) -> dict:
    return {**_mode_fields(mode), "status": "failed", "reason": f"{type(error).__name__}: {error}"[:500]}


def _measured(runner: ModeRunner, kind: str, flops: int, batch: int, peak: dict | None,
              reference: torch.Tensor | None, baseline_s: float | None) -> dict:
    median = _median(runner.times)
    achieved = flops / median
    entry = {
        **_mode_fields(runner.mode),
        "status": "ok",
        "median_s": median,
        "min_s": min(runner.times),
        "times_s": runner.times,
        "first_call_s": runner.first_call_s,
        "samples_per_s": batch / median,
        "gflops_per_s": achieved / 1e9,
        "peak_dtype": runner.mode.peak_dtype,
        "speedup_vs_fp32": baseline_s / median if baseline_s else None,
    }
    if runner.mode.compiled:
        entry["compile_s"] = max(0.0, runner.first_call_s - median)
    if peak and runner.mode.peak_dtype in peak:
        dtype_peak = peak[runner.mode.peak_dtype]
        entry["ratio_to_conv_peak"] = achieved / (dtype_peak["conv_gflops"] * 1e9)
        entry["ratio_to_matmul_peak"] = achieved / (dtype_peak["matmul_gflops"] * 1e9)
    if reference is not None and runner.first_alpha is not None:
        difference = (runner.first_alpha.float() - reference.float()).abs()
        entry["alpha_max_abs_diff"] = float(difference.max())
        entry["alpha_mean_abs_diff"] = float(difference.mean())
    return entry


def time_optimizer_step(model_config: str, device: torch.device, implementations=OPTIMIZER_IMPLEMENTATIONS,
                        repeats: int = 5, progress: Callable[[str], None] = print) -> dict:
    """Seconds of one Adam step over the generator's trainable parameters (random gradients), per implementation."""
    model = build_generator(model_config).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator(device="cpu").manual_seed(0)
    for p in trainable:
        p.grad = (torch.randn(p.shape, generator=generator) * 1e-3).to(device)
    results = {"parameters": sum(p.numel() for p in trainable)}
    for implementation in implementations:
        if implementation == "fused" and device.type not in ("cpu", "cuda"):
            continue
        try:
            optimizer = make_optimizer(trainable, implementation)
            optimizer.step()  # allocates state
            times = [timed_call(optimizer.step, device)[0] for _ in range(repeats)]
            results[implementation] = {"median_s": _median(times), "min_s": min(times)}
            progress(f"[optim] Adam {implementation}: {_median(times) * 1e3:.1f} ms per step")
        except (RuntimeError, ValueError) as error:
            results[implementation] = {"status": "failed", "reason": str(error)[:300]}
        time.sleep(0)
    return results
