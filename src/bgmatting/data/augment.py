"""Per-sample train-time augmentation for supervised (Adobe-style) matting data, in numpy + OpenCV.

Every piece is a function of arrays, a ``numpy.random.Generator`` and plain parameters; ``AdobeAugment``
gathers their parameters as plain config values and runs the whole recipe:

1. resize F, alpha, B to ``resize_size``^2 (public code: 800^2, aspect not kept);
2. optional foreground augmentation (BGMv2: joint affine / box blur / sharpen of F and alpha; F's colour jitter
   runs after the crop, at the output size, where it is cheaper);
3. horizontal flip (p = 0.5);
4. trimap from alpha (erode/dilate, K = 5 at 800^2);
5. random square crop, side from ``crop_sizes`` (576..800 step 32), centred on an unknown-region pixel, resized
   to ``output_size`` (512);
6. captured background B': gaussian noise (p = 0.4, mean in [-7, 6], sigma in [2, 5], 0..255 units) else gamma
   ~ N(1, 0.12); optional BGMv2 extras on B' (noise p = 0.4, colour jitter p = 0.8, misalignment p = 0.3) and a
   shadow (p = 0.3) cast into the composite's background only (so B' lacks it, like a real capture);
7. I = aF + (1 - a)B with the (shadowed) clean B;
8. soft segmentation S from alpha (alpha > 0.5, erode 5x5 10-19 its, dilate 5x5 15-29 its, 0-2 holes of
   15/25/35/45 px centred on unknown pixels, Gaussian blur 21/31/41);
9. motion cues: 4 grayscale composites of F under small random affine warps over B with fresh noise.

Learning levers (ours, all off by default, on in the quickstart's configs/data/synthetic.yaml): ``scale_range``
varies the resize per sample (subjects at several scales), ``seg_corruption`` degrades S the way real
segmenters fail (``corrupt_segmentation``), ``motion_static_p`` gives a share of samples a still image's motion
cues (4 x gray(I)), as a photo has at test time.

Sizes. Numbers are the public code's at ``reference_size = 512``. With another ``output_size`` (e.g. the
128 px quickstart of configs/data/synthetic.yaml) and ``scale_pixel_parameters=True``, every pixel-valued
parameter is multiplied by s = output_size / 512: resize 800*s, crop sides 576*s..800*s (step 32*s), S erode/dilate iteration counts
(kept >= 1), hole sizes, blur kernel sizes (nearest odd), motion translation sigma, shadow blur and fg blur
radii. The trimap K is scaled by resize_size / 800 (the trimap is made at the resize resolution). Angles,
scales, probabilities, relative translations and intensity parameters do not depend on size.

Departures from the public code (each documented where it happens): all arithmetic in float [0, 1] (no
uint8 rounding between steps); the composite is made after the crop so I = aF + (1-a)B holds exactly; the
motion warp is about the image centre and is the matrix product scale @ shear @ rotation (the public code
multiplies the matrices element-wise, which drops rotation and shear; ``motion_elementwise_matrix=True``
reproduces that); grayscale uses RGB->luma weights (the public code applies BGR2GRAY to RGB data); when no
unknown pixel allows a centred crop the window is placed uniformly at random (the public code uses the
top-left corner); S thresholds alpha in [0, 1] at 0.5 (the public code compares its 0..255 alpha with 0.5, i.e.
alpha > 0: ``seg_threshold=0.002`` reproduces that); motion frames warp alpha bilinearly (public code: nearest).
Gaussian noise comes from OpenCV's (thread-local) generator seeded from the numpy Generator
(``standard_normal``), about 3x faster than numpy's.

Batch-level BGMv2 perturbations on the training device live in ``bgmatting.data.batch_augment``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import cv2
import numpy as np

from bgmatting.data import nuisances
from bgmatting.data.nuisances import standard_normal
from bgmatting.preprocess.segment import get_segmenter
from bgmatting.data.compositing import (LUMA_WEIGHTS, composite, cut_and_resize, ellipse_kernel, odd, resize, to_gray,
                                        trimap_from_alpha)

Rng = np.random.Generator


# ----------------------------------------------------------------------------------------------- geometry
def affine_about_centre(height: int, width: int, degrees: float = 0.0, scale: tuple[float, float] = (1.0, 1.0),
                        shear: tuple[float, float] = (0.0, 0.0), translate: tuple[float, float] = (0.0, 0.0),
                        elementwise: bool = False) -> np.ndarray:
    """2 x 3 affine matrix: scale @ shear @ rotation about the image centre, then a translation (x, y) in px.

    ``scale`` = (sx, sy); ``shear`` = off-diagonal terms (xy, yx). ``elementwise=True`` multiplies the three
    2 x 2 matrices element-wise and applies them about the origin, as the public code does.
    """
    t = math.radians(degrees)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    sc = np.array([[scale[0], 0.0], [0.0, scale[1]]])
    sh = np.array([[1.0, shear[0]], [shear[1], 1.0]])
    if elementwise:
        lin = sc * sh * rot
        return np.concatenate([lin, np.array([[translate[0]], [translate[1]]])], axis=1).astype(np.float64)
    lin = sc @ sh @ rot
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    offset = centre - lin @ centre + np.asarray(translate, dtype=np.float64)
    return np.concatenate([lin, offset[:, None]], axis=1)


def warp(image: np.ndarray, matrix: np.ndarray, border: int = cv2.BORDER_REFLECT, nearest: bool = False) -> np.ndarray:
    """Apply a 2 x 3 affine to an H x W (x C) float array, keeping its size."""
    h, w = image.shape[:2]
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.warpAffine(image, matrix, (w, h), flags=flags, borderMode=border, borderValue=0)
    if image.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def random_affine(rng: Rng, height: int, width: int, degrees: float, translate: float,
                  scale: tuple[float, float] = (1.0, 1.0), shear: float = 0.0) -> np.ndarray:
    """torchvision-style RandomAffine matrix: angle U(-degrees, degrees), translation U(-t, t) * size,
    isotropic scale U(scale), shear angles U(-shear, shear) degrees."""
    angle = rng.uniform(-degrees, degrees)
    tx, ty = rng.uniform(-translate, translate) * width, rng.uniform(-translate, translate) * height
    s = rng.uniform(scale[0], scale[1])
    shx, shy = (math.tan(math.radians(rng.uniform(-shear, shear))) for _ in range(2)) if shear else (0.0, 0.0)
    return affine_about_centre(height, width, angle, (s, s), (shx, shy), (tx, ty))


# ----------------------------------------------------------------------------------------------- crop
def crop_window(trimap: np.ndarray, crop: int, rng: Rng) -> tuple[int, int]:
    """Top-left (y, x) of a ``crop`` x ``crop`` window centred on a random unknown (128) trimap pixel.

    Only centres that keep the window inside the image are eligible (public code). Without any, the window
    is placed uniformly at random (the public code falls back to the top-left corner).
    """
    h, w = trimap.shape
    half = crop // 2
    if crop <= min(h, w):
        ys, xs = np.nonzero(trimap[half:h - crop + half + 1, half:w - crop + half + 1] == 128)
    else:
        ys = xs = np.zeros(0, np.int64)
    if len(ys):
        i = int(rng.integers(len(ys)))
        return int(ys[i]), int(xs[i])
    return int(rng.integers(max(h - crop, 0) + 1)), int(rng.integers(max(w - crop, 0) + 1))


# ----------------------------------------------------------------------------------------------- background B'
def add_gaussian_noise_255(image: np.ndarray, mean: float, sigma: float, rng: Rng) -> np.ndarray:
    """Add N(mean, sigma) noise given in 0..255 units to a [0, 1] image, per pixel and channel; clipped."""
    noise = standard_normal(image.shape, rng)
    noise *= np.float32(sigma / 255.0)
    noise += np.float32(mean / 255.0)
    noise += image
    return np.clip(noise, 0.0, 1.0, out=noise)


def perturb_background(background: np.ndarray, rng: Rng, noise_p: float = 0.4,
                       noise_mean_range: Sequence[int] = (-7, 6), noise_sigma_range: Sequence[int] = (2, 5),
                       gamma_std: float = 0.12) -> np.ndarray:
    """Public code's B' = perturbed B: with p=``noise_p`` gaussian noise with integer mean and sigma drawn
    uniformly from the inclusive ranges (0..255 units), otherwise gamma B^g with g ~ N(1, gamma_std)."""
    if rng.random() < noise_p:
        sigma = int(rng.integers(noise_sigma_range[0], noise_sigma_range[1] + 1))
        mean = int(rng.integers(noise_mean_range[0], noise_mean_range[1] + 1))
        return add_gaussian_noise_255(background, mean, sigma, rng)
    gamma = max(float(rng.normal(1.0, gamma_std)), 0.05)
    return np.power(np.clip(background, 0.0, 1.0), np.float32(gamma)).astype(np.float32)


def colour_jitter(image: np.ndarray, rng: Rng, brightness: float, contrast: float, saturation: float,
                  hue: float) -> np.ndarray:
    """torchvision-style ColorJitter on a [0, 1] RGB image (fixed order): brightness factor U(1-b, 1+b),
    contrast (blend with the mean gray), saturation (blend with gray), hue shift U(-h, h) turns."""
    out = np.multiply(image, np.float32(rng.uniform(1 - brightness, 1 + brightness)), dtype=np.float32)
    np.clip(out, 0.0, 1.0, out=out)
    c = np.float32(rng.uniform(1 - contrast, 1 + contrast))
    mean = np.float32(out.reshape(-1, 3).mean(axis=0) @ np.asarray(LUMA_WEIGHTS, np.float32))
    out *= c
    out += (1 - c) * mean
    np.clip(out, 0.0, 1.0, out=out)
    s = np.float32(rng.uniform(1 - saturation, 1 + saturation))
    gray = to_gray(out)
    out *= s
    out += ((1 - s) * gray)[:, :, None]
    np.clip(out, 0.0, 1.0, out=out)
    if hue > 0:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
        shifted = hsv[:, :, 0] + np.float32(rng.uniform(-hue, hue) * 360.0)
        hsv[:, :, 0] = np.mod(shifted, np.float32(360.0))
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        np.clip(out, 0.0, 1.0, out=out)
    return out


def cast_shadow(background: np.ndarray, alpha: np.ndarray, rng: Rng, strength_max: float = 0.3,
                degrees: float = 5.0, translate: float = 0.2, scale: tuple[float, float] = (0.5, 1.5),
                shear: float = 5.0, blur_range: Sequence[int] = (20, 39)) -> np.ndarray:
    """BGMv2 shadow: B - boxblur(affine(alpha) * U(0, strength_max)), clipped; box size from ``blur_range``."""
    h, w = alpha.shape
    strength = np.float32(rng.uniform(0.0, strength_max))
    shadow = warp(alpha * strength, random_affine(rng, h, w, degrees, translate, scale, shear), cv2.BORDER_CONSTANT)
    k = int(rng.integers(blur_range[0], blur_range[1] + 1))
    shadow = cv2.blur(shadow, (k, k), borderType=cv2.BORDER_REFLECT)
    return np.clip(background - shadow[:, :, None], 0.0, 1.0)


# ----------------------------------------------------------------------------------------------- S and M
def soft_segmentation_from_alpha(alpha: np.ndarray, trimap: np.ndarray, rng: Rng, threshold: float = 0.5,
                                 kernel: int = 5, erode_iterations: Sequence[int] = (10, 19),
                                 dilate_iterations: Sequence[int] = (15, 29), max_holes: int = 2,
                                 hole_sizes: Sequence[int] = (15, 25, 35, 45),
                                 blur_sizes: Sequence[int] = (21, 31, 41)) -> np.ndarray:
    """Synthetic soft segmentation (float32 H x W in [0, 1]) imitating a segmentation network's errors.

    (alpha > threshold), eroded then dilated with a ``kernel`` ellipse for an iteration count drawn uniformly
    from each inclusive range, 0..max_holes square holes (side from ``hole_sizes``) centred on unknown
    trimap pixels, then a Gaussian blur with a kernel from ``blur_sizes``.
    """
    k = ellipse_kernel(kernel)
    seg = (alpha > threshold).astype(np.float32)
    seg = cv2.erode(seg, k, iterations=int(rng.integers(erode_iterations[0], erode_iterations[1] + 1)))
    seg = cv2.dilate(seg, k, iterations=int(rng.integers(dilate_iterations[0], dilate_iterations[1] + 1)))
    for _ in range(int(rng.integers(0, max_holes + 1))):
        size = int(hole_sizes[int(rng.integers(len(hole_sizes)))])
        y, x = crop_window(trimap, size, rng)
        seg[y:y + size, x:x + size] = 0.0
    b = int(blur_sizes[int(rng.integers(len(blur_sizes)))])
    seg = cv2.GaussianBlur(seg, (b, b), 0)
    return np.clip(seg, 0.0, 1.0)


def _soft_ellipse(height: int, width: int, centre: tuple[float, float], axes: tuple[float, float],
                  angle: float, blur: int) -> np.ndarray:
    """float32 H x W: a filled ellipse (1 inside) with a Gaussian-blurred edge (kernel ``blur``, odd)."""
    mask = np.zeros((height, width), np.float32)
    cv2.ellipse(mask, (int(centre[1]), int(centre[0])), (max(1, int(axes[1])), max(1, int(axes[0]))), angle, 0, 360,
                1.0, thickness=-1)
    return cv2.GaussianBlur(mask, (blur, blur), 0) if blur > 1 else mask


def corrupt_segmentation(seg: np.ndarray, alpha: np.ndarray, rng: Rng, missing_p: float = 0.3,
                         extra_p: float = 0.3, halo_p: float = 0.2, shift_p: float = 0.2,
                         part_size: Sequence[float] = (0.1, 0.35), shift_max: float = 0.05) -> np.ndarray:
    """A soft segmentation S (float32 H x W in [0, 1]) degraded the way real segmenters fail, each with its
    probability: a *missing part* (a limb, the head: S cut away in a soft ellipse centred on the subject,
    ``part_size`` of the image side), an *extra blob* off the subject (a false positive of that size), a *halo*
    (S dilated and blurred further) and a *shift* (S translated by up to ``shift_max`` of the side). Where S is
    wrong only the image and the captured background tell the truth, so training on such S teaches the network to
    read the plate."""
    h, w = seg.shape
    side = min(h, w)
    blur = odd(0.05 * side, 3)
    out = seg.astype(np.float32, copy=True)
    ys, xs = np.nonzero(alpha > 0.5)
    if rng.random() < missing_p and len(ys):
        i = int(rng.integers(len(ys)))
        axes = tuple(side * rng.uniform(*part_size) / 2 for _ in range(2))
        out *= 1.0 - _soft_ellipse(h, w, (ys[i], xs[i]), axes, rng.uniform(0, 180), blur)
    if rng.random() < extra_p:
        axes = tuple(side * rng.uniform(*part_size) / 2 for _ in range(2))
        centre = (rng.uniform(0, h), rng.uniform(0, w))
        out = np.maximum(out, _soft_ellipse(h, w, centre, axes, rng.uniform(0, 180), blur))
    if rng.random() < halo_p:
        k = odd(rng.uniform(0.02, 0.08) * side, 3)
        out = cv2.GaussianBlur(cv2.dilate(out, ellipse_kernel(k)), (odd(2 * k, 3),) * 2, 0)
    if rng.random() < shift_p:
        dy, dx = (rng.uniform(-shift_max, shift_max) * side for _ in range(2))
        out = cv2.warpAffine(out, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REPLICATE)
    return np.clip(out, 0.0, 1.0)


def still_motion_cues(image: np.ndarray, frames: int = 4) -> np.ndarray:
    """Motion cues of a still image: float32 H x W x ``frames``, each gray(image) (nothing moves)."""
    return np.repeat(to_gray(image)[:, :, None], frames, axis=2)


def motion_cues(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray, rng: Rng, frames: int = 4,
                translation_std: float = 5.0, rotation_std: float = 7.0, scale_std: float = 0.05,
                shear_std: float = 0.05, shear_p: float = 0.5, background_noise: bool = True,
                noise_mean_range: Sequence[int] = (-7, 6), noise_sigma_range: Sequence[int] = (2, 5),
                elementwise: bool = False) -> np.ndarray:
    """Motion cues M: float32 H x W x ``frames`` in [0, 1], each gray(a'F' + (1-a')B~) for a warped (F', a').

    Warp per frame: translation ~ N(0, translation_std) px, rotation ~ N(0, rotation_std) deg, x-scale
    1 + N(0, scale_std), each shear term N(0, shear_std) with probability ``shear_p`` (public code). B~ is B
    with fresh gaussian noise (mean/sigma ranges as ``perturb_background``) when ``background_noise``.
    Compositing is linear, so it runs on gray(F) and gray(B); per-channel iid noise N(m, s) becomes gray
    noise N(m, s * |luma weights|) (the same distribution except for the public code's clipping of B + noise).
    """
    h, w = alpha.shape
    fa = np.stack([to_gray(foreground), alpha], axis=2)
    gray_back = to_gray(background)
    luma_norm = float(np.linalg.norm(LUMA_WEIGHTS))
    out = np.empty((h, w, frames), np.float32)
    for t in range(frames):
        tx, ty = rng.normal(0.0, translation_std, 2)
        theta = rng.normal(0.0, rotation_std)
        sx = 1.0 + rng.normal(0.0, scale_std)
        shear = tuple(rng.normal(0.0, shear_std) * (rng.random() < shear_p) for _ in range(2))
        m = affine_about_centre(h, w, theta, (sx, 1.0), shear, (tx, ty), elementwise=elementwise)
        moved = warp(fa, m, cv2.BORDER_REFLECT)
        back = gray_back
        if background_noise:
            sigma = int(rng.integers(noise_sigma_range[0], noise_sigma_range[1] + 1))
            mean = int(rng.integers(noise_mean_range[0], noise_mean_range[1] + 1))
            back = add_gaussian_noise_255(gray_back, mean, sigma * luma_norm, rng)
        a = np.clip(moved[:, :, 1], 0.0, 1.0)
        out[:, :, t] = back + a * (moved[:, :, 0] - back)
    return np.clip(out, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------- foreground
def box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Box blur with a (2r+1)^2 window."""
    k = 2 * radius + 1
    out = cv2.blur(image, (k, k), borderType=cv2.BORDER_REFLECT)
    return out[:, :, None] if image.ndim == 3 and out.ndim == 2 else out


def sharpen(image: np.ndarray) -> np.ndarray:
    """PIL-style SHARPEN filter (3x3, centre 32, ring -2, /16), clipped to [0, 1]."""
    kernel = np.full((3, 3), -2.0, np.float32)
    kernel[1, 1] = 32.0
    out = cv2.filter2D(image, -1, kernel / 16.0, borderType=cv2.BORDER_REFLECT)
    out = out[:, :, None] if image.ndim == 3 and out.ndim == 2 else out
    return np.clip(out, 0.0, 1.0)


def augment_foreground(foreground: np.ndarray, alpha: np.ndarray, rng: Rng, affine_p: float, degrees: float,
                       translate: float, scale: Sequence[float], shear: float, blur_p: float, blur_radius_max: int,
                       sharpen_p: float) -> tuple[np.ndarray, np.ndarray]:
    """BGMv2 geometric foreground augmentation: joint random affine, box blur (radius 1..max) and sharpen of
    (F, alpha). (BGMv2's colour jitter of F is ``colour_jitter``, applied by ``AdobeAugment`` after the crop.)"""
    fa = np.concatenate([foreground, alpha[:, :, None]], axis=2)
    h, w = alpha.shape
    if rng.random() < affine_p:
        fa = warp(fa, random_affine(rng, h, w, degrees, translate, tuple(scale), shear), cv2.BORDER_CONSTANT)
    if rng.random() < blur_p:
        fa = box_blur(fa, int(rng.integers(1, max(1, blur_radius_max) + 1)))
    if rng.random() < sharpen_p:
        fa = sharpen(fa)
    return np.ascontiguousarray(fa[:, :, :3]), np.ascontiguousarray(np.clip(fa[:, :, 3], 0.0, 1.0))


# ----------------------------------------------------------------------------------------------- captures
def capture_backgrounds(alpha: np.ndarray, background: np.ndarray, captured: np.ndarray, rng: Rng, shadow_p: float,
                        parallax_p: float, parallax_px: Sequence[float], exposure_p: float,
                        exposure_gain: float) -> tuple[np.ndarray, np.ndarray]:
    """What lies behind the subject in a phone's photo and what its plate shows, from a clean background
    (:mod:`bgmatting.data.nuisances`, the capture set's own functions): (clean, captured), H x W x 3 float32.

    ``clean`` is ``background`` under the subject's shadow (``nuisances.Shadow`` of ``alpha``, with ``shadow_p``):
    the photo is composited over it, the plate never has it. ``captured`` is the plate as infer hands it to the
    network after alignment: off by a smooth residual field of ``parallax_px`` px (90th percentile; with
    ``parallax_p``: what no homography removes), and in another exposure / white balance (``exposure_p``, gains
    within about +-``exposure_gain``; what the exposure correction leaves)."""
    h, w = alpha.shape
    clean = background
    if rng.random() < shadow_p:
        clean = nuisances.Shadow.apply(background, nuisances.Shadow.draw(rng).map(alpha))
    if rng.random() < parallax_p:
        field = nuisances.parallax_field(rng, h, w, amplitude=tuple(parallax_px))
        captured = nuisances.view_through(captured, np.eye(3), (h, w), field=field)
    if rng.random() < exposure_p:
        balance = min(0.05, exposure_gain / 3)
        captured = nuisances.Exposure.draw(rng, gain=exposure_gain, balance=balance).apply(captured)
    return clean, np.clip(captured, 0.0, 1.0).astype(np.float32)


def camouflage(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray, rng: Rng,
               size: Sequence[float] = (0.15, 0.45), gain: float = 0.05) -> np.ndarray:
    """The foreground with a patch of clothing that looks like the scene behind it (camouflage: I = B' there, but
    alpha = 1): inside the opaque subject, a soft ellipse of ``size`` x the image side takes the background's
    pixels times a gain within +-``gain``. Alpha is unchanged; only S and the subject's outline tell it apart."""
    h, w = alpha.shape
    inside = cv2.erode((alpha > 0.99).astype(np.uint8), ellipse_kernel(odd(0.04 * min(h, w), 3)))
    ys, xs = np.nonzero(inside)
    if not len(ys):
        return foreground
    i = int(rng.integers(len(ys)))
    axes = tuple(min(h, w) * rng.uniform(*size) / 2 for _ in range(2))
    patch = _soft_ellipse(h, w, (ys[i], xs[i]), axes, rng.uniform(0, 180), odd(0.03 * min(h, w), 3)) * inside
    look = np.clip(background * np.float32(rng.uniform(1 - gain, 1 + gain)), 0.0, 1.0)
    return (foreground + patch[:, :, None] * (look - foreground)).astype(np.float32)


def capture_sensor(image: np.ndarray, rng: Rng, noise_p: float, noise_sigma: Sequence[float], jpeg_p: float,
                   jpeg_quality: Sequence[int]) -> np.ndarray:
    """A phone's sensor and file on one shot (H x W x 3 float32 [0, 1]): Gaussian noise of sigma U(*noise_sigma)
    (with ``noise_p``), then JPEG compression at a quality from ``jpeg_quality`` (with ``jpeg_p``)."""
    if rng.random() < noise_p:
        image, _ = nuisances.add_sensor_noise(rng, image, tuple(noise_sigma))
    if rng.random() < jpeg_p:
        image = nuisances.jpeg_round_trip(image, nuisances.jpeg_quality(rng, tuple(jpeg_quality)))
    return image


# ----------------------------------------------------------------------------------------------- recipe
def _tuple(value) -> tuple:
    return tuple(value) if not isinstance(value, (int, float)) else (value,)


@dataclass
class AdobeAugment:
    """The supervised-stage augmentation recipe; fields are plain config values (public-code defaults at 512).

    Call it as ``aug(foreground, alpha, background, rng)`` with F, B float32 H x W x 3 and alpha float32 H x W
    in [0, 1] (B already fitted to F's size); returns a dict of numpy arrays at ``output_size``^2: image,
    background (B'), background_clean, segmentation (H x W), motion (H x W x 4), alpha (H x W), foreground,
    trimap (uint8 H x W).
    """

    output_size: int = 512                       # public code: -res 512
    reference_size: int = 512                    # size at which the pixel numbers below hold
    scale_pixel_parameters: bool = True          # multiply pixel-valued numbers by output_size / reference_size
    resize_size: int | None = None               # public code: 800 (None -> 800 * s)
    crop_sizes: tuple[int, ...] | None = None    # public code: 576..800 step 32 (None -> those * s)
    flip_p: float = 0.5                          # public code: 0.5
    scale_range: tuple[float, float] | None = None  # ours: resize_size x U(lo, hi) per sample (log-uniform); None: off
    trimap_k: int = 5                            # public code: trimapK [5, 5] at 800^2
    # B' perturbation (public code)
    perturb_background: bool = True              # public code: noise=True
    noise_p: float = 0.4                         # public code: random() > 0.6
    noise_mean_range: tuple[int, int] = (-7, 6)  # 0..255 units, inclusive: randint(0, 14) - 7
    noise_sigma_range: tuple[int, int] = (2, 5)  # inclusive: randint(2, 6)
    gamma_std: float = 0.12                      # gamma ~ N(1, 0.12)
    # soft segmentation (public code create_seg)
    seg_threshold: float = 0.5
    seg_kernel: int = 5
    seg_erode_iterations: tuple[int, int] = (10, 19)
    seg_dilate_iterations: tuple[int, int] = (15, 29)
    seg_max_holes: int = 2
    seg_hole_sizes: tuple[int, ...] = (15, 25, 35, 45)
    seg_blur_sizes: tuple[int, ...] = (21, 31, 41)
    # S degraded like a real segmenter's (ours; off in the public code): see ``corrupt_segmentation``
    seg_corruption: bool = False
    seg_missing_p: float = 0.3
    seg_extra_p: float = 0.3
    seg_halo_p: float = 0.2
    seg_shift_p: float = 0.2
    # motion cues (public code)
    motion_frames: int = 4
    motion_translation_std: float = 5.0          # px
    motion_rotation_std: float = 7.0             # degrees
    motion_scale_std: float = 0.05
    motion_shear_std: float = 0.05
    motion_shear_p: float = 0.5
    motion_background_noise: bool = True         # public code adds fresh noise to B per frame
    motion_elementwise_matrix: bool = False      # True reproduces the public code's element-wise matrix product
    motion_static_p: float = 0.0                 # ours: share of samples whose M is the still image's,
                                                 # frames x gray(I), as a photo gives at test time (0: paper)
    # BGMv2 background extras (off by default, as in the public code)
    background_extras: bool = False
    shadow_p: float = 0.3                        # BGMv2
    shadow_strength_max: float = 0.3             # BGMv2: alpha * 0.3 * U(0, 1)
    shadow_blur_range: tuple[int, int] = (20, 39)  # BGMv2 box blur size (px at 512)
    extra_noise_p: float = 0.4                   # BGMv2
    extra_noise_std_max: float = 0.03            # BGMv2: randn * 0.03 * U(0, 1)
    jitter_p: float = 0.8                        # BGMv2
    jitter: tuple[float, float, float, float] = (0.18, 0.18, 0.18, 0.1)  # BGMv2 brightness, contrast, saturation, hue
    misalign_p: float = 0.3                      # BGMv2
    misalign_degrees: float = 1.0                # BGMv2
    misalign_translate: float = 0.01             # BGMv2 (fraction of size: 5 px at 512)
    # capture nuisances (ours, off by default): I and B' as a phone captures them (data/nuisances.py, the capture
    # set's own functions with the training seeds): the subject's shadow in I only, B' off by a residual parallax
    # field and in another exposure, sensor noise and JPEG on each, S from infer's segmenter on the two
    captures: bool = False
    capture_shadow_p: float = 0.5
    capture_parallax_p: float = 0.7
    capture_parallax_px: tuple[float, float] = (0.3, 1.5)  # px at output_size (not scaled)
    capture_exposure_p: float = 0.5
    capture_exposure_gain: float = 0.08          # what the pipeline's exposure correction leaves of +-15 %
    capture_noise_p: float = 0.8
    capture_noise_sigma: tuple[float, float] = (0.005, 0.015)  # the capture set's
    capture_jpeg_p: float = 0.8
    capture_jpeg_quality: tuple[int, int] = (80, 92)  # the capture set's
    capture_segmenter_p: float = 0.0             # S from infer's background-difference segmenter on (I, B')
    capture_camouflage_p: float = 0.0            # clothing that looks like the scene behind it (``camouflage``)
    # BGMv2 foreground extras (off by default, as in the public code)
    foreground_extras: bool = False
    fg_affine_p: float = 0.5
    fg_degrees: float = 5.0                      # BGMv2
    fg_translate: float = 0.1                    # BGMv2
    fg_scale: tuple[float, float] = (0.75, 1.0)  # BGMv2 uses (0.4, 1) on whole frames; milder here before the crop
    fg_shear: float = 5.0                        # BGMv2
    fg_blur_p: float = 0.1                       # BGMv2
    fg_blur_radius_max: int = 5                  # BGMv2 (px at 512)
    fg_sharpen_p: float = 0.1                    # BGMv2
    fg_jitter_p: float = 1.0                     # BGMv2 jitters every fg
    fg_jitter: tuple[float, float, float, float] = (0.15, 0.15, 0.15, 0.05)  # BGMv2

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None and not isinstance(v, (str, bool, int, float, tuple)):
                setattr(self, f.name, _tuple(v))  # Hydra ListConfig / lists -> tuples
        if self.output_size < 16:
            raise ValueError(f"output_size must be >= 16, got {self.output_size}")

    # -- scaled sizes
    @property
    def scale(self) -> float:
        return self.output_size / self.reference_size if self.scale_pixel_parameters else 1.0

    def px(self, value: float) -> float:
        return value * self.scale

    def resolved_resize_size(self) -> int:
        return int(self.resize_size) if self.resize_size else int(round(800 * self.output_size / 512))

    def resolved_crop_sizes(self) -> tuple[int, ...]:
        if self.crop_sizes:
            return tuple(int(c) for c in self.crop_sizes)
        s = self.output_size / 512
        return tuple(sorted({int(round(c * s)) for c in range(576, 801, 32)}))

    def resolved_trimap_k(self) -> int:
        if not self.scale_pixel_parameters:
            return self.trimap_k
        return max(1, int(round(self.trimap_k * self.resolved_resize_size() / 800)))

    def _iterations(self, r: Sequence[int]) -> tuple[int, int]:
        lo, hi = max(1, int(round(self.px(r[0])))), max(1, int(round(self.px(r[1]))))
        return lo, max(lo, hi)

    def segmentation_parameters(self) -> dict:
        """Keyword arguments of ``soft_segmentation_from_alpha`` at ``output_size``."""
        return dict(threshold=self.seg_threshold, kernel=self.seg_kernel,
                    erode_iterations=self._iterations(self.seg_erode_iterations),
                    dilate_iterations=self._iterations(self.seg_dilate_iterations), max_holes=self.seg_max_holes,
                    hole_sizes=tuple(max(1, int(round(self.px(h)))) for h in self.seg_hole_sizes),
                    blur_sizes=tuple(odd(self.px(b), 3) for b in self.seg_blur_sizes))

    def motion_parameters(self) -> dict:
        """Keyword arguments of ``motion_cues`` at ``output_size``."""
        return dict(frames=self.motion_frames, translation_std=self.px(self.motion_translation_std),
                    rotation_std=self.motion_rotation_std, scale_std=self.motion_scale_std,
                    shear_std=self.motion_shear_std, shear_p=self.motion_shear_p,
                    background_noise=self.motion_background_noise, noise_mean_range=self.noise_mean_range,
                    noise_sigma_range=self.noise_sigma_range, elementwise=self.motion_elementwise_matrix)

    # -- the recipe
    def _sample_resize_size(self, rng: Rng) -> int:
        """The side the sample is resized to before cropping: fixed, or varied by ``scale_range``."""
        n = self.resolved_resize_size()
        if not self.scale_range:
            return n
        lo, hi = (float(v) for v in self.scale_range)
        return max(self.output_size, int(round(n * float(np.exp(rng.uniform(np.log(lo), np.log(hi)))))))

    def __call__(self, foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray,
                 rng: Rng) -> dict[str, np.ndarray]:
        n = self._sample_resize_size(rng)
        fg = resize(foreground, n, n)
        a = resize(alpha, n, n)
        bg = resize(background, n, n)
        if self.foreground_extras:
            fg, a = augment_foreground(
                fg, a, rng, self.fg_affine_p, self.fg_degrees, self.fg_translate, self.fg_scale, self.fg_shear,
                self.fg_blur_p, max(1, int(round(self.px(self.fg_blur_radius_max)))), self.fg_sharpen_p)
        if rng.random() < self.flip_p:
            fg, a, bg = cv2.flip(fg, 1), cv2.flip(a, 1), cv2.flip(bg, 1)
        trimap = trimap_from_alpha(a, self.resolved_trimap_k())
        sizes = [c for c in self.resolved_crop_sizes() if c <= n] or [n]  # a scaled-down sample: no padded crop
        crop = int(sizes[int(rng.integers(len(sizes)))])
        y, x = crop_window(trimap, crop, rng)
        out = self.output_size
        # linear / area interpolation is a convex combination: values stay in [0, 1] without clipping
        window, out_hw = (y, x, crop, crop), (out, out)
        fg = cut_and_resize(fg, window, out_hw)
        a = cut_and_resize(a, window, out_hw)
        bg = cut_and_resize(bg, window, out_hw)
        trimap = cut_and_resize(trimap, window, out_hw, nearest=True)
        if self.foreground_extras and rng.random() < self.fg_jitter_p:
            fg = colour_jitter(fg, rng, *self.fg_jitter)
        return self.finish(fg, a, bg, trimap, rng)

    def _segmentation(self, image: np.ndarray, captured: np.ndarray, a: np.ndarray, trimap: np.ndarray,
                      rng: Rng) -> np.ndarray:
        """S: infer's own segmenter on (I, B') with ``capture_segmenter_p`` (it fails where infer's does: shadows,
        ghosts of misaligned edges, camouflage), else synthesised from alpha (and degraded by ``seg_corruption``)."""
        if self.captures and self.capture_segmenter_p and rng.random() < self.capture_segmenter_p:
            return get_segmenter("background_difference")(image, captured)
        seg = soft_segmentation_from_alpha(a, trimap, rng, **self.segmentation_parameters())
        if self.seg_corruption:
            seg = corrupt_segmentation(seg, a, rng, self.seg_missing_p, self.seg_extra_p, self.seg_halo_p,
                                       self.seg_shift_p)
        return seg

    def finish(self, fg: np.ndarray, a: np.ndarray, bg: np.ndarray, trimap: np.ndarray,
               rng: Rng) -> dict[str, np.ndarray]:
        """Steps after the crop (B', shadow, composite, S, M) on arrays already at their final size."""
        captured = perturb_background(bg, rng, self.noise_p, self.noise_mean_range, self.noise_sigma_range,
                                      self.gamma_std) if self.perturb_background else bg.copy()
        clean = bg
        if self.background_extras:
            h, w = a.shape
            if rng.random() < self.shadow_p:
                lo, hi = (max(1, int(round(self.px(v)))) for v in self.shadow_blur_range)
                clean = cast_shadow(bg, a, rng, self.shadow_strength_max, blur_range=(lo, max(lo, hi)))
            if rng.random() < self.extra_noise_p:
                std = np.float32(self.extra_noise_std_max * rng.random())
                captured = np.clip(captured + standard_normal(captured.shape, rng) * std, 0.0, 1.0)
            if rng.random() < self.jitter_p:
                captured = colour_jitter(captured, rng, *self.jitter)
            if rng.random() < self.misalign_p:
                m = random_affine(rng, h, w, self.misalign_degrees, self.misalign_translate)
                captured = np.clip(warp(captured, m, cv2.BORDER_REFLECT), 0.0, 1.0)
        if self.captures and self.capture_camouflage_p and rng.random() < self.capture_camouflage_p:
            fg = camouflage(fg, a, clean, rng)
        if self.captures:
            clean, captured = capture_backgrounds(
                a, clean, captured, rng, self.capture_shadow_p, self.capture_parallax_p, self.capture_parallax_px,
                self.capture_exposure_p, self.capture_exposure_gain)
        image = composite(a, fg, clean)
        if self.captures:
            image, captured = (capture_sensor(x, rng, self.capture_noise_p, self.capture_noise_sigma,
                                              self.capture_jpeg_p, self.capture_jpeg_quality) for x in (image, captured))
        seg = self._segmentation(image, captured, a, trimap, rng)
        if self.motion_static_p and rng.random() < self.motion_static_p:
            motion = still_motion_cues(image, self.motion_frames)
        else:
            motion = motion_cues(fg, a, clean, rng, **self.motion_parameters())

        def f32(v: np.ndarray) -> np.ndarray:  # interpolation can leave 1 + 1 ulp; new arrays, inputs untouched
            return np.ascontiguousarray(np.clip(v, 0.0, 1.0), dtype=np.float32)

        return {"image": f32(image), "background": f32(captured), "background_clean": f32(clean),
                "segmentation": f32(seg), "motion": f32(motion), "alpha": f32(a), "foreground": f32(fg),
                "trimap": np.ascontiguousarray(trimap, dtype=np.uint8)}
