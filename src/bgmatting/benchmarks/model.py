"""What the model benchmarks run: the matting model, its FLOP count, and one mode's training step or inference call.

Every call goes through :class:`bgmatting.models.MattingModel`, as training and inference do: ``train`` =
forward + the supervised stage's loss (:class:`bgmatting.engine.stages.AdobeStage`) + backward + Adam step,
in the training loop's order; ``infer`` = eval-mode forward under inference mode, image space in and out.
FLOPs are counted with ``torch.utils.flop_counter`` on the meta device (no compute): the network's nominal
work, the same for every mode.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from hydra import compose, initialize_config_module
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bgmatting.benchmarks.inputs import make_batch, model_inputs
from bgmatting.benchmarks.modes import BenchMode
from bgmatting.engine.recipe import build_matting_model, to_plain
from bgmatting.engine.stages import AdobeStage, Networks
from bgmatting.models import Generator, MattingModel
from bgmatting.runtime import Precision

# Generator sizes. "default" is the paper's network (17.9 M parameters); "tiny" is for smoke tests only.
MODEL_CONFIGS: dict[str, dict] = {
    "default": {},
    "tiny": dict(ngf=8, nf_part=8, n_blocks1=1, n_blocks2=1),
}
KINDS = ("train", "infer")
LEARNING_RATE = 1e-4  # the paper's generator learning rate
OPTIMIZER_IMPLEMENTATIONS = ("default", "foreach", "fused", "for-loop")


def build_generator(model_config: str, seed: int = 0, device: torch.device | str = "cpu") -> Generator:
    """A freshly initialised Generator of the named size, seeded, on ``device`` (train mode); benchmarks run it
    wrapped in a :class:`MattingModel` (:func:`build_model`)."""
    if model_config not in MODEL_CONFIGS:
        raise ValueError(f"unknown model config {model_config!r}; choose from {', '.join(MODEL_CONFIGS)}")
    if torch.device(device).type == "meta":
        with torch.device("meta"):
            return Generator(**MODEL_CONFIGS[model_config])
    rng = torch.Generator(device="cpu").manual_seed(seed)
    return Generator(**MODEL_CONFIGS[model_config], rng=rng).to(device)


def build_model(model_config: str, seed: int = 0, device: torch.device | str = "cpu") -> MattingModel:
    """:func:`build_generator`'s network in a :class:`MattingModel` (image space in and out)."""
    return MattingModel(build_generator(model_config, seed, device))


