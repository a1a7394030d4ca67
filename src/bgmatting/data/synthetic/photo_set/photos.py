"""Real photographs for the held-out photo set: backgrounds and foreground colour textures.

The training textures (``bgmatting.data.synthetic.textures``) show the bundled photos as axis-aligned random
crops, or procedural patterns. Here every photograph is seen through a random homography (a tilted, rotated,
foreshortened view of it), backgrounds are often defocused with a disc kernel (a lens's blur behind a subject)
and colour-graded (white balance, exposure). The pools add photographs the training generator never shows:
the right view of the stereo motorcycle pair, the retina photograph (as cloth) and the LFW face crops (as
skin); the black-and-white photos (camera, page, clock, coins) appear as plain graded photographs, not as
palette-tinted textures.

Every function takes a ``numpy.random.Generator`` and returns float32 arrays in [0, 1] (H x W x 3), except
the loaders, which return read-only uint8 arrays.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from bgmatting.data.compositing import LUMA_WEIGHTS
from bgmatting.data.synthetic.textures import _photo

BACKGROUND_PHOTOS = ("motorcycle_right", "astronaut", "coffee", "chelsea", "rocket", "camera", "page", "clock",
                     "coins")
CLOTH_PHOTOS = ("retina", "hubble_deep_field", "immunohistochemistry", "coffee", "rocket", "astronaut", "brick",
                "gravel", "motorcycle_right")
HAIR_PHOTOS = ("chelsea", "grass")  # their luminance is the hair's texture
SKIN_TONES = np.array([(0.96, 0.80, 0.69), (0.92, 0.72, 0.58), (0.80, 0.58, 0.43), (0.64, 0.45, 0.33),
                       (0.45, 0.30, 0.22), (0.30, 0.20, 0.15)], np.float32)
HAIR_COLOURS = np.array([(0.04, 0.03, 0.03), (0.17, 0.10, 0.06), (0.35, 0.22, 0.12), (0.55, 0.27, 0.12),
                         (0.80, 0.66, 0.42), (0.75, 0.74, 0.72), (0.45, 0.20, 0.55)], np.float32)
_FACES = 100  # lfw_subset: the first 100 images are faces, the rest are not


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """A bundled scikit-image photo as read-only uint8 H x W x 3 (grayscale ones replicated)."""
    if name == "motorcycle_right":
        import skimage.data

        img = np.ascontiguousarray(skimage.data.stereo_motorcycle()[1])
    else:
        img = _photo(name)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img.setflags(write=False)
    return img


@lru_cache(maxsize=None)
def faces() -> np.ndarray:
    """The LFW face crops bundled with scikit-image: read-only float32 N x 25 x 25 in [0, 1]."""
    import skimage.data

    out = np.ascontiguousarray(skimage.data.lfw_subset()[:_FACES], dtype=np.float32)
    out.setflags(write=False)
    return out


def luma(image: np.ndarray) -> np.ndarray:
    """H x W x 3 -> H x W luminance (float32)."""
    return (image.astype(np.float32) @ np.asarray(LUMA_WEIGHTS, np.float32)).astype(np.float32)


def _quad(rng: np.random.Generator, height: int, width: int, min_side: float, aspect: float = 1.0) -> np.ndarray:
    """A random view quadrilateral (4 x 2, clockwise from top-left) in a photo: a rectangle of ``aspect``
    (width / height; 1: a square) whose height covers ``min_side``..90% of the most it can (the short side for
    a square), rotated up to 20 degrees, corners jittered (perspective)."""
    side = rng.uniform(min_side, 0.9) * min(height, width / aspect)
    half = np.array([side * aspect / 2, side / 2])
    cx = rng.uniform(half[0], width - half[0])
    cy = rng.uniform(half[1], height - half[1])
    t = np.deg2rad(rng.uniform(-20.0, 20.0))
    rectangle = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * half
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    corners = rectangle @ rot.T + (cx, cy) + rng.normal(0.0, 0.06 * side, (4, 2))
    return corners.astype(np.float32)


def view(rng: np.random.Generator, img: np.ndarray, size: int, min_side: float = 0.35,
         width: int | None = None) -> np.ndarray:
    """A random perspective view of a uint8 photo, ``size`` high and ``width`` wide (default: square), float32
    in [0, 1] (mirrored with p = 0.5)."""
    width = size if width is None else int(width)
    src = _quad(rng, img.shape[0], img.shape[1], min_side, width / size)
    shrink = min(1.0, 1.5 * width / float(np.linalg.norm(src[1] - src[0])))
    if shrink < 1.0:  # pre-shrink so that the warp does not alias
        img = cv2.resize(img, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        src = src * shrink
    dst = np.array([[0, 0], [width - 1, 0], [width - 1, size - 1], [0, size - 1]], np.float32)
    out = cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (width, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out, dtype=np.float32) / np.float32(255.0)


def defocus(image: np.ndarray, radius: float) -> np.ndarray:
    """Lens blur: convolution with an anti-aliased disc of ``radius`` pixels (no-op below 0.5)."""
    if radius < 0.5:
        return image
    n = 2 * int(np.ceil(radius)) + 1
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) - (n - 1) / 2
    disc = np.clip(radius + 0.5 - np.sqrt(xx ** 2 + yy ** 2), 0.0, 1.0)
    return cv2.filter2D(image, -1, disc / disc.sum(), borderType=cv2.BORDER_REFLECT)


def grade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Colour grading of a photo: white balance gains N(1, 0.06) per channel, exposure U(0.75, 1.2)."""
    gains = rng.normal(1.0, 0.06, 3).astype(np.float32) * np.float32(rng.uniform(0.75, 1.2))
    return np.clip(image * gains, 0.0, 1.0).astype(np.float32)


