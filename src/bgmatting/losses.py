"""Loss terms of Background Matting, each a small function of tensors.

All image-like tensors are in *network space* [-1, 1] as in the public code (alpha included: the raw
tanh output, -1 = background, 1 = foreground). Shapes are B x C x H x W; masks are B x 1 x H x W (or
B x C x H x W) with values in {0, 1} (any non-negative weights work).

Normalisation follows the public code's ``normalized_l1_loss``: per sample
``sum |a*m - b*m| / (sum m + 1e-6)``, where the mask is broadcast over the channels of ``a`` but counted
once per pixel; samples whose mask is empty contribute 0; the sum is divided by the batch size.
A 3-channel term is therefore the per-pixel *sum* over channels (3x a per-channel mean), which is what
the paper's loss weights were tuned with.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from bgmatting.data.compositing import composite
from bgmatting.space import from_network

EPS = 1e-6

# Sobel kernels exactly as the public code applies them (cross-correlation, zero padding 1).
_SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
_SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


def normalized_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Masked L1 normalised by the mask area, averaged over the batch (scalar).

    ``prediction``/``target``: B x C x H x W. ``mask``: B x 1 x H x W or B x C x H x W; None = all pixels
    (counted as a 1-channel mask, as the public code's ``mask0``).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"normalized_l1: shapes differ: {tuple(prediction.shape)} vs {tuple(target.shape)}")
    if mask is None:
        mask = torch.ones_like(prediction[:, :1])
    mask = mask.to(prediction.dtype)
    per_sample_error = (prediction * mask - target * mask).abs().flatten(1).sum(dim=1)
    per_sample_area = mask.flatten(1).sum(dim=1)
    # An empty mask gives 0 / eps = 0: the public code's "skip this sample" with the same batch divisor.
    return (per_sample_error / (per_sample_area + EPS)).sum() / prediction.shape[0]


def sobel_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel responses of a B x 1 x H x W tensor (zero padding, same size)."""
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"sobel_gradients expects B x 1 x H x W, got {tuple(x.shape)}")
    kx = torch.tensor(_SOBEL_X, dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    ky = torch.tensor(_SOBEL_Y, dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    return F.conv2d(x, kx, padding=1), F.conv2d(x, ky, padding=1)


def alpha_gradient_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L1 between Sobel x/y gradients of predicted and target alpha (B x 1 x H x W): sum of both directions."""
    pgx, pgy = sobel_gradients(prediction)
    tgx, tgy = sobel_gradients(target)
    return normalized_l1(pgx, tgx, mask) + normalized_l1(pgy, tgy, mask)


def _gaussian_blur5(x: torch.Tensor) -> torch.Tensor:
    """5 x 5 binomial blur (1 4 6 4 1)/16 per channel, reflect padding; B x C x H x W (H, W >= 3) -> same shape."""
    taps = torch.tensor((1.0, 4.0, 6.0, 4.0, 1.0), dtype=x.dtype, device=x.device) / 16.0
    kernel = (taps[:, None] * taps[None, :]).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass levels of ``x`` (B x C x H x W), finest first: x_i - up(down(x_i)), then the last low-pass."""
    bands = []
    for _ in range(levels - 1):
        if min(x.shape[-2:]) < 4:
            break
        low = _gaussian_blur5(x)[..., ::2, ::2]
        up = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)
        bands.append(x - up)
        x = low
    return bands + [x]


def laplacian_l1(prediction: torch.Tensor, target: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """L1 between Laplacian pyramids of ``prediction`` and ``target`` (B x C x H x W), level i weighted 2**i,
    averaged over the levels (RobustVideoMatting's alpha loss; it weighs edges at every scale). Scalar."""
    pairs = zip(laplacian_pyramid(prediction, levels), laplacian_pyramid(target, levels))
    values = [(2.0 ** i) * (p - t).abs().mean() for i, (p, t) in enumerate(pairs)]
    return torch.stack(values).sum() / len(values)


def compose_l1(
    image: torch.Tensor,
    alpha: torch.Tensor,
    foreground: torch.Tensor,
    background: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """L1 between the image and the re-composite alpha*F + (1-alpha)*B (all network space; alpha is brought
    to [0, 1] for the blend, F and B stay in [-1, 1])."""
    return normalized_l1(composite(from_network(alpha), foreground, background), image, mask)


def error_map_mse(error: torch.Tensor, alpha: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of a predicted error map against the actual error of ``alpha`` (scalar).

    ``error``: B x 1 x H x W in [0, 1], the predicted |alpha - true alpha| in image units (the refine head's
    sigmoid). ``alpha`` and ``target``: predicted and true alpha B x 1 x H x W in network space [-1, 1].
    The regression target |alpha - target| / 2 (image units) is detached: the term trains the error map only
    and never pushes alpha towards the error it predicts (BackgroundMattingV2 lets that gradient through).
    """
    if error.shape != alpha.shape or alpha.shape != target.shape:
        raise ValueError(
            f"error_map_mse: shapes differ: {tuple(error.shape)}, {tuple(alpha.shape)}, {tuple(target.shape)}"
        )
    actual = ((alpha - target).abs() / 2.0).detach()
    return F.mse_loss(error, actual.to(error.dtype))


def replace_opaque_foreground(
    foreground: torch.Tensor, image: torch.Tensor, alpha: torch.Tensor, threshold: float = 0.95
) -> torch.Tensor:
    """F with I copied where network-space alpha > ``threshold`` (0.95 in [-1,1] = 0.975 in [0,1]).

    The public code composites with this F in its losses; the switch itself carries no gradient.
    """
    opaque = (alpha > threshold).to(foreground.dtype)
    return image * opaque + foreground * (1.0 - opaque)


def score_maps(predictions: torch.Tensor | Sequence) -> list[torch.Tensor]:
    """Normalise discriminator output to a list of score maps (one per scale).

    Accepts a tensor, a list of tensors, or pix2pixHD's list of per-scale lists whose last item is the map.
    """
    if isinstance(predictions, torch.Tensor):
        return [predictions]
    maps = []
    for item in predictions:
        maps.append(item[-1] if isinstance(item, (list, tuple)) else item)
    if not maps:
        raise ValueError("discriminator returned no score maps")
    return maps


def lsgan_loss(predictions: torch.Tensor | Sequence, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss: mean over scales of MSE(score map, 1 if real else 0)."""
    maps = score_maps(predictions)
    target = 1.0 if target_is_real else 0.0
    return sum(F.mse_loss(m, torch.full_like(m, target)) for m in maps) / len(maps)


class DiscriminatorLoss(NamedTuple):
    """The discriminator's objective ``total`` = 0.5 * (``real`` + ``fake``) and its two parts (scalars)."""

    total: torch.Tensor
    real: torch.Tensor
    fake: torch.Tensor


def discriminator_lsgan_loss(real_predictions: torch.Tensor | Sequence,
                             fake_predictions: torch.Tensor | Sequence) -> DiscriminatorLoss:
    """0.5 * (MSE(D(real), 1) + MSE(D(fake), 0)), as the public code's discriminator loss, with its parts."""
    real = lsgan_loss(real_predictions, True)
    fake = lsgan_loss(fake_predictions, False)
    return DiscriminatorLoss(0.5 * (real + fake), real, fake)