def configured_model(name: str, seed: int = 0, device: torch.device | str = "cpu") -> MattingModel:
    """The model of the training config group ``model=name`` (``configs/model/<name>.yaml``, e.g. ``paper`` or
    ``paper_refine``), built as training builds it, freshly initialised with ``seed``, on ``device``
    (train mode). Unlike :data:`MODEL_CONFIGS`, these carry refiners and the paper's motion wiring."""
    with initialize_config_module(config_module="bgmatting.configs", version_base="1.3", job_name="bench"):
        cfg = compose(config_name="train", overrides=[f"model={name}"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_matting_model(to_plain(cfg.model)).to(device)


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


FLOP_REFERENCE_SIZE = 16


def count_flops(model_config: str, kind: str, batch: int, size: int, width: int | None = None) -> int:
    """FLOPs of one forward (``infer``) or forward + loss + backward (``train``) at ``batch`` x ``size`` x
    ``width`` (default: square).

    Counted with ``torch.utils.flop_counter`` on the meta device (no compute) at batch 1 and
    ``FLOP_REFERENCE_SIZE``, then scaled by batch x pixels: for sizes that are multiples of 4 every
    convolution's output has exactly H W / stride^2 pixels, so the count is exactly linear (checked
    against a direct count in the tests).
    """
    width = size if width is None else width
    if size % 4 or width % 4:
        raise ValueError(f"sizes must be multiples of 4, got {size} x {width}")
    reference = _count_flops_direct(model_config, kind, 1, FLOP_REFERENCE_SIZE)
    return reference * batch * size * width // FLOP_REFERENCE_SIZE**2


@functools.lru_cache(maxsize=None)
def _count_flops_direct(model_config: str, kind: str, batch: int, size: int) -> int:
    return flops_on_meta(build_model(model_config, device="meta"), kind, batch, size)


def flops_on_meta(model: MattingModel, kind: str, batch: int, size: int) -> int:
    """FLOPs of one inference (``infer``) or supervised training step (``train``) of a plain ``model`` built on
    the meta device, at ``batch`` x ``size``^2 (no compute: torch.utils.flop_counter on meta tensors)."""
    shapes = {k: v.shape[1] for k, v in make_batch(1, 8).items()}  # channel counts; values are unused on meta
    meta = {k: torch.empty((batch, channels, size, size), device="meta") for k, channels in shapes.items()}
    counter = FlopCounterMode(display=False)
    with counter:
        if kind == "train":
            adobe_training_loss(AdobeStage(Networks(model)), meta).backward()
        else:
            model.eval()
            with torch.no_grad():
                model(*model_inputs(meta, torch.device("meta")))
    return int(counter.get_total_flops())


def calibrate_batchnorm(model: MattingModel | Generator, batch: dict[str, torch.Tensor]) -> nn.Module:
    """Set every BatchNorm's running statistics to the batch statistics of the image-space sample dict ``batch``
    (run through a :class:`MattingModel`; a bare Generator is wrapped); leave ``model`` in eval mode.

    Fresh running statistics (mean 0, variance 1) make an untrained network's eval output saturate, which
    would make the comparison between modes meaningless; calibrated statistics keep alpha non-trivial.
    """
    matting = model if isinstance(model, MattingModel) else MattingModel(model)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch sets the statistics exactly
    model.train()
    with torch.no_grad():
        matting(*model_inputs(batch, next(model.parameters()).device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


@dataclass
class ModeRunner:
    """A mode's prepared model and its one-call ``step`` (returns alpha B x 1 x H x W in [0, 1], detached)."""

    mode: BenchMode
    step: Callable[[], torch.Tensor]
    first_alpha: torch.Tensor | None = None
    first_call_s: float | None = None
    times: list[float] = field(default_factory=list)
    paired_times: list[float] = field(default_factory=list)  # re-timed next to the compiled mode
    memory: dict = field(default_factory=dict)  # peak_memory_mib and memory_method of one timed call


def make_runner(kind: str, base_model: MattingModel, mode: BenchMode, batch: dict[str, torch.Tensor],
                optimizer_impl: str = "default", inference_freezing: bool = True) -> ModeRunner:
    """Copy ``base_model`` into ``mode`` and return its runner.

    ``base_model``: a :class:`MattingModel`; ``batch``: image-space sample dict on the device. ``infer`` steps
    return the model's alpha. ``train`` steps run the supervised stage's loss (:class:`AdobeStage`) with the
    step order of the training loop (autocast forward + loss, then zero_grad, backward, optimiser step); the
    returned alpha is the stage's (first <= 4 samples).
    ``inference_freezing``: let inductor fold BatchNorm into convolutions and pre-pack weights when
    compiling the inference forward. A compiled mode runs under :func:`inductor_options`.
    """
    precision = mode.precision
    model = copy.deepcopy(base_model).set_precision(precision)
    inputs = model_inputs(batch, next(model.parameters()).device)
    network = torch.compile(model, dynamic=False) if mode.compiled else model

    def compiled(step: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        if not mode.compiled:
            return step
        import torch._inductor.config as inductor_config  # loads inductor (seconds): only for compiled modes

        options = inductor_options(kind, precision, inference_freezing)

        def step_with_options() -> torch.Tensor:
            with inductor_config.patch(options):
                return step()
        return step_with_options

    if kind == "infer":
        model.eval()

        def infer_step() -> torch.Tensor:
            with torch.inference_mode():
                alpha, _ = network(*inputs)
            return alpha

        return ModeRunner(mode, compiled(infer_step))

    model.train()
    optimizer = make_optimizer(model.parameters(), optimizer_impl)
    scaler = torch.amp.GradScaler(precision.device_type) if precision.needs_grad_scaler else None

    stage = AdobeStage(Networks(network), precision)

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

    return ModeRunner(mode, compiled(train_step))


def inductor_options(kind: str, precision: Precision, inference_freezing: bool = True) -> dict:
    """Inductor settings of a compiled mode.

    ``layout_optimization`` follows the eager base's memory format: left on, inductor turns NCHW
    convolutions into channels_last ones, whose fp32 weight-gradient kernels are 3-5x slower than the
    NCHW ones on AVX2 CPUs (oneDNN), so "compile of fp32 NCHW" would silently become something slower.
    ``freezing`` (inference only) folds BatchNorm into the convolutions and pre-packs the weights.
    """
    options = {"layout_optimization": precision.channels_last}
    if kind == "infer" and inference_freezing:
        options["freezing"] = True
    return options
