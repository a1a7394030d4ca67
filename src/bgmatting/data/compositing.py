"""Compositing I = aF + (1 - a)B and the small image helpers around it.

Arrays: numpy H x W x C float32 in [0, 1]; alpha H x W (or H x W x 1) float in [0, 1].
Tensors: torch B x C x H x W (or C x H x W) float in [0, 1]; alpha with one channel.
``composite`` accepts either kind and returns the same kind.
"""
from __future__ import annotations

import math
from typing import TypeVar

import cv2
import numpy as np
import torch

# Gray (BT.601 luma, cv2's RGB2GRAY weights) has one definition in the project; re-exported here.
from bgmatting.preprocess.motion import LUMA_WEIGHTS, to_gray  # noqa: F401

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


#: Trimap erosion/dilation parameter of the public code (``trimapK=[5, 5]``; test mode uses K = 5).
TRIMAP_K = 5


def composite(alpha: ArrayOrTensor, foreground: ArrayOrTensor, background: ArrayOrTensor) -> ArrayOrTensor:
    """I = alpha * F + (1 - alpha) * B in linear float: the project's one composite (argument order alpha, F, B).

    numpy: F H x W x 3, alpha H x W or H x W x 1, B H x W x 3 or a colour (3,); returns float32.
    torch: F, B (B x)C x H x W, alpha (B x)1 x H x W (broadcast). Values are not clipped (inputs in [0, 1]
    give outputs in [0, 1]). The caller brings alpha to [0, 1] first (network-space alpha: ``space.from_network``).
    """
    if isinstance(foreground, torch.Tensor):
        return alpha * foreground + (1.0 - alpha) * background
    a = np.asarray(alpha, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    f = np.asarray(foreground, dtype=np.float32)
    b = np.asarray(background, dtype=np.float32)
    return (b + a * (f - b)).astype(np.float32, copy=False)


def ellipse_kernel(size: int) -> np.ndarray:
    """Elliptic structuring element of the given odd size (as in the public code)."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def trimap_from_alpha(alpha: np.ndarray, k: int = TRIMAP_K) -> np.ndarray:
    """Trimap (uint8 H x W, 0 / 128 / 255) from a float alpha H x W in [0, 1].

    The public code's rule: known foreground = (alpha == 1) eroded ``k`` times with a 3x3 ellipse;
    unknown = (alpha > 0) dilated ``2k`` times, minus the known foreground. ``k=0`` gives the exact
    partition 0 / fractional / 1.
    """
    alpha = np.asarray(alpha, dtype=np.float32)
    if alpha.ndim == 3:
        alpha = alpha[:, :, 0]
    kernel = ellipse_kernel(3)
    fg = (alpha >= 1.0).astype(np.uint8)
    unknown = (alpha > 0.0).astype(np.uint8)
    if k > 0:
        fg = cv2.erode(fg, kernel, iterations=k)
        unknown = cv2.dilate(unknown, kernel, iterations=2 * k)
    trimap = np.where(unknown > 0, np.uint8(128), np.uint8(0))
    trimap[fg > 0] = 255
    return trimap


def fit_background(background: np.ndarray, height: int, width: int,
                   position: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Fit a background to a foreground of size ``height`` x ``width`` (the Deep Image Matting rule).

    A background smaller than the foreground in either dimension is upscaled (bicubic, aspect kept) by
    ``max(width / bw, height / bh)`` (rounded up), then a ``height`` x ``width`` window is cropped. ``position``
    is the window's relative (y, x) offset in [0, 1]: (0, 0) is the top-left crop of the public code.
    """
    bh, bw = background.shape[:2]
    ratio = max(width / bw, height / bh)
    if ratio > 1.0:
        new_w, new_h = max(width, math.ceil(bw * ratio)), max(height, math.ceil(bh * ratio))
        background = cv2.resize(background, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
        background = np.clip(background, 0.0, 1.0) if background.dtype != np.uint8 else background
        bh, bw = new_h, new_w
    y0 = int(round(position[0] * (bh - height)))
    x0 = int(round(position[1] * (bw - width)))
    return np.ascontiguousarray(background[y0:y0 + height, x0:x0 + width])


def resize(image: np.ndarray, height: int, width: int, nearest: bool = False) -> np.ndarray:
    """Resize an H x W (x C) array to ``height`` x ``width`` (area when shrinking, linear when enlarging)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if (height < h and width < w) else cv2.INTER_LINEAR
    out = cv2.resize(image, (width, height), interpolation=interp)
    if image.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def cut_and_resize(image: np.ndarray, window: tuple[int, int, int, int], out_hw: tuple[int, int],
                   nearest: bool = False) -> np.ndarray:
    """Cut ``window`` = (y, x, h, w) out of an H x W (x C) array, zero-padded where it runs past the bottom or
    right border, and :func:`resize` it to ``out_hw`` = (height, width) (area when shrinking, linear when
    enlarging, or nearest). Keeps the dtype; a window already of the output size comes back unresized."""
    y, x, h, w = window
    patch = image[y:y + h, x:x + w]
    if patch.shape[:2] != (h, w):
        padded = np.zeros((h, w) + image.shape[2:], image.dtype)
        padded[:patch.shape[0], :patch.shape[1]] = patch
        patch = padded
    return resize(patch, out_hw[0], out_hw[1], nearest=nearest)


def odd(value: float, minimum: int = 1) -> int:
    """Nearest odd integer to ``value``, at least ``minimum`` (kernel sizes)."""
    n = 2 * int(round((value - 1) / 2)) + 1
    return max(n, minimum if minimum % 2 == 1 else minimum + 1)


def hwc_to_chw(array: np.ndarray) -> torch.Tensor:
    """numpy H x W (x C) -> contiguous torch C x H x W (dtype kept)."""
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
