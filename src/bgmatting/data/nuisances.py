"""Capture nuisances: how a phone's photo I and its background plate B' differ besides the subject.

Small numpy functions, each drawing from a seed or a ``numpy.random.Generator`` (``rng`` arguments accept
either), so that the capture set (:mod:`bgmatting.data.synthetic.capture_set`) and training augmentation can
call the same code with their own seeds:

* another pose for the plate: :func:`random_pose` (a homography: rotation, scale, shift, some perspective) and
  :func:`parallax_field` (a smooth displacement of 0.5-1.5 px that no homography removes: its affine part is
  taken out), applied together by :func:`view_through`;
* :class:`Exposure`: auto exposure / white balance between the shots (per-channel gain, gamma);
* :class:`Shadow`: the subject's soft shadow on the scene (in the photo only), offset and sheared from alpha;
* :func:`add_sensor_noise` (Gaussian, independent per image) and JPEG compression (:func:`jpeg_quality`,
  :func:`jpeg_round_trip`; files are written with :func:`bgmatting.io.write_jpeg`).

Images are RGB float32 H x W x 3 in [0, 1]; alpha and shadow maps H x W in [0, 1]; homographies 3 x 3 float64
mapping (x, y) pixel coordinates; displacement fields 2 x H x W float32 (dx, dy) in pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bgmatting.io import encode_jpeg, image_from_bytes

Rng = np.random.Generator | int


def _rng(rng: Rng) -> np.random.Generator:
    return np.random.default_rng(rng)


# ----------------------------------------------------------------------------------------------- geometry
def pose_homography(height: int, width: int, *, shift=(0.0, 0.0), angle_deg: float = 0.0, scale: float = 1.0,
                    perspective=(0.0, 0.0)) -> np.ndarray:
    """3 x 3 homography about the image centre: rotate/scale, then shift (px), with a small perspective term
    (in units of 1/size)."""
    cx, cy = width / 2, height / 2
    a = np.deg2rad(angle_deg)
    centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    rs = np.array([[scale * np.cos(a), -scale * np.sin(a), 0], [scale * np.sin(a), scale * np.cos(a), 0],
                   [perspective[0] / width, perspective[1] / height, 1]], np.float64)
    back = np.array([[1, 0, cx + shift[0]], [0, 1, cy + shift[1]], [0, 0, 1]], np.float64)
    return back @ rs @ centre


def random_pose(rng: Rng, height: int, width: int, *, angle: float = 3.0, scale: float = 0.03, shift: float = 0.04,
                perspective: float = 0.03) -> np.ndarray:
    """A homography (3 x 3, plate px -> frame px) of a second shot from another pose: rotation U(-angle, angle)
    degrees, scale 1 + U(-scale, scale), shift U(-shift, shift) of the longer side per axis, perspective terms
    U(-perspective, perspective) (a corner moves by about that share of the frame)."""
    rng = _rng(rng)
    m = max(height, width)
    return pose_homography(height, width, shift=tuple(rng.uniform(-shift, shift, 2) * m),
                           angle_deg=float(rng.uniform(-angle, angle)), scale=1.0 + float(rng.uniform(-scale, scale)),
                           perspective=tuple(rng.uniform(-perspective, perspective, 2)))


def _affine_part(field: np.ndarray) -> np.ndarray:
    """The least-squares affine displacement (2 x H x W) of a field (normal equations over every pixel)."""
    _, h, w = field.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    basis = (x, y, np.ones_like(x))
    gram = np.array([[float((a * b).sum()) for b in basis] for a in basis])
    coef = np.linalg.solve(gram, np.array([[float((a * f).sum()) for a in basis] for f in field]).T)
    return np.stack([coef[0, k] * x + coef[1, k] * y + coef[2, k] for k in range(2)]).astype(np.float32)


def parallax_field(rng: Rng, height: int, width: int, *, amplitude=(0.5, 1.5), cells: int = 3) -> np.ndarray:
    """A smooth displacement field (2 x H x W float32, px) standing for parallax and lens distortion between
    two shots: Gaussian noise on a grid of about ``cells`` cells across the shorter side, bicubically upsampled,
    its affine part removed (so no homography takes it out), scaled so that the 90th percentile of its length
    is U(*amplitude) px."""
    rng = _rng(rng)
    target = float(rng.uniform(*amplitude))
    gh, gw = (cells + 1, int(round(cells * width / height)) + 1) if height <= width else \
        (int(round(cells * height / width)) + 1, cells + 1)
    coarse = rng.standard_normal((2, gh, gw)).astype(np.float32)
    field = np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_CUBIC) for c in coarse])
    field -= _affine_part(field)
    length = np.sqrt(field[0] ** 2 + field[1] ** 2)
    return field * np.float32(target / max(float(np.percentile(length, 90)), 1e-6))


def view_through(world: np.ndarray, homography: np.ndarray, out_hw: tuple[int, int], *,
                 field: np.ndarray | None = None, offset: tuple[float, float] = (0.0, 0.0),
                 interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """out(p) = world(homography(p) + field(p) + offset): a view of ``world`` (H' x W' (x C)) at ``out_hw``
    (h, w), each output pixel p (x, y) sampled where the homography (3 x 3, view px -> reference px) and the
    displacement ``field`` (2 x h x w px, optional) put it; ``offset`` (x, y) is where the reference frame's
    origin lies in ``world`` (its margin). Borders reflect."""
    h, w = out_hw
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    points = cv2.perspectiveTransform(np.stack([xs, ys], axis=-1).reshape(-1, 1, 2), homography).reshape(h, w, 2)
    map_x, map_y = points[..., 0] + np.float32(offset[0]), points[..., 1] + np.float32(offset[1])
    if field is not None:
        map_x, map_y = map_x + field[0], map_y + field[1]
    return cv2.remap(world, map_x.astype(np.float32), map_y.astype(np.float32), interpolation,
                     borderMode=cv2.BORDER_REFLECT)


# ----------------------------------------------------------------------------------------------- photometry
@dataclass(frozen=True)
class Exposure:
    """An exposure / white-balance change: out = clip(gains * image ** gamma); ``gains`` per RGB channel."""

    gains: tuple[float, float, float]
    gamma: float

    @classmethod
    def draw(cls, rng: Rng, gain: float = 0.15, balance: float = 0.05, gamma: float = 0.1) -> Exposure:
        """Per-channel gains within about +-``gain``: an exposure change U(1 - e, 1 + e), e = gain - balance,
        times a white-balance change U(1 - balance, 1 + balance) per channel (auto exposure moves all channels
        together; the white balance tints); gamma U(1 - gamma, 1 + gamma)."""
        rng = _rng(rng)
        exposure = rng.uniform(1.0 - (gain - balance), 1.0 + (gain - balance))
        gains = tuple(float(exposure * g) for g in rng.uniform(1.0 - balance, 1.0 + balance, 3))
        return cls(gains, float(rng.uniform(1.0 - gamma, 1.0 + gamma)))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """H x W x 3 float [0, 1] -> the same image with this exposure, float32 [0, 1]."""
        out = np.power(np.clip(image, 0.0, 1.0), np.float32(self.gamma)) * np.asarray(self.gains, np.float32)
        return np.clip(out, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Shadow:
    """The subject's cast shadow: its alpha sheared by ``shear`` (x' = x + shear (y - H): the bottom edge, where
    the feet are, stays put), squashed vertically by ``squash`` towards the bottom edge, moved by ``offset``
    (x, y, shares of the width and height), blurred with sigma ``blur`` (share of the shorter side) and
    darkening the scene by ``strength`` where it is full. (The synthetic training clips cast theirs with the
    same shear, squash 1.)"""

    strength: float
    offset: tuple[float, float]
    shear: float
    squash: float
    blur: float

    @classmethod
    def draw(cls, rng: Rng, strength=(0.25, 0.45)) -> Shadow:
        """Darkening U(*strength), offset 3-9 % sideways (either way) and 0-4 % down, shear U(-0.4, 0.4),
        squash U(0.85, 1), blur sigma 0.8-2.5 % of the shorter side."""
        rng = _rng(rng)
        side = float(rng.choice([-1.0, 1.0]))
        return cls(float(rng.uniform(*strength)), (side * float(rng.uniform(0.03, 0.09)), float(rng.uniform(0.0, 0.04))),
                   float(rng.uniform(-0.4, 0.4)), float(rng.uniform(0.85, 1.0)), float(rng.uniform(0.008, 0.025)))

    def map(self, alpha: np.ndarray) -> np.ndarray:
        """The darkening (H x W float32 in [0, strength]) this shadow casts for the subject's ``alpha`` (H x W)."""
        h, w = alpha.shape
        # x' = x + shear (y - h) + dx;  y' = h - squash (h - y) + dy
        matrix = np.array([[1.0, self.shear, self.offset[0] * w - self.shear * h],
                           [0.0, self.squash, (1.0 - self.squash) * h + self.offset[1] * h]], np.float64)
        moved = cv2.warpAffine(np.asarray(alpha, np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
        sigma = max(0.5, self.blur * min(h, w))
        return (cv2.GaussianBlur(moved, (0, 0), sigma) * np.float32(self.strength)).astype(np.float32)

    @staticmethod
    def apply(scene: np.ndarray, darkening: np.ndarray) -> np.ndarray:
        """The scene (H x W x 3) under a darkening map (H x W): scene * (1 - darkening), float32 [0, 1]."""
        return np.clip(scene * (1.0 - darkening[:, :, None]), 0.0, 1.0).astype(np.float32)


def standard_normal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """float32 N(0, 1) samples of ``shape`` (H x W or H x W x C, C <= 4).

    Drawn with OpenCV's generator (about 3x faster than numpy's here), seeded from ``rng`` immediately
    before use; OpenCV's generator is thread-local, so the result is a pure function of ``rng``'s state.
    """
    out = np.empty(shape, np.float32)
    channels = 1 if len(shape) == 2 else shape[2]
    cv2.setRNGSeed(int(rng.integers(1, 2**31 - 1)))
    cv2.randn(out, (0.0,) * channels, (1.0,) * channels)
    return out


def add_sensor_noise(rng: Rng, image: np.ndarray, sigma=(0.005, 0.015)) -> tuple[np.ndarray, float]:
    """(image + N(0, s) per pixel and channel, clipped to [0, 1], float32; s) with s ~ U(*sigma) in [0, 1] units."""
    rng = _rng(rng)
    s = float(rng.uniform(*sigma))
    noise = standard_normal(np.shape(image), rng)
    noise *= np.float32(s)
    noise += image
    return np.clip(noise, 0.0, 1.0, out=noise), s


def jpeg_quality(rng: Rng, quality=(80, 92)) -> int:
    """A JPEG quality drawn uniformly from the inclusive range."""
    return int(_rng(rng).integers(quality[0], quality[1] + 1))


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image (H x W x 3 float [0, 1]) after JPEG compression at ``quality``: float32 [0, 1], exactly what
    reading a file written by :func:`bgmatting.io.write_jpeg` gives."""
    return image_from_bytes(encode_jpeg(image, quality), f"JPEG at quality {quality}")
