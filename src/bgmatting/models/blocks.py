"""Layers shared by the generator and the discriminator, and the original weight initialisation.

Every conv-norm-activation group is an ``nn.Sequential`` with named children (``conv``, ``norm``,
``relu`` ...), so state-dict keys read like ``image_encoder.down1.conv.weight``.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

NormFactory = Callable[[int], nn.Module]
NormSpec = Union[str, NormFactory]

NORM_NAMES = ("batch", "instance", "sync_batch")


def resolve_norm(norm: NormSpec) -> NormFactory:
    """Turn a norm name into a factory ``channels -> nn.Module``; a callable is returned unchanged.

    ``"batch"``: BatchNorm2d (the original generator). ``"sync_batch"``: SyncBatchNorm (multi-GPU
    training; behaves as BatchNorm2d when no process group is initialised). ``"instance"``:
    InstanceNorm2d without affine parameters or running statistics (pix2pix convention; the original
    discriminator).
    """
    if callable(norm):
        return norm
    if norm == "batch":
        return nn.BatchNorm2d
    if norm == "sync_batch":
        return nn.SyncBatchNorm
    if norm == "instance":
        return lambda channels: nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORM_NAMES)} or pass a factory channels -> module")


def conv_norm_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    norm: NormFactory,
    *,
    stride: int = 1,
    padding: int = 0,
    bias: bool = True,
) -> nn.Sequential:
    """Conv2d -> norm -> ReLU, children named ``conv``, ``norm``, ``relu``."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias),
            norm=norm(out_channels),
            relu=nn.ReLU(inplace=True),
        )
    )


def stem(in_channels: int, out_channels: int, norm: NormFactory) -> nn.Sequential:
    """Full-resolution entry: ReflectionPad 3 -> Conv 7x7 -> norm -> ReLU (``pad``, ``conv``, ``norm``, ``relu``)."""
    return nn.Sequential(
        OrderedDict(
            pad=nn.ReflectionPad2d(3),
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=7),
            norm=norm(out_channels),
            relu=nn.ReLU(inplace=True),
        )
    )


def upsample_conv_norm_relu(in_channels: int, out_channels: int, norm: NormFactory) -> nn.Sequential:
    """x2 bilinear upsampling (align_corners=True, as the original) -> Conv 3x3 -> norm -> ReLU."""
    return nn.Sequential(
        OrderedDict(
            upsample=nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            norm=norm(out_channels),
            relu=nn.ReLU(inplace=True),
        )
    )


def output_head(in_channels: int, out_channels: int, kernel_size: int = 7) -> nn.Sequential:
    """Full-resolution exit: ReflectionPad k//2 -> Conv kxk (``pad``, ``conv``), shape preserving for odd k; no norm,
    no activation. The original's heads use k = 7."""
    return nn.Sequential(
        OrderedDict(
            pad=nn.ReflectionPad2d(kernel_size // 2),
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size),
        )
    )


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B x C x h x w -> B x C x ``size``, bilinear with align_corners=False (pixel areas map onto pixel areas,
    no antialiasing: it exports to ONNX); returned unchanged when already that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ResnetBlock(nn.Module):
    """Residual block: x + norm(conv3(pad(relu(norm(conv3(pad(x))))))), reflect padding, conv bias on.

    Shape preserving: B x C x H x W -> B x C x H x W.
    """

    def __init__(self, channels: int, norm: NormFactory) -> None:
        super().__init__()
        self.pad1 = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3)
        self.norm1 = norm(channels)
        self.relu = nn.ReLU(inplace=True)
        self.pad2 = nn.ReflectionPad2d(1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3)
        self.norm2 = norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(self.pad1(x))))
        return x + self.norm2(self.conv2(self.pad2(y)))


