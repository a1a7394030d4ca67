"""Subject silhouettes for the held-out photo set, as signed distance fields.

Unlike the training subjects (OpenCV polygons and ellipses drawn 4x supersampled), a silhouette here is the
union of implicit shapes: superellipses |u/a|^p + |v/b|^p = 1 for head (with a tapered jaw), ears, neck and
shoulders, capsules for arms, or scikit-image's own horse silhouette. ``coverage`` turns a signed distance d (pixels,
negative inside) into an anti-aliased alpha clip(1/2 - d / softness, 0, 1), so edges are exactly fractional.

Coordinates are pixels (x right, y down) of a size x size canvas; fields are float32 size x size.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class Head:
    """A superellipse head: centre (x, y), half-width a, half-height b, exponent p, tilt (degrees),
    jaw taper (0: none; the half-width at the chin shrinks by this fraction)."""

    x: float
    y: float
    a: float
    b: float
    power: float
    tilt: float
    taper: float

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates -> the head's frame (u along its width, v down its height)."""
        t = np.deg2rad(self.tilt)
        dx, dy = x - self.x, y - self.y
        return dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)

    def outline(self, theta: np.ndarray, grow: float = 1.0) -> np.ndarray:
        """Points (N x 2) on the (grown) outline at parameter angles theta; -pi/2 is the crown."""
        c, s = np.cos(theta), np.sin(theta)
        e = 2.0 / self.power
        u = grow * self.a * np.sign(c) * np.abs(c) ** e
        v = grow * self.b * np.sign(s) * np.abs(s) ** e
        u = u * (1.0 - self.taper * np.clip(v / self.b, 0.0, 1.0) ** 2)
        t = np.deg2rad(self.tilt)
        return np.stack([self.x + u * np.cos(t) - v * np.sin(t), self.y + u * np.sin(t) + v * np.cos(t)], axis=1)

    def outward(self, points: np.ndarray) -> np.ndarray:
        """Angles (radians) pointing from the head's centre through ``points``."""
        return np.arctan2(points[:, 1] - self.y, points[:, 0] - self.x)


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) of a size x size canvas."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x, y


def distance(field: np.ndarray) -> np.ndarray:
    """Approximate signed distance (pixels) from a smooth implicit field (< 0 inside): field / |grad field|."""
    gy, gx = np.gradient(field)
    return (field / np.maximum(np.sqrt(gx * gx + gy * gy), 1e-6)).astype(np.float32)


def coverage(d: np.ndarray, softness: float = 1.0) -> np.ndarray:
    """Anti-aliased alpha of a signed distance: clip(1/2 - d / softness, 0, 1), float32."""
    return np.clip(0.5 - d / np.float32(softness), 0.0, 1.0).astype(np.float32)


def superellipse(x: np.ndarray, y: np.ndarray, centre, axes, power: float, angle: float = 0.0,
                 taper: float = 0.0) -> np.ndarray:
    """Signed distance (pixels) to a rotated superellipse; ``taper`` narrows its lower half (+v)."""
    head = Head(centre[0], centre[1], axes[0], axes[1], power, angle, taper)
    u, v = head.local(x, y)
    u = u / (1.0 - taper * np.clip(v / axes[1], 0.0, 1.0) ** 2)
    field = (np.abs(u / axes[0]) ** power + np.abs(v / axes[1]) ** power) ** (1.0 / power) - 1.0
    return distance(field.astype(np.float32))


def head_distance(x: np.ndarray, y: np.ndarray, head: Head, grow: float = 1.0) -> np.ndarray:
    return superellipse(x, y, (head.x, head.y), (head.a * grow, head.b * grow), head.power, head.tilt, head.taper)


@dataclass
class Person:
    """A person's silhouette: ``body`` and ``skin`` signed distances (pixels), head and shoulder geometry."""

    body: np.ndarray
    skin: np.ndarray
    head: Head
    shoulder_y: float
    shoulder_w: float
    arms: bool


