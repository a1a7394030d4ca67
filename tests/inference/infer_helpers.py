"""Helpers of the inference and export tests: a tiny random generator and our checkpoint format, real
scikit-image photos, and synthetic subjects pasted onto them."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data as skdata

from bgmatting.io import write_image
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


def shifted_view(scene: np.ndarray, height: int, width: int, shift=(0.0, 0.0), angle: float = 0.0,
                 gain: float = 1.0, gamma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(view, homography scene px -> view px): the centre of ``scene`` (larger than height x width) seen by a
    camera shifted by ``shift`` px and rotated by ``angle`` degrees, with an exposure change."""
    scene_h, scene_w = scene.shape[:2]
    a = np.deg2rad(angle)
    to_centre = np.array([[1, 0, -scene_w / 2], [0, 1, -scene_h / 2], [0, 0, 1.0]])
    rotate = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    to_view = np.array([[1, 0, width / 2 + shift[0]], [0, 1, height / 2 + shift[1]], [0, 0, 1.0]])
    pose = to_view @ rotate @ to_centre
    view = cv2.warpPerspective(scene, pose, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.clip(gain * np.power(view, gamma), 0, 1).astype(np.float32), pose


def handheld_capture(folder: Path, height: int = 240, width: int = 320, frames: int = 1, camera_moves: bool = False):
    """A hand-held capture of a real photo: frames (a textured disc over the scene) and a plate taken from
    another pose (shifted 9 px, rotated 1 degree) with another exposure (gain 1.15, gamma 0.9). Writes
    ``frames/NNN.png`` and ``plate.png``; returns the true alphas."""
    scene = photo("astronaut", int(height * 1.3), int(width * 1.3))
    plate, _ = shifted_view(scene, height, width, (-7.0, 5.0), 1.0, gain=1.15, gamma=0.9)
    write_image(folder / "plate.png", plate)
    alphas = []
    for i in range(frames):
        shift = (6.0 * i, -3.0 * i) if camera_moves else (0.0, 0.0)
        view, _ = shifted_view(scene, height, width, shift)
        alpha = disc_alpha(height, width, (height * 0.55, width * 0.45 + 4 * i), height * 0.2)
        write_image(folder / "frames" / f"{i:03d}.png", paste_subject(view, alpha))
        alphas.append(alpha)
    return alphas