def fold_batchnorm(conv: nn.Conv2d, norm: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``norm(conv(x))`` as one convolution, for inference: (weight out x in x k x k, bias out).

    ``norm`` is applied with its running statistics (eval mode), whatever mode it is in; None gives the conv's own
    weight and bias (zeros when it has none). Computed in float64, returned detached in the weight's dtype, device
    and memory format. A norm that is not a BatchNorm with running statistics is a ValueError.
    """
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(weight.shape[0])
    if norm is None:
        return weight, bias
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or norm.running_var is None:
        raise ValueError(f"cannot fold {type(norm).__name__} into a convolution "
                         "(only BatchNorm with running statistics)")
    scale = torch.rsqrt(norm.running_var.detach().double() + norm.eps)
    shift = -norm.running_mean.detach().double() * scale
    if norm.affine:
        gamma, beta = norm.weight.detach().double(), norm.bias.detach().double()
        scale, shift = scale * gamma, shift * gamma + beta
    folded = (weight.double() * scale.view(-1, 1, 1, 1)).to(weight.dtype)
    return folded, (bias.double() * scale + shift).to(bias.dtype)


_FUSED_CONV = {"available": hasattr(torch.ops.mkldnn, "_convolution_pointwise")}


def tracing() -> bool:
    """True while the code is traced or compiled (jit.trace, ONNX export, torch.compile): eager-only shortcuts that
    read sizes as Python numbers, or call ops the exporters do not know, must not run then."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def _fusable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """oneDNN's fused convolution applies: CPU, float32 operands, no autocast, no gradient, not traced."""
    return (_FUSED_CONV["available"] and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not torch.is_autocast_enabled("cpu") and not torch.is_grad_enabled() and not tracing())


def fused_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    stride: int = 1,
    padding: int = 0,
    relu: bool = False,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``conv2d(x) [+ residual]``, then ReLU if ``relu``: B x C x H x W -> B x out x H' x W' (zero ``padding``).

    Inference helper. Without gradient the ReLU runs in place on the convolution's output, and on a CPU in
    float32 the residual add is done by oneDNN while the output is in cache (the same values as the separate
    ops). The ReLU is deliberately not fused: oneDNN's fused ReLU turns NaN into 0, which would hide broken
    weights from the non-finite output check. ``relu`` and ``residual`` are exclusive.
    """
    if relu and residual is not None:
        raise ValueError("fused_conv: relu and residual cannot be combined")
    if residual is not None and _fusable(x, weight):
        try:
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual.to(memory_format=_format_of(x)), weight, bias, [padding] * 2, [stride] * 2, [1, 1], 1,
                "add", None, None, [None], None)
        except RuntimeError:  # an op this build does not provide: use the separate ops from now on
            _FUSED_CONV["available"] = False
    y = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    if residual is not None:
        y = y + residual
    if relu:
        y = torch.relu(y) if torch.is_grad_enabled() else y.relu_()
    return y


def _format_of(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format


def cat_channels_last(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(parts, dim=1)`` written straight into a channels_last tensor (inference: the layout oneDNN's
    convolutions read, so they need no copy of their input). Not differentiable."""
    first = parts[0]
    shape = (first.shape[0], sum(p.shape[1] for p in parts), *first.shape[2:])
    out = torch.empty(shape, dtype=first.dtype, device=first.device, memory_format=torch.channels_last)
    return torch.cat(parts, dim=1, out=out)


def reflect_pad(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Reflection padding of ``padding`` pixels on each side of B x C x H x W (the original's ReflectionPad2d)."""
    return F.pad(x, (padding,) * 4, mode="reflect") if padding else x


def init_weights(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """The original's initialisation, applied to every submodule (in place; returns ``module``).

    Conv and Linear weights: xavier_uniform with gain sqrt(2), bias 0. Affine norm layers (BatchNorm,
    SyncBatchNorm, affine InstanceNorm/GroupNorm): weight ~ N(1, 0.2), bias 0. Draws come from
    ``generator`` when given, else from torch's global RNG (so ``torch.manual_seed`` makes it reproducible).
    A module with tensors on the ``meta`` device is returned as it is.
    """
    if any(p.is_meta for p in module.parameters()):
        return module  # shapes only (e.g. a network's size counted on the meta device): there are no values to draw
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    for m in module.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, gain=math.sqrt(2.0), generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, norm_types) and getattr(m, "weight", None) is not None:
            nn.init.normal_(m.weight, 1.0, 0.2, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
