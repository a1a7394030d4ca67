"""Deterministic, photo-based matting-model inputs for benchmarks (no files, no downloads).

A real photo (scikit-image's astronaut) is composited with a soft elliptical alpha over another photo
(coffee), so the network sees natural image statistics and the output comparison between modes is made
on non-trivial alpha values, not on saturated noise responses.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata


def _photo(name: str, height: int, width: int) -> torch.Tensor:
    """scikit-image photo ``name`` as 1 x 3 x height x width float in [0, 1] (bilinear, antialiased)."""
    rgb = torch.from_numpy(np.ascontiguousarray(getattr(skdata, name)())).permute(2, 0, 1).float() / 255.0
    resized = F.interpolate(rgb[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized.clamp(0, 1)


def _soft_ellipse(height: int, width: int) -> torch.Tensor:
    """1 x 1 x height x width alpha in [0, 1]: an upright ellipse with a soft edge a few percent of the size wide."""
    y, x = torch.meshgrid(torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij")
    radius = torch.sqrt((x / 0.55) ** 2 + ((y - 0.15) / 0.85) ** 2)
    return torch.sigmoid((1.0 - radius) * 25.0)[None, None]


def make_batch(batch: int, size: int, motion_frames: int = 4, width: int | None = None) -> dict[str, torch.Tensor]:
    """A supervised batch in image space [0, 1], every tensor B x C x size x ``width`` (default: size) float32
    on CPU.

    Keys: ``image`` (3), ``background`` (3, perturbed B'), ``background_clean`` (3), ``segmentation`` (1),
    ``motion`` (``motion_frames``), ``alpha`` (1), ``foreground`` (3). Samples differ by a horizontal shift.
    """
    width = size if width is None else width
    if size % 4 or size < 8 or width % 4 or width < 8:
        raise ValueError(f"benchmark sizes must be multiples of 4 and >= 8, got {size} x {width}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    foreground0, background0 = _photo("astronaut", size, width), _photo("coffee", size, width)
    alpha0 = _soft_ellipse(size, width)
    samples = []
    for index in range(batch):
        shift = (index * width) // 16
        foreground = torch.roll(foreground0, shift, dims=3)
        alpha = torch.roll(alpha0, shift, dims=3)
        image = alpha * foreground + (1.0 - alpha) * background0
        gray = (0.299 * image[:, :1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:]).clamp(0, 1)
        shifts = [(2 * k - motion_frames // 2, k) for k in range(motion_frames)]
        motion = torch.cat([torch.roll(gray, shift, dims=(2, 3)) for shift in shifts], 1)
        segmentation = F.avg_pool2d((alpha > 0.5).float(), 9, stride=1, padding=4)
        samples.append(dict(
            image=image, background=background0.pow(1.05), background_clean=background0,
            segmentation=segmentation, motion=motion, alpha=alpha, foreground=foreground,
        ))
    return {key: torch.cat([s[key] for s in samples]).contiguous() for key in samples[0]}


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    """The :class:`bgmatting.models.MattingModel` arguments (image, background, segmentation, motion), in image
    space [0, 1], on ``device``."""
    return tuple(batch[key].to(device) for key in ("image", "background", "segmentation", "motion"))