def photo_background(rng: np.random.Generator, size: int, width: int | None = None) -> tuple[np.ndarray, str]:
    """(background ``size`` high, ``width`` wide (default: square) x 3, photo name): a graded perspective view,
    defocused with p = 0.5 (radius 0.5-3 px per 256 px of height)."""
    name = BACKGROUND_PHOTOS[int(rng.integers(len(BACKGROUND_PHOTOS)))]
    image = view(rng, photo(name), size, width=width)
    if rng.random() < 0.5:
        image = defocus(image, rng.uniform(0.5, 3.0) * size / 256)
    return grade(rng, image), name


def vertical_shading(size: int, top: float, bottom: float) -> np.ndarray:
    """A size x size x 1 light falloff from ``top`` (first row) to ``bottom`` (last row)."""
    return np.linspace(top, bottom, size, dtype=np.float32)[:, None, None] * np.ones((1, size, 1), np.float32)


def cloth_texture(rng: np.random.Generator, size: int, source: str | None = None) -> tuple[np.ndarray, str]:
    """(cloth colour field size x size x 3, photo name): a photo view blended with a dye colour and lit from
    above. ``source``: the photo to use (e.g. the background's, for camouflage); random from CLOTH_PHOTOS if None."""
    name = source or CLOTH_PHOTOS[int(rng.integers(len(CLOTH_PHOTOS)))]
    image = view(rng, photo(name), size, min_side=0.2)
    dye = rng.uniform(0.15, 0.95, 3).astype(np.float32)
    mix = np.float32(rng.uniform(0.0, 0.6) if source is None else 0.0)
    dyed = dye * luma(image)[:, :, None] * np.float32(1.6)
    out = (1 - mix) * image + mix * dyed
    return np.clip(out * vertical_shading(size, 1.1, 0.8), 0.0, 1.0).astype(np.float32), name


def skin_texture(rng: np.random.Generator, size: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """Skin colour field size x size x 3: a skin tone shaded by an LFW face photo stretched over ``box``
    (x0, y0, x1, y1 in pixels, the head's bounding box); plain shaded tone outside it."""
    tone = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] * np.float32(rng.uniform(0.9, 1.08))
    face = faces()[int(rng.integers(len(faces())))]
    shade = np.full((size, size), 0.85, np.float32)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    patch = cv2.resize(face, (w, h), interpolation=cv2.INTER_CUBIC)
    z = np.clip((patch - patch.mean()) / max(float(patch.std()), 1e-3), -2.5, 2.5)
    patch = 0.85 + 0.1 * z  # the face photo's shading, 0.6..1.1 around the tone
    ys, xs = slice(max(y0, 0), min(y1, size)), slice(max(x0, 0), min(x1, size))
    shade[ys, xs] = patch[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return np.clip(tone * shade[:, :, None], 0.0, 1.0).astype(np.float32)


def hair_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Hair colour field size x size x 3: a natural (or dyed) hair colour modulated by the luminance of a
    fur or grass photograph."""
    base = HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))]
    fur = luma(view(rng, photo(HAIR_PHOTOS[int(rng.integers(len(HAIR_PHOTOS)))]), size, min_side=0.15))
    fur = (fur - fur.mean()) / max(float(fur.std()), 1e-3)
    return np.clip(base * (1.0 + 0.35 * fur[:, :, None]) + 0.03, 0.0, 1.0).astype(np.float32)
