"""Strand patterns for the held-out photo set, and their rasteriser.

The training generator grows every strand as a random walk with a constant curl, 1 or 2 canvas pixels thick
at three opacities. These families are built otherwise, each as explicit geometry:

* ``straight_wisps``: clumps of straight, nearly parallel strands sticking out of the hair;
* ``ringlets``: hanging helical curls (projected helices, looping where the coil is steep), in bundles;
* ``spirals``: small Archimedean coils of frizz at the hair's edge;
* ``curtain``: long straight hair falling past the shoulders in one common wave, with ragged ends;
* ``flyaways``: single long circular arcs leaving the hair, thin and faint;
* ``wires``: an earphone cable (cubic Bezier from the ear to the bottom edge) and an antenna with a ball tip;
* ``mane`` / ``tail``: wisps along a silhouette's upward edge and long hanging wavy strands (animals).

Widths vary continuously per strand (0.2-2 px at 512 px, scaled with the canvas) and strands taper: their last
40% is drawn at half the width and 3/4 of the opacity. Coordinates are pixels of a size x size canvas.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .figures import Head

_SHIFT = 3  # fractional bits of the OpenCV drawing coordinates
_OPACITY_LEVELS = np.array([0.2, 0.35, 0.5, 0.65, 0.8, 1.0])
_MAX_THICKNESS = 32  # canvas pixels


@dataclass
class Strands:
    """Polylines (each K x 2 pixels) with a width (pixels), an opacity in (0, 1] and a taper flag each."""

    curves: list[np.ndarray] = field(default_factory=list)
    width: list[float] = field(default_factory=list)
    opacity: list[float] = field(default_factory=list)
    taper: list[bool] = field(default_factory=list)

    def add(self, curve: np.ndarray, width: float, opacity: float, taper: bool = True) -> None:
        self.curves.append(np.asarray(curve, np.float64))
        self.width.append(float(width))
        self.opacity.append(float(opacity))
        self.taper.append(bool(taper))

    def extend(self, other: Strands) -> Strands:
        for i in range(len(other)):
            self.add(other.curves[i], other.width[i], other.opacity[i], other.taper[i])
        return self

    def __len__(self) -> int:
        return len(self.curves)


def _pieces(strands: Strands, supersample: int):
    """(canvas thickness, opacity level, polyline) per drawn piece: tapered strands split at 60% of their length."""
    for curve, width, opacity, taper in zip(strands.curves, strands.width, strands.opacity, strands.taper):
        parts = [(curve, width, opacity)]
        if taper and len(curve) >= 4:
            k = int(round(0.6 * (len(curve) - 1)))
            parts = [(curve[:k + 1], width, opacity), (curve[k:], 0.5 * width, 0.75 * opacity)]
        for pts, w, o in parts:
            thickness = int(np.clip(round(w * supersample), 1, _MAX_THICKNESS))
            level = float(_OPACITY_LEVELS[np.argmin(np.abs(_OPACITY_LEVELS - o))])
            yield thickness, level, pts


def rasterise(strands: Strands, size: int, supersample: int = 4) -> np.ndarray:
    """Alpha (size x size float32 in [0, 1]) of the strands: pieces of one (thickness, opacity) group are drawn
    anti-aliased on a ``supersample`` x canvas, area-averaged, and the groups combined with the over operator."""
    groups: dict[tuple[int, float], list[np.ndarray]] = {}
    for thickness, level, pts in _pieces(strands, supersample):
        groups.setdefault((thickness, level), []).append(pts)
    remaining = np.ones((size, size), np.float32)
    canvas = np.zeros((size * supersample, size * supersample), np.uint8)
    scale = supersample * (1 << _SHIFT)
    for (thickness, level), curves in sorted(groups.items()):
        canvas[:] = 0
        pts = [np.round(c * scale).astype(np.int32).reshape(-1, 1, 2) for c in curves]
        cv2.polylines(canvas, pts, False, 255, thickness, cv2.LINE_AA, _SHIFT)
        small = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
        remaining *= 1.0 - small * np.float32(level / 255.0)
    return (1.0 - remaining).astype(np.float32)


# ----------------------------------------------------------------------------------------------- helpers
def _polyline(start: np.ndarray, angles: np.ndarray, step: float) -> np.ndarray:
    """A polyline from ``start`` following headings ``angles`` (radians) in steps of ``step`` pixels."""
    moves = step * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return np.vstack([start[None], start[None] + np.cumsum(moves, axis=0)])


def _bezier(p0, p1, p2, p3, n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def _towards_down(angle: float, weight: float) -> float:
    """Blend a heading (radians) towards straight down (+y) by ``weight`` in [0, 1] (gravity on a clump)."""
    vector = (1 - weight) * np.array([np.cos(angle), np.sin(angle)]) + weight * np.array([0.0, 1.0])
    return float(np.arctan2(vector[1], vector[0]))


def _unit(size: int) -> float:
    """Pixels per pixel-at-512: widths and small offsets are specified for a 512 px canvas."""
    return size / 512.0


# ----------------------------------------------------------------------------------------------- families
def straight_wisps(rng: np.random.Generator, head: Head, size: int) -> Strands:
    """6-14 clumps of 5-20 straight strands each, rooted on the upper outline, sticking out and drooping."""
    out, u = Strands(), _unit(size)
    for _ in range(int(rng.integers(6, 15))):
        theta = rng.uniform(np.pi + 0.15, 2 * np.pi - 0.15)
        root = head.outline(np.array([theta]), grow=rng.uniform(0.95, 1.08))[0]
        base = _towards_down(head.outward(root[None])[0] + rng.normal(0.0, 0.3), rng.uniform(0.0, 0.6))
        length = head.b * rng.uniform(0.3, 1.1)
        for _ in range(int(rng.integers(5, 21))):
            start = root + rng.normal(0.0, 0.04 * head.a, 2)
            angle = base + rng.normal(0.0, 0.06)
            n = int(rng.integers(6, 9))
            out.add(_polyline(start, np.full(n, angle), length * rng.uniform(0.6, 1.0) / n),
                    rng.uniform(0.3, 1.2) * u, rng.uniform(0.35, 1.0))
    return out


def ringlets(rng: np.random.Generator, head: Head, size: int) -> Strands:
    """3-7 hanging curls per side, each a bundle of 4-8 strands along a projected helix."""
    out, u = Strands(), _unit(size)
    for side in (-1, 1):
        for _ in range(int(rng.integers(3, 8))):
            theta = (np.pi if side < 0 else 0.0) + side * -rng.uniform(-0.2, 0.9)
            root = head.outline(np.array([theta]))[0]
            length = head.b * rng.uniform(0.8, 2.2)
            radius = head.a * rng.uniform(0.06, 0.14)
            turns, lean, drift = rng.uniform(3.0, 7.0), rng.uniform(0.4, 1.0), side * rng.uniform(0.0, 0.3)
            t = np.linspace(0.0, 1.0, int(40 * turns))
            phase = rng.uniform(0, 2 * np.pi)
            for _ in range(int(rng.integers(4, 9))):
                r = radius * rng.normal(1.0, 0.08)
                ph = phase + rng.normal(0.0, 0.15) + 2 * np.pi * turns * t
                x = root[0] + drift * length * t + r * np.sin(ph) + rng.normal(0.0, 0.02 * head.a)
                y = root[1] + length * t + lean * r * np.cos(ph)
                out.add(np.stack([x, y], axis=1), rng.uniform(0.4, 1.0) * u, rng.uniform(0.5, 1.0))
    return out


def spirals(rng: np.random.Generator, head: Head, size: int) -> Strands:
    """6-15 small Archimedean coils (1.5-3 turns) just outside the upper outline, rooted on it."""
    out, u = Strands(), _unit(size)
    for _ in range(int(rng.integers(6, 16))):
        theta = rng.uniform(np.pi * 0.9, np.pi * 2.1)
        root = head.outline(np.array([theta]))[0]
        outward = head.outward(root[None])[0]
        r0 = head.a * rng.uniform(0.06, 0.18)
        centre = root + r0 * np.array([np.cos(outward), np.sin(outward)])
        total = 2 * np.pi * rng.uniform(1.5, 3.0)
        phi = np.linspace(0.0, total, 90)
        start = outward + np.pi  # the coil starts at the root, on the side facing the head
        sense = rng.choice([-1.0, 1.0])
        r = r0 * (1.0 - 0.85 * phi / total)
        curve = np.stack([centre[0] + r * np.cos(start + sense * phi), centre[1] + r * np.sin(start + sense * phi)], 1)
        out.add(curve, rng.uniform(0.3, 0.8) * u, rng.uniform(0.4, 0.9))
    return out


def curtain(rng: np.random.Generator, head: Head, size: int) -> Strands:
    """80-200 long straight strands falling from the sides of the head past the jaw, in one common wave."""
    out, u = Strands(), _unit(size)
    wavelength, amplitude, phase = head.b * rng.uniform(0.6, 1.5), head.a * rng.uniform(0.0, 0.08), rng.uniform(0, 6.3)
    for _ in range(int(rng.integers(80, 201))):
        side = rng.choice([-1.0, 1.0])
        theta = (np.pi if side < 0 else 0.0) + side * -rng.uniform(0.0, 0.9)
        root = head.outline(np.array([theta]), grow=rng.uniform(1.0, 1.12))[0]
        bulge = root + np.array([side * head.a * rng.uniform(0.02, 0.2), head.b * 0.2])
        end_y = head.y + head.b * rng.uniform(1.2, 3.0)
        y = np.linspace(bulge[1], end_y, 24)
        wave = amplitude * np.sin(2 * np.pi * y / wavelength + phase)
        x = bulge[0] + side * rng.uniform(0.0, 0.15) * (y - bulge[1]) + wave
        curve = np.vstack([root[None], np.stack([x, y], axis=1)])
        out.add(curve, rng.uniform(0.4, 1.2) * u, rng.uniform(0.55, 1.0))
    return out


def flyaways(rng: np.random.Generator, head: Head, size: int, count: tuple[int, int] = (4, 15)) -> Strands:
    """``count`` single long circular arcs leaving the crown: thin (0.2-0.5 px at 512) and faint."""
    out, u = Strands(), _unit(size)
    for _ in range(int(rng.integers(*count))):
        theta = rng.uniform(np.pi * 1.05, np.pi * 1.95)
        root = head.outline(np.array([theta]), grow=rng.uniform(0.98, 1.06))[0]
        length = head.b * rng.uniform(0.5, 1.8)
        n = 30
        curvature = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 2.0) / length
        angles = head.outward(root[None])[0] + rng.normal(0.0, 0.4) + curvature * np.arange(n) * length / n
        out.add(_polyline(root, angles, length / n), rng.uniform(0.2, 0.5) * u, rng.uniform(0.2, 0.65))
    return out


def wires(rng: np.random.Generator, head: Head, size: int) -> Strands:
    """An earphone cable from an ear to the bottom edge (opaque, 0.8-1.8 px at 512) and/or an antenna
    (a straight rod from the crown with a ball at its tip)."""
    out, u = Strands(), _unit(size)
    kind = rng.choice(["cable", "antenna", "both"])
    if kind in ("cable", "both"):
        side = rng.choice([-1.0, 1.0])
        ear = np.array([head.x + side * head.a * 0.97, head.y + 0.2 * head.b])
        end = np.array([head.x + side * head.a * rng.uniform(0.3, 2.5), size + 5.0])
        c1 = ear + np.array([side * head.a * rng.uniform(0.1, 0.6), head.b * rng.uniform(0.5, 1.2)])
        c2 = end + np.array([rng.normal(0.0, head.a), -size * rng.uniform(0.2, 0.5)])
        out.add(_bezier(ear, c1, c2, end, 60), rng.uniform(0.8, 1.8) * u, 1.0, taper=False)
    if kind in ("antenna", "both"):
        theta = -np.pi / 2 + rng.normal(0.0, 0.35)
        root = head.outline(np.array([theta]))[0]
        tip = root + head.b * rng.uniform(0.4, 0.9) * np.array([np.cos(theta), np.sin(theta)])
        out.add(np.linspace(root, tip, 8), rng.uniform(0.6, 1.2) * u, 1.0, taper=False)
        out.add(np.stack([tip, tip]), rng.uniform(3.0, 6.0) * u, 1.0, taper=False)  # the ball: a round dot
    return out


def mane(rng: np.random.Generator, points: np.ndarray, normals: np.ndarray, size: int) -> Strands:
    """Short straight wisps on every 2nd-4th contour point whose outward normal points up."""
    out, u = Strands(), _unit(size)
    up = np.nonzero(normals[:, 1] < -0.6)[0]
    for i in up[::int(rng.integers(2, 5))]:
        angle = np.arctan2(normals[i, 1], normals[i, 0]) + rng.normal(0.0, 0.35)
        length = size * rng.uniform(0.01, 0.04)
        out.add(_polyline(points[i] - normals[i], np.full(6, angle), length / 6), rng.uniform(0.3, 1.0) * u,
                rng.uniform(0.4, 1.0))
    return out


def tail(rng: np.random.Generator, root: np.ndarray, size: int) -> Strands:
    """40-90 long wavy strands hanging from ``root`` (x, y), fanning out as they fall."""
    out, u = Strands(), _unit(size)
    length, wavelength = size * rng.uniform(0.15, 0.3), size * rng.uniform(0.05, 0.12)
    for _ in range(int(rng.integers(40, 91))):
        spread = rng.normal(0.0, 0.25)
        y = np.linspace(0.0, length * rng.uniform(0.6, 1.0), 30)
        x = spread * y + size * 0.006 * np.sin(2 * np.pi * y / wavelength + rng.uniform(0, 1))
        out.add(np.stack([root[0] + x, root[1] + y], axis=1) + rng.normal(0.0, 0.004 * size, 2),
                rng.uniform(0.3, 1.0) * u, rng.uniform(0.4, 1.0))
    return out


HAIR_STYLES = {
    "wisps": straight_wisps,
    "ringlets": ringlets,
    "curtain": curtain,
    "flyaways": flyaways,
    "spirals": spirals,
}
