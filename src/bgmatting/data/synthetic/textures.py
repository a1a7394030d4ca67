"""Procedural textures and scikit-image photos: backgrounds and foreground colour fields.

Every function takes a ``numpy.random.Generator`` and returns float32 arrays in [0, 1]:
H x W x 3 RGB images or H x W scalar fields. Nothing here touches the disk except the photos that
scikit-image ships with its package (read once, kept in memory).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import skimage.data

# Colour photos bundled with scikit-image (no download needed).
PHOTO_NAMES = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
    "colorwheel", "stereo_motorcycle",
)
# Grayscale texture photos bundled with scikit-image; tinted with a random colour when used.
GRAY_TEXTURE_NAMES = ("brick", "grass", "gravel", "camera", "coins", "moon", "cell", "clock")

BACKGROUND_KINDS = ("photo", "noise", "gradient", "stripes", "blobs", "gray_texture")


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle returns (left, right, disparity)
        img = img[0]
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    img = np.ascontiguousarray(img)
    img.setflags(write=False)
    return img


def random_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.1, 0.9),
                  value: tuple[float, float] = (0.15, 0.95)) -> np.ndarray:
    """One RGB colour (3,) from a random hue with saturation and value drawn from the given ranges."""
    h = rng.uniform(0.0, 360.0)
    s = rng.uniform(*saturation)
    v = rng.uniform(*value)
    hsv = np.array([[[h, s, v]]], np.float32)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def palette(rng: np.random.Generator, n: int) -> np.ndarray:
    """n RGB colours (n x 3) that share a loose hue family, like a real scene's palette."""
    base = rng.uniform(0.0, 360.0)
    hues = (base + rng.normal(0.0, 50.0, n)) % 360.0
    hsv = np.stack([hues, rng.uniform(0.05, 0.85, n), rng.uniform(0.15, 0.95, n)], axis=1)
    return cv2.cvtColor(hsv[None].astype(np.float32), cv2.COLOR_HSV2RGB)[0]


