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
