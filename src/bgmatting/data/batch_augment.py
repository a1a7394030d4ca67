"""Batch-level BGMv2 perturbations on torch tensors, on the training device (kornia for warps and hue).

``BackgroundPerturbation`` is the device-side alternative to ``AdobeAugment(background_extras=True)``
(numpy, per sample in DataLoader workers); use one or the other. It takes a supervised batch (dict of
B x C x H x W float tensors in [0, 1]) and returns a new dict:

* shadow (p = 0.3): the composite's background ``background_clean`` is darkened by a blurred, randomly
  warped copy of alpha; ``image`` is recomposited from it; ``motion`` frames are darkened by
  shadow * (1 - alpha) (approximation: the motion frames' own warped alphas are not known here).
  The captured ``background`` (B') keeps no shadow, as a real capture would.
* noise (p = 0.4): gaussian noise of std U(0, 0.03) on B' (and on ``image`` when ``noise_image``).
* colour jitter (p = 0.8) of B': brightness/contrast/saturation factors U(1 -/+ 0.18), hue U(-/+ 0.1) turns.
* misalignment (p = 0.3) of B': rotation U(-/+ 1 deg), translation U(-/+ 1 %) of the size.

All randomness comes from the ``torch.Generator`` given to the call (create it on the batch's device).
Pixel sizes (shadow blur 20..39 px) are at 512 and scale with the batch height.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import kornia
import torch

from bgmatting.data.compositing import LUMA_WEIGHTS, composite


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=generator.device) * (high - low) + low).to(device)


def affine_matrices(height: int, width: int, angle_deg: torch.Tensor, scale: torch.Tensor, shear_x: torch.Tensor,
                    shear_y: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """B x 2 x 3 affine matrices (pixel coordinates): scale @ shear @ rotation about the centre, then (tx, ty)."""
    t = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(t), torch.sin(t)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    one = torch.ones_like(shear_x)
    sh = torch.stack([torch.stack([one, shear_x], -1), torch.stack([shear_y, one], -1)], -2)
    lin = scale[:, None, None] * (sh @ rot)
    centre = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0], dtype=lin.dtype, device=lin.device)
    offset = centre - (lin @ centre) + torch.stack([tx, ty], -1)
    return torch.cat([lin, offset[:, :, None]], dim=2)


@dataclass
class BackgroundPerturbation:
    """BGMv2's per-batch background perturbations (see module doc); fields are plain config values."""

    shadow_p: float = 0.3                              # BGMv2
    shadow_strength_max: float = 0.3                   # BGMv2
    shadow_degrees: float = 5.0                        # BGMv2
    shadow_translate: float = 0.2                      # BGMv2
    shadow_scale: Sequence[float] = (0.5, 1.5)         # BGMv2
    shadow_shear: float = 5.0                          # BGMv2
    shadow_blur_range: Sequence[int] = (20, 39)        # BGMv2 box blur, px at 512
    noise_p: float = 0.4                               # BGMv2
    noise_std_max: float = 0.03                        # BGMv2
    noise_image: bool = False                          # BGMv2 also adds noise to the source image
    jitter_p: float = 0.8                              # BGMv2
    jitter: Sequence[float] = (0.18, 0.18, 0.18, 0.1)  # BGMv2 brightness, contrast, saturation, hue
    misalign_p: float = 0.3                            # BGMv2
    misalign_degrees: float = 1.0                      # BGMv2
    misalign_translate: float = 0.01                   # BGMv2
    reference_size: int = 512

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        out = dict(batch)
        captured = batch["background"].clone()
        n, _, h, w = captured.shape
        dev = captured.device
        pick = lambda p: (torch.rand(n, generator=generator, device=generator.device) < p).to(dev)  # noqa: E731

        shadow_idx = pick(self.shadow_p)
        if shadow_idx.any():
            alpha = batch["alpha"]
            shadow = self.shadow(alpha[shadow_idx], generator)
            clean = batch["background_clean"].clone()
            clean[shadow_idx] = (clean[shadow_idx] - shadow).clamp(0, 1)
            out["background_clean"] = clean
            out["image"] = composite(alpha, batch["foreground"], clean).clamp(0, 1)
            if "motion" in batch:
                motion = batch["motion"].clone()
                motion[shadow_idx] = (motion[shadow_idx] - shadow * (1 - alpha[shadow_idx])).clamp(0, 1)
                out["motion"] = motion

        noise_idx = pick(self.noise_p)
        if noise_idx.any():
            k = int(noise_idx.sum())
            std = _uniform(k, 0, self.noise_std_max, generator, dev).view(k, 1, 1, 1)
            noise = torch.randn(captured[noise_idx].shape, generator=generator, device=generator.device).to(dev)
            captured[noise_idx] = (captured[noise_idx] + noise * std).clamp(0, 1)
            if self.noise_image:
                image = out["image"].clone()
                noise = torch.randn(image[noise_idx].shape, generator=generator, device=generator.device).to(dev)
                image[noise_idx] = (image[noise_idx] + noise * std).clamp(0, 1)
                out["image"] = image

        jitter_idx = pick(self.jitter_p)
        if jitter_idx.any():
            captured[jitter_idx] = self.colour_jitter(captured[jitter_idx], generator)

        misalign_idx = pick(self.misalign_p)
        if misalign_idx.any():
            k = int(misalign_idx.sum())
            u = lambda r: _uniform(k, -r, r, generator, dev)  # noqa: E731
            zero = torch.zeros(k, device=dev)
            m = affine_matrices(h, w, u(self.misalign_degrees), torch.ones(k, device=dev), zero, zero,
                                u(self.misalign_translate) * w, u(self.misalign_translate) * h)
            captured[misalign_idx] = kornia.geometry.transform.warp_affine(
                captured[misalign_idx], m.to(captured.dtype), (h, w), mode="bilinear", padding_mode="reflection",
                align_corners=True).clamp(0, 1)
        out["background"] = captured
        return out

    def shadow(self, alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Shadow maps (k x 1 x H x W, >= 0) from alphas: U(0, strength) * warped alpha, box-blurred."""
        k, _, h, w = alpha.shape
        dev = alpha.device
        u = lambda lo, hi: _uniform(k, lo, hi, generator, dev)  # noqa: E731
        shear = lambda: torch.tan(torch.deg2rad(u(-self.shadow_shear, self.shadow_shear)))  # noqa: E731
        m = affine_matrices(h, w, u(-self.shadow_degrees, self.shadow_degrees), u(*self.shadow_scale), shear(), shear(),
                            u(-self.shadow_translate, self.shadow_translate) * w,
                            u(-self.shadow_translate, self.shadow_translate) * h)
        strength = u(0, self.shadow_strength_max).view(k, 1, 1, 1)
        warped = kornia.geometry.transform.warp_affine(alpha * strength, m.to(alpha.dtype), (h, w), mode="bilinear",
                                                       padding_mode="zeros", align_corners=True)
        s = h / self.reference_size
        lo = max(1, round(self.shadow_blur_range[0] * s))
        hi = max(lo, round(self.shadow_blur_range[1] * s))
        size = int(torch.randint(lo, hi + 1, (1,), generator=generator, device=generator.device))
        return kornia.filters.box_blur(warped, (size, size), border_type="reflect")

    def colour_jitter(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """torchvision-style ColorJitter with per-sample factors (brightness, contrast, saturation, hue)."""
        k, dev = x.shape[0], x.device
        b, c, s, hue = self.jitter
        u = lambda lo, hi: _uniform(k, lo, hi, generator, dev).view(k, 1, 1, 1)  # noqa: E731
        weights = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=dev).view(1, 3, 1, 1)
        gray = lambda t: (t * weights).sum(1, keepdim=True)  # noqa: E731
        x = (x * u(1 - b, 1 + b)).clamp(0, 1)
        f = u(1 - c, 1 + c)
        x = (f * x + (1 - f) * gray(x).mean(dim=(2, 3), keepdim=True)).clamp(0, 1)
        f = u(1 - s, 1 + s)
        x = (f * x + (1 - f) * gray(x)).clamp(0, 1)
        if hue > 0:
            x = kornia.enhance.adjust_hue(x, u(-hue, hue).view(k) * 2 * math.pi).clamp(0, 1)
        return x
