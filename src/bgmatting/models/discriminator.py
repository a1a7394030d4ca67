"""pix2pixHD multiscale PatchGAN discriminator, as used (one scale) by Background Matting's real-data stage."""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from bgmatting.models.blocks import NormSpec, init_weights, resolve_norm

KERNEL_SIZE = 4
PADDING = math.ceil((KERNEL_SIZE - 1) / 2)  # = 2, as pix2pixHD
MAX_CHANNELS = 512


def _stage(in_channels: int, out_channels: int, stride: int, norm, activation: bool) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, KERNEL_SIZE, stride=stride, padding=PADDING)
    )
    if norm is not None:
        layers["norm"] = norm(out_channels)
    if activation:
        layers["act"] = nn.LeakyReLU(0.2, inplace=True)
    return nn.Sequential(layers)


class PatchDiscriminator(nn.Module):
    """One scale: n_layers + 2 stages of Conv 4x4, the last one giving a 1-channel patch map (no sigmoid).

    Stage 0: Conv s2 -> LeakyReLU(0.2). Stages 1..n_layers-1: Conv s2 -> norm -> LeakyReLU. Stage n_layers:
    Conv s1 -> norm -> LeakyReLU. Last stage: Conv s1 -> 1 channel. Channels double from ``ndf``, capped at 512.
    B x C x H x W -> B x 1 x h x w (512 x 512 -> 67 x 67 with n_layers=3).
    """

    def __init__(self, in_channels: int, ndf: int, n_layers: int, norm: NormSpec) -> None:
        super().__init__()
        norm = resolve_norm(norm)
        stages = [_stage(in_channels, ndf, 2, None, True)]
        channels = ndf
        for _ in range(1, n_layers):
            out = min(channels * 2, MAX_CHANNELS)
            stages.append(_stage(channels, out, 2, norm, True))
            channels = out
        out = min(channels * 2, MAX_CHANNELS)
        stages.append(_stage(channels, out, 1, norm, True))
        stages.append(_stage(out, 1, 1, None, False))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, the last being the patch map."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGAN discriminators on the input downsampled 1, 2, 4 ... times.

    Between scales the input is average-pooled (3x3, stride 2, padding 1, count_include_pad=False).
    ``scales[0]`` sees the full-resolution input. Norm defaults to InstanceNorm without affine parameters.

    ``forward(x)`` returns a list with one entry per scale (full resolution first): the patch map
    B x 1 x h x w (raw scores, no sigmoid), or, when ``return_features`` is set (constructor default, or per
    call), the list of every stage's output for that scale (last = patch map), e.g. for a feature-matching loss.
    Initialised with the original's scheme (xavier_uniform gain sqrt(2)); ``rng`` seeds it.
    """

    def __init__(
        self,
        in_channels: int = 3,
        ndf: int = 64,
        n_layers: int = 3,
        num_d: int = 1,
        norm: NormSpec = "instance",
        return_features: bool = False,
        rng: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if min(in_channels, ndf, n_layers, num_d) < 1:
            raise ValueError(
                f"invalid discriminator size: in_channels={in_channels}, ndf={ndf}, n_layers={n_layers}, "
                f"num_d={num_d} must all be >= 1"
            )
        self._config: dict[str, Any] = dict(
            in_channels=in_channels, ndf=ndf, n_layers=n_layers, num_d=num_d, norm=norm, return_features=return_features
        )
        self.return_features = return_features
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers, norm) for _ in range(num_d))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        init_weights(self, rng)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (a copy), e.g. to store in a checkpoint."""
        return dict(self._config)

    def forward(
        self, x: torch.Tensor, return_features: bool | None = None
    ) -> list[torch.Tensor] | list[list[torch.Tensor]]:
        """B x C x H x W (any range; the original feeds [-1, 1] images) -> per-scale patch maps or feature lists."""
        features = self.return_features if return_features is None else return_features
        results = []
        for index, scale in enumerate(self.scales):
            if index > 0:
                x = self.downsample(x)
            outputs = scale(x)
            results.append(outputs if features else outputs[-1])
        return results