def person(rng: np.random.Generator, size: int, arms: bool) -> Person:
    """Head (tapered superellipse), ears, neck, rounded shoulders leaving the bottom edge and, with ``arms``,
    two arms hanging outwards with a gap to the torso. Half-body framings (arms) have a smaller head."""
    x, y = grid(size)
    a = size * (rng.uniform(0.05, 0.075) if arms else rng.uniform(0.08, 0.12))
    head = Head(size * rng.uniform(0.35, 0.65), size * rng.uniform(0.2, 0.4) * (0.8 if arms else 1.0),
                a, a * rng.uniform(1.15, 1.35), rng.uniform(2.0, 2.7), rng.normal(0.0, 6.0), rng.uniform(0.15, 0.35))
    parts = [head_distance(x, y, head)]
    if rng.random() < 0.7:
        for side in (-1, 1):
            ear = (head.x + side * head.a * 0.97, head.y + 0.05 * head.b)
            parts.append(superellipse(x, y, ear, (0.16 * a, 0.28 * head.b), 2.0, head.tilt))
    neck_w = a * rng.uniform(0.42, 0.55)
    shoulder_y = head.y + head.b * rng.uniform(1.35, 1.7)
    parts.append(superellipse(x, y, (head.x, (head.y + shoulder_y) / 2 + 0.1 * a),
                              (neck_w, (shoulder_y - head.y) / 2 + 0.2 * a), rng.uniform(4.0, 8.0)))
    skin = np.minimum.reduce(parts)
    shoulder_w = a * (rng.uniform(1.8, 2.3) if arms else rng.uniform(2.4, 3.6))
    depth = size - shoulder_y + 0.1 * size  # the torso is widest just below the bottom edge
    power = rng.uniform(6.0, 10.0) if arms else rng.uniform(3.0, 5.0)  # arms hang from square shoulders
    parts.append(superellipse(x, y, (head.x, shoulder_y + depth), (shoulder_w, depth), power))
    if arms:
        arm_y = shoulder_y + 0.05 * depth  # where the arms hang from, and the torso's half-width there
        parts += _arms(rng, x, y, head, arm_y, shoulder_w * (1 - 0.95 ** power) ** (1 / power), size)
    return Person(np.minimum.reduce(parts), skin, head, shoulder_y, shoulder_w, arms)


def capsule(x: np.ndarray, y: np.ndarray, p0, p1, radius: float) -> np.ndarray:
    """Exact signed distance (pixels) to a capsule: the segment p0-p1 thickened by ``radius``."""
    d = np.asarray(p1, np.float32) - np.asarray(p0, np.float32)
    t = np.clip(((x - p0[0]) * d[0] + (y - p0[1]) * d[1]) / max(float(d @ d), 1e-6), 0.0, 1.0)
    return (np.hypot(x - p0[0] - t * d[0], y - p0[1] - t * d[1]) - radius).astype(np.float32)


def _arms(rng, x, y, head: Head, top_y: float, half_width: float, size: int) -> list[np.ndarray]:
    """Two capsules hanging from the shoulders (at height ``top_y``, where the torso's half-width is
    ``half_width``) past the bottom edge, angled outwards by 5-14 degrees: a gap opens below the armpit."""
    out = []
    for side in (-1, 1):
        radius = head.a * rng.uniform(0.4, 0.55)
        angle = np.deg2rad(rng.uniform(5.0, 14.0))
        top = np.array([head.x + side * (half_width - 0.2 * radius), top_y])
        bottom = top + 1.5 * size * np.array([side * np.sin(angle), np.cos(angle)])
        out.append(capsule(x, y, top, bottom, radius))
    return out


@lru_cache(maxsize=1)
def _horse_mask() -> np.ndarray:
    """scikit-image's horse silhouette as float32 (1 inside), lightly smoothed at its own resolution."""
    import skimage.data

    mask = (~skimage.data.horse()).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.0)
    mask.setflags(write=False)
    return mask


def horse(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """(signed distance, geometry) of the horse silhouette placed in the frame, mirrored with p = 0.5;
    geometry: the bounding box x0, x1, y0, y1 and ``head_right`` (which way it faces)."""
    mask = _horse_mask()
    mirrored = rng.random() < 0.5
    if mirrored:
        mask = mask[:, ::-1]
    h, w = mask.shape
    scale = rng.uniform(0.7, 0.92) * size / w
    x0 = (size - w * scale) / 2 + rng.normal(0.0, 0.04 * size)
    y0 = size * rng.uniform(0.95, 1.08) - h * scale
    m = np.array([[scale, 0.0, x0], [0.0, scale, y0]], np.float32)
    warped = cv2.warpAffine(np.ascontiguousarray(mask), m, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
    return distance(0.5 - warped), {"x0": x0, "x1": x0 + w * scale, "y0": y0, "y1": y0 + h * scale,
                                    "head_right": not mirrored}


def contour(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The outer contour of (alpha > 1/2) as points (N x 2) and their outward normals (N x 2, unit)."""
    found, _ = cv2.findContours((alpha > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not found:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    pts = max(found, key=len)[:, 0, :].astype(np.float32)
    tangent = np.roll(pts, -3, axis=0) - np.roll(pts, 3, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-6)
    inside = alpha[np.clip((pts + 2 * normal)[:, 1].astype(int), 0, alpha.shape[0] - 1),
                   np.clip((pts + 2 * normal)[:, 0].astype(int), 0, alpha.shape[1] - 1)] > 0.5
    if inside.mean() > 0.5:  # the contour's orientation made these inward normals
        normal = -normal
    return pts, normal
