"""Export a :class:`bgmatting.models.MattingModel` to ONNX or TorchScript, with a parity check against PyTorch.

The exported graph is the MattingModel itself (the same forward that training, evaluation and inference
call): inputs and outputs in image space [0, 1], batch, height and width dynamic:

* inputs ``image`` B x 3 x H x W, ``background`` B x 3 x H x W, ``segmentation`` B x 1 x H x W (already
  post-processed, see :func:`bgmatting.preprocess.segment.postprocess_segmentation`), ``motion`` B x M x H x W
  (M = 4 grayscale frames); H and W multiples of 4 (the model pads other sizes in PyTorch; the graph does not);
* outputs ``alpha`` B x 1 x H x W and ``foreground`` B x 3 x H x W, with F = I where alpha > 0.975.

With the original wiring (``motion_uses_background_feature=True``, the released models) the motion cues
cannot change the output and the ONNX exporter drops the unused ``motion`` input: feed only the inputs the
session lists (``session.get_inputs()``). TorchScript keeps all four.

A model with a refiner (base + :class:`bgmatting.models.Refiner`) exports in refine mode ``thresholding`` or
``full`` (``sampling`` needs TopK, which many runtimes limit): patch selection is a comparison and NonZero,
crops are gathers and the paste a ScatterND. Its graph has a **fixed H x W**, the export size (the base's
resolution is computed from the frame size at trace time); the batch stays dynamic. Its parity is checked at
the export size with batches of 1 and 2.

Cropping, the segmentation post-process and the connected-component clean-up stay outside the graph (they
are in :mod:`bgmatting.inference`). After writing, the file is run (onnxruntime or torch.jit.load) at the
export resolution and at a second one, and the largest absolute differences to PyTorch are reported; the
file is moved to its final name only when alpha agrees within ``tolerance``.
"""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from bgmatting.io import atomic_path
from bgmatting.models import MattingModel, NonFiniteOutputError

FORMATS = ("onnx", "torchscript")
INPUT_NAMES = ("image", "background", "segmentation", "motion")
OUTPUT_NAMES = ("alpha", "foreground")
DEFAULT_OPSET = 17
#: Largest accepted |alpha difference|: a quarter of one 8-bit level. fp32 kernels that sum in another order
#: (ONNX Runtime, BatchNorm folded into the convolutions) differ by ~1e-6 relative to the pre-tanh activations,
#: which reach the hundreds in a randomly initialised full-size generator: 6e-4 measured there, < 1e-5 on small ones.
DEFAULT_TOLERANCE = 1e-3


class ExportError(ValueError):
    """An export that cannot be made or was refused: bad options, missing packages, a failed parity check."""


class ParityError(ExportError):
    """The exported file's outputs differ from PyTorch's by more than the tolerance (the file is not kept)."""


def onnxruntime():
    """The ``onnxruntime`` module, or ExportError saying how to install the export extras."""
    try:
        import onnxruntime as ort  # an optional dependency: only ONNX export needs it
    except ImportError:
        raise ExportError('ONNX export needs the packages onnx and onnxruntime: '
                          'pip install "bgmatting[export]"') from None
    return ort


