"""Helpers of the inference and export tests: a tiny random generator and our checkpoint format, real
scikit-image photos, and synthetic subjects pasted onto them."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data as skdata

from bgmatting.models import Generator, MattingModel, Refiner

TINY = dict(ngf=8, nf_part=8, n_blocks1=1, n_blocks2=1)


def tiny_generator(**overrides) -> Generator:
    config = dict(TINY, **overrides)
    return Generator(**config, rng=torch.Generator().manual_seed(0)).eval()


def save_checkpoint(path: Path, generator: Generator) -> Path:
    torch.save({"generator": generator.state_dict(), "model_config": generator.config}, path)
    return path


def photo(name: str, height: int, width: int) -> np.ndarray:
    """A scikit-image photo resized to height x width, float32 RGB in [0, 1]."""
    image = getattr(skdata, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = cv2.resize(image[:, :, :3], (width, height), interpolation=cv2.INTER_AREA)
    return image.astype(np.float32) / 255.0


def disc_alpha(height: int, width: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """Anti-aliased disc matte, float32 H x W in [0, 1]."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.hypot(ys - centre[0], xs - centre[1])
    return np.clip(radius + 0.5 - distance, 0.0, 1.0).astype(np.float32)


def paste_subject(background: np.ndarray, alpha: np.ndarray, colour=(0.9, 0.2, 0.1)) -> np.ndarray:
    """I = a F + (1 - a) B with a textured, coloured subject F."""
    height, width = alpha.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = 0.1 * np.sin(xs / 3.0)[:, :, None] * np.cos(ys / 4.0)[:, :, None]
    foreground = np.clip(np.asarray(colour, np.float32) + texture, 0.0, 1.0)
    return (alpha[:, :, None] * foreground + (1 - alpha[:, :, None]) * background).astype(np.float32)


def refining_model(**options) -> MattingModel:
    """A tiny base + refiner (ratio 0.5 unless ``options`` say otherwise) whose refiner changes the base's output
    (its last conv is not zero, as after training), in eval mode."""
    generator = Generator(**TINY, refine_head=True, refine_hidden=4, rng=torch.Generator().manual_seed(0))
    refiner = Refiner(4, channels=(6, 5, 4), rng=torch.Generator().manual_seed(1))
    with torch.no_grad():
        refiner.fine_stage[-1].weight.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(2))
    return MattingModel(generator, refiner, **{"downsample_ratio": 0.5, **options}).eval()