def fractal_noise(rng: np.random.Generator, height: int, width: int, *, base_cells: int = 3,
                  octaves: int = 4, persistence: float = 0.55) -> np.ndarray:
    """Smooth multi-octave value noise, H x W float32 normalised to [0, 1]."""
    out = np.zeros((height, width), np.float32)
    amp = 1.0
    for octave in range(octaves):
        cells = base_cells * 2 ** octave
        ch = max(2, int(round(cells * height / max(height, width))) + 1)
        cw = max(2, int(round(cells * width / max(height, width))) + 1)
        grid = rng.random((ch, cw), dtype=np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def map_palette(field: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Map a scalar field in [0, 1] (H x W) through a colour ramp (n x 3) to H x W x 3."""
    stops = np.linspace(0.0, 1.0, len(colours))
    return np.stack([np.interp(field, stops, colours[:, c]) for c in range(3)], axis=2).astype(np.float32)


def _coords(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return x / max(height, width), y / max(height, width)


def noise_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    field = fractal_noise(rng, height, width, base_cells=int(rng.integers(2, 7)),
                          octaves=int(rng.integers(3, 6)), persistence=float(rng.uniform(0.4, 0.7)))
    return map_palette(field, palette(rng, int(rng.integers(2, 5))))


def gradient_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    x, y = _coords(height, width)
    angle = rng.uniform(0.0, 2 * np.pi)
    t = x * np.cos(angle) + y * np.sin(angle)
    if rng.random() < 0.4:  # radial
        cx, cy = rng.uniform(0.0, 1.0, 2)
        t = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    img = map_palette(t, palette(rng, int(rng.integers(2, 4))))
    grain = fractal_noise(rng, height, width, base_cells=16, octaves=2)[:, :, None]
    return np.clip(img + (grain - 0.5) * rng.uniform(0.02, 0.1), 0.0, 1.0)


def stripes_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    x, y = _coords(height, width)
    angle = rng.uniform(0.0, np.pi)
    freq = rng.uniform(4.0, 30.0) * 2 * np.pi
    warp = fractal_noise(rng, height, width, base_cells=2, octaves=3) * rng.uniform(0.0, 6.0)
    wave = np.sin((x * np.cos(angle) + y * np.sin(angle)) * freq + warp)
    sharpness = rng.uniform(1.0, 8.0)
    t = 0.5 + 0.5 * np.tanh(sharpness * wave)
    colours = palette(rng, 2)
    img = colours[0] * (1 - t[:, :, None]) + colours[1] * t[:, :, None]
    shade = 0.75 + 0.25 * fractal_noise(rng, height, width, base_cells=2, octaves=2)[:, :, None]
    return np.clip(img * shade, 0.0, 1.0).astype(np.float32)


def blobs_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    colours = palette(rng, 6)
    img = np.empty((height, width, 3), np.float32)
    img[:] = colours[0]
    m = max(height, width)
    for _ in range(int(rng.integers(8, 40))):
        centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        axes = (int(rng.uniform(0.02, 0.25) * m) + 1, int(rng.uniform(0.02, 0.25) * m) + 1)
        colour = colours[int(rng.integers(1, len(colours)))] * rng.uniform(0.7, 1.2)
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                    tuple(float(c) for c in np.clip(colour, 0, 1)), -1, cv2.LINE_AA)
    sigma = rng.uniform(0.0, 0.02) * m
    if sigma > 0.5:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    grain = fractal_noise(rng, height, width, base_cells=12, octaves=3)[:, :, None]
    return np.clip(img * (0.85 + 0.3 * grain), 0.0, 1.0).astype(np.float32)


def _random_crop(rng: np.random.Generator, img: np.ndarray, height: int, width: int,
                 min_fraction: float = 0.35) -> np.ndarray:
    """A random crop of aspect width/height covering 35-100% of the photo's short side, resized."""
    ph, pw = img.shape[:2]
    aspect = width / height
    max_h = min(ph, pw / aspect)
    ch = rng.uniform(min_fraction, 1.0) * max_h
    cw = ch * aspect
    y0 = rng.uniform(0.0, ph - ch)
    x0 = rng.uniform(0.0, pw - cw)
    # Affine map from output pixels to the crop: one warp does crop + rescale (sub-pixel exact).
    sx, sy = cw / width, ch / height
    m = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]], np.float32)
    interp = cv2.INTER_AREA if sx > 1.5 else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:  # warpAffine has no area filter: pre-shrink, then warp
        shrink = 1.0 / sx
        small = cv2.resize(img, (max(1, int(round(pw * shrink))), max(1, int(round(ph * shrink)))),
                           interpolation=cv2.INTER_AREA)
        m[:, :] = np.array([[1.0, 0.0, x0 * shrink], [0.0, 1.0, y0 * shrink]], np.float32)
        img = small
    out = cv2.warpAffine(img, m, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def photo_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random crop/rescale/flip of a colour photo that scikit-image ships."""
    img = _photo(PHOTO_NAMES[int(rng.integers(len(PHOTO_NAMES)))])
    return _random_crop(rng, img, height, width).astype(np.float32) / 255.0


def gray_photo_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A grayscale texture photo (brick, grass, gravel, ...) tinted between two palette colours."""
    img = _photo(GRAY_TEXTURE_NAMES[int(rng.integers(len(GRAY_TEXTURE_NAMES)))])
    t = _random_crop(rng, img, height, width).astype(np.float32) / 255.0
    return map_palette(t, palette(rng, 2))


_MAKERS = {
    "photo": photo_texture,
    "noise": noise_texture,
    "gradient": gradient_texture,
    "stripes": stripes_texture,
    "blobs": blobs_texture,
    "gray_texture": gray_photo_texture,
}
# Photos are the most realistic backgrounds; keep them the most frequent.
_KIND_WEIGHTS = np.array([0.4, 0.15, 0.1, 0.1, 0.15, 0.1])


def lighting(rng: np.random.Generator, height: int, width: int, strength: float = 0.25) -> np.ndarray:
    """A smooth multiplicative illumination field H x W x 1 around 1."""
    field = fractal_noise(rng, height, width, base_cells=1, octaves=2)
    return (1.0 - strength / 2 + strength * field)[:, :, None].astype(np.float32)


def random_background(rng: np.random.Generator, height: int, width: int, kind: str | None = None) -> np.ndarray:
    """A background image H x W x 3 float32 in [0, 1]: a photo crop or a procedural texture."""
    if kind is None:
        kind = BACKGROUND_KINDS[int(rng.choice(len(BACKGROUND_KINDS), p=_KIND_WEIGHTS))]
    if kind not in _MAKERS:
        raise ValueError(f"unknown background kind {kind!r}; expected one of {BACKGROUND_KINDS}")
    img = _MAKERS[kind](rng, height, width)
    if kind != "photo" and rng.random() < 0.7:
        img = img * lighting(rng, height, width)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def colour_field(rng: np.random.Generator, height: int, width: int, base: np.ndarray | None = None,
                 source: np.ndarray | None = None) -> np.ndarray:
    """A textured colour field H x W x 3 for a foreground material.

    ``base``: the material's mean colour (3,), random if None. ``source``: an image (H x W x 3) whose local
    colours the material copies, to make a foreground whose colours are close to a given background's.
    """
    if source is not None:
        blurred = cv2.GaussianBlur(source.astype(np.float32), (0, 0), max(1.0, 0.03 * max(height, width)))
        tex = 0.9 + 0.2 * fractal_noise(rng, height, width, base_cells=8, octaves=3)[:, :, None]
        return np.clip(blurred * tex + rng.normal(0.0, 0.02, 3), 0.0, 1.0).astype(np.float32)
    if base is None:
        base = random_colour(rng)
    style = rng.random()
    if style < 0.45:  # smooth mottled material (skin, cloth)
        tex = 0.75 + 0.5 * fractal_noise(rng, height, width, base_cells=int(rng.integers(2, 10)), octaves=4)
        img = base * tex[:, :, None]
    elif style < 0.7:  # striped / patterned cloth
        img = stripes_texture(rng, height, width)
        img = 0.5 * img + 0.5 * base
    elif style < 0.85:  # photo-textured material
        img = 0.6 * photo_texture(rng, height, width) + 0.4 * base
    else:  # noise-palette material around the base colour
        img = map_palette(fractal_noise(rng, height, width, base_cells=6),
                          np.stack([base * 0.6, base, np.clip(base * 1.3, 0, 1)]))
    return np.clip(img * lighting(rng, height, width, 0.4), 0.0, 1.0).astype(np.float32)