def example_inputs(
    height: int, width: int, batch: int = 1, motion_frames: int = 4, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Deterministic inputs in [0, 1]: a smooth image, a background differing from it inside a disc (the
    "subject"), the disc as segmentation, and 4 x gray(image) as motion cues."""
    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height).view(1, 1, height, 1)
    xs = torch.linspace(0, 1, width).view(1, 1, 1, width)
    background = torch.cat([ys.expand(batch, 1, height, width), xs.expand(batch, 1, height, width),
                            (0.5 * (ys + xs)).expand(batch, 1, height, width)], dim=1)
    background = (background + 0.05 * torch.rand(batch, 3, height, width, generator=gen)).clamp(0, 1)
    disc = (((ys - 0.55) ** 2 + (xs - 0.5) ** 2) < 0.08).float().expand(batch, 1, height, width)
    subject = torch.rand(batch, 3, 1, 1, generator=gen).expand(batch, 3, height, width)
    image = disc * subject + (1 - disc) * background
    gray = (0.299 * image[:, 0:1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:3]).expand(batch, motion_frames, -1, -1)
    return image.contiguous(), background.contiguous(), disc.contiguous(), gray.contiguous()


#: Refine modes that export (``sampling`` selects with TopK).
EXPORT_REFINE_MODES = ("thresholding", "full")


def has_fixed_size(model: MattingModel) -> bool:
    """Whether the exported graph of ``model`` has a fixed H x W (a refining model's); else H, W are dynamic."""
    return model.refiner is not None


def write_onnx(model: MattingModel, path: Path, height: int, width: int, opset: int = DEFAULT_OPSET) -> None:
    """Trace-based ONNX export (``dynamo=False``) of ``model`` with dynamic batch, height and width (a refining
    model: dynamic batch, fixed ``height`` x ``width``)."""
    if opset < 17:
        raise ExportError(f"opset must be >= 17, got {opset}")
    inputs = example_inputs(height, width, motion_frames=model.motion_frames)
    axes = {0: "batch"} if has_fixed_size(model) else {0: "batch", 2: "height", 3: "width"}
    dynamic = {name: axes for name in INPUT_NAMES + OUTPUT_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks become constants
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter announces its age
        # the refiner's crops index with patch positions from NonZero, never negative (the warning's caveat)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(
            model,
            inputs,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def write_torchscript(model: MattingModel, path: Path, height: int, width: int) -> None:
    """torch.jit.trace of ``model`` (its control flow depends only on H and W being multiples of 4, so tracing
    is exact for such sizes)."""
    inputs = example_inputs(height, width, motion_frames=model.motion_frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit", category=FutureWarning)
        traced = torch.jit.trace(model, inputs, check_trace=False)
    traced.save(str(path))


def _runner(kind: str, path: Path):
    """A function (inputs) -> (alpha, foreground) numpy, running the exported file."""
    if kind == "onnx":
        session = onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run(inputs: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, np.ndarray]:
            feed = {name: tensor.numpy() for name, tensor in zip(INPUT_NAMES, inputs) if name in names}
            alpha, foreground = session.run(list(OUTPUT_NAMES), feed)
            return alpha, foreground

        return run
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit", category=FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")

    def run(inputs: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, np.ndarray]:
        # The profiling executor's first-call optimisation costs seconds and does not change fp32 numerics.
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            alpha, foreground = module(*inputs)
        return alpha.numpy(), foreground.numpy()

    return run


def check_parity(
    model: MattingModel, path: Path, kind: str, sizes: list[tuple[int, int]], batch: int | list[int] = 1
) -> list[dict[str, float | int]]:
    """Run the exported file and PyTorch on :func:`example_inputs` at each (H, W) (with the batch size of the
    same index when ``batch`` is a list); largest |difference|.

    Returns one row per size: height, width, batch, alpha_max_abs_diff, foreground_max_abs_diff (F over pixels
    with alpha > 0.01, where it matters), alpha_mean_abs_diff.
    """
    run = _runner(kind, path)
    rows = []
    batches = batch if isinstance(batch, list) else [batch] * len(sizes)
    for seed, ((height, width), batch) in enumerate(zip(sizes, batches)):
        inputs = example_inputs(height, width, batch=batch, motion_frames=model.motion_frames, seed=seed + 1)
        with torch.inference_mode():
            alpha_ref, fg_ref = (t.numpy() for t in model(*inputs))
        if not (np.isfinite(alpha_ref).all() and np.isfinite(fg_ref).all()):
            raise NonFiniteOutputError(f"the model's output holds NaN or infinite values at {height}x{width} "
                                       "(its weights), so there is nothing to export")
        alpha, foreground = run(inputs)
        if alpha.shape != alpha_ref.shape or foreground.shape != fg_ref.shape:
            raise ParityError(
                f"{path}: output shapes {alpha.shape}, {foreground.shape} differ from PyTorch's "
                f"{alpha_ref.shape}, {fg_ref.shape} at {height}x{width}"
            )
        visible = np.broadcast_to(alpha_ref > 0.01, fg_ref.shape)
        fg_diff = np.abs(foreground - fg_ref)[visible]
        rows.append(
            {
                "height": height,
                "width": width,
                "batch": batch,
                "alpha_max_abs_diff": float(np.abs(alpha - alpha_ref).max()),
                "alpha_mean_abs_diff": float(np.abs(alpha - alpha_ref).mean()),
                "foreground_max_abs_diff": float(fg_diff.max()) if fg_diff.size else 0.0,
            }
        )
    return rows


def _check_sizes(sizes: list[tuple[int, int]]) -> None:
    for h, w in sizes:
        if h % 4 or w % 4 or h < 4 or w < 4:
            raise ExportError(f"export sizes must be positive multiples of 4, got {h}x{w}")


def export_model(
    model: MattingModel,
    output: str | os.PathLike,
    kind: str = "onnx",
    *,
    opset: int = DEFAULT_OPSET,
    size: tuple[int, int] = (256, 256),
    check_size: tuple[int, int] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[dict[str, float | int]]:
    """Export ``model`` (a copy in eval mode, fp32, NCHW, on the CPU) to ``output`` and check parity at ``size``
    and ``check_size`` (default: a different, non-square size, proving dynamic height and width).

    A refining model must run in refine mode ``thresholding`` or ``full`` (:data:`EXPORT_REFINE_MODES`); its graph
    has the fixed H x W ``size`` (``check_size`` must be None or equal), so parity is checked at ``size`` with
    batches of 1 and 2 (the batch stays dynamic).

    The file is written under a temporary name and renamed only when every alpha difference is within
    ``tolerance``; otherwise it is deleted and a :class:`ParityError` reports the numbers. Bad options are an
    :class:`ExportError`, a model whose output is not finite a NonFiniteOutputError. Returns the parity rows.
    """
    if kind not in FORMATS:
        raise ExportError(f"unknown format {kind!r}; choose one of {', '.join(FORMATS)}")
    _check_sizes([size] + ([check_size] if check_size else []))
    if kind == "onnx":
        onnxruntime()  # the packages first: nothing is written without them
    sizes, batches = _parity_cases(model, size, check_size)
    model = copy.deepcopy(model).float().cpu().eval().set_precision(None)
    model.to(memory_format=torch.contiguous_format)
    with atomic_path(output) as partial:
        if kind == "onnx":
            write_onnx(model, partial, *size, opset=opset)
        else:
            write_torchscript(model, partial, *size)
        rows = check_parity(model, partial, kind, sizes, batches)
        worst = max(row["alpha_max_abs_diff"] for row in rows)
        if not worst <= tolerance:
            raise ParityError(f"{output}: parity check failed, alpha max |diff| {worst:.3g} > {tolerance:g} "
                              f"(--tolerance); not written. Per size: {rows}")
    return rows


def _parity_cases(
    model: MattingModel, size: tuple[int, int], check_size: tuple[int, int] | None
) -> tuple[list[tuple[int, int]], list[int]]:
    """(sizes, batches) of the parity check: ``size`` and ``check_size`` (default a different, non-square size)
    at batch 1; a refining model (fixed H x W): ``size`` at batches 1 and 2."""
    if not has_fixed_size(model):
        if check_size is None:
            check_size = (max(4, size[0] * 3 // 4 // 4 * 4), max(4, size[1] * 3 // 2 // 4 * 4))  # 256x256 -> 192x384
        return [size, check_size], [1, 1]
    if model.refine_mode not in EXPORT_REFINE_MODES:
        raise ExportError(f"a refining model exports in refine mode {' or '.join(EXPORT_REFINE_MODES)} "
                         f"(mode {model.refine_mode!r} selects patches with TopK)")
    if check_size is not None and tuple(check_size) != tuple(size):
        raise ExportError(f"a refining model's graph has a fixed H x W ({size[0]}x{size[1]}, the export size); "
                         f"it cannot be checked at {check_size[0]}x{check_size[1]}: export once per frame size")
    return [size, size], [1, 2]
