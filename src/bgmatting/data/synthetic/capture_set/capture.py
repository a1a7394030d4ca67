"""One capture, rendered: the photo(s) I and the plate B' a phone would store, with the truth.

A *still*: the subject over the scene in the reference frame, darkened by the subject's shadow, with sensor
noise; the plate from another pose (:func:`~bgmatting.data.nuisances.random_pose` plus a
:func:`~bgmatting.data.nuisances.parallax_field` of 0.5-1.5 px), another exposure and white balance, its own
noise. A *clip* (``n_frames`` frames): the subject moves smoothly (sideways, bobbing down); a ``fixed`` camera
sees every frame from the reference pose and its plate comes from the same tripod (a sub-pixel shift, no
parallax); a ``handheld`` camera follows a smooth path (shift up to 1.5 % of the longer side, rotation up to
0.8 degrees) and its plate comes from another pose with parallax, as a still's. Photos and plates are stored as
JPEG (each its own quality in 80..92), so what is returned here holds the arrays *before* JPEG and the quality.

Truth per frame: alpha (8-bit levels, as stored), foreground F and trimap (the DIM rule, K scaled with the frame
height as the photo set's). The truth never contains the shadow: F and alpha are the subject's; the shadow only
darkens the scene behind it. Every draw comes from a generator seeded by (seed, stream, index), in a fixed
order that does not depend on the frame size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from bgmatting.data.compositing import composite, trimap_from_alpha
from bgmatting.io import to_uint8
from bgmatting.data.nuisances import (Exposure, Shadow, add_sensor_noise, jpeg_quality, parallax_field,
                                      pose_homography, random_pose, view_through)
from bgmatting.data.synthetic.clips import smooth_path
from bgmatting.data.synthetic.photo_set.build import trimap_k
from bgmatting.data.synthetic.shapes import unpremultiply

from .scene import CaptureScene

_STILL_STREAM, _CLIP_STREAM = 32, 33
KINDS = ("still", "fixed", "handheld")


@dataclass
class RenderedFrame:
    """One photo: ``photo`` (H x W x 3, noise included, before JPEG) and its JPEG ``quality``; the truth
    ``alpha`` (H x W, 8-bit levels), ``foreground`` (H x W x 3) and ``trimap`` (uint8 0/128/255); and, for
    checks, the shadow-free ``scene`` behind the subject and the shadow's ``darkening`` (H x W) in this view."""

    name: str
    photo: np.ndarray
    quality: int
    alpha: np.ndarray
    foreground: np.ndarray
    trimap: np.ndarray
    scene: np.ndarray
    darkening: np.ndarray
    noise: float


@dataclass
class RenderedCapture:
    """A still or a clip: its frames and plate (H x W x 3 before JPEG, its ``plate_quality``) and the geometry:
    ``plate_pose`` (plate px -> reference px), the ``parallax`` field added to it (2 x H x W px, or None) and
    per frame its pose (frame px -> reference px; None: the reference view)."""

    name: str
    kind: str
    frames: list[RenderedFrame]
    plate: np.ndarray
    plate_quality: int
    plate_pose: np.ndarray
    parallax: np.ndarray | None
    frame_poses: list[np.ndarray | None]
    info: dict = field(default_factory=dict)

    def plate_to_frame(self, points: np.ndarray, frame: int = 0) -> np.ndarray:
        """Where plate pixels ``points`` (N x 2, x y) truly are in frame ``frame`` (N x 2): the pose, the parallax
        field (sampled at the nearest pixel) and the frame's camera pose."""
        pts = cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), self.plate_pose).reshape(-1, 2)
        if self.parallax is not None:
            h, w = self.parallax.shape[1:]
            cols = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
            rows = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
            pts = pts + self.parallax[:, rows, cols].T
        pose = self.frame_poses[frame]
        if pose is not None:
            pts = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), np.linalg.inv(pose)).reshape(-1, 2)
        return pts


def _quantised(alpha: np.ndarray) -> np.ndarray:
    return to_uint8(np.clip(alpha, 0.0, 1.0)).astype(np.float32) / np.float32(255.0)


def _render_frame(rng: np.random.Generator, scene: CaptureScene, name: str, premult: np.ndarray, alpha: np.ndarray,
                  fill: np.ndarray, shadow: Shadow, pose: np.ndarray | None) -> RenderedFrame:
    """One photo of the subject (``premult``, ``alpha``, ``fill``: reference frame) seen from ``pose``."""
    h, w = scene.shape
    darkening = shadow.map(alpha)
    if pose is None:
        background, shade = scene.reference_view(scene.world), darkening
    else:
        view = lambda a: view_through(a, pose, (h, w), offset=(scene.margin, scene.margin))  # noqa: E731
        background, shade = view(scene.world), np.clip(view(scene.in_world(darkening)), 0.0, 1.0)
        premult, alpha, fill = view(scene.in_world(premult)), view(scene.in_world(alpha)), view(scene.in_world(fill))
    alpha = _quantised(alpha)
    foreground = unpremultiply(premult, alpha, fill)
    clean = np.clip(composite(alpha, foreground, Shadow.apply(background, shade)), 0.0, 1.0)
    photo, noise = add_sensor_noise(rng, clean)
    return RenderedFrame(name, photo, jpeg_quality(rng), alpha, foreground, trimap_from_alpha(alpha, trimap_k(h)),
                         np.ascontiguousarray(background, np.float32), shade.astype(np.float32), noise)


def _plate(rng: np.random.Generator, scene: CaptureScene, pose: np.ndarray, parallax: np.ndarray | None,
           exposure: Exposure) -> tuple[np.ndarray, int, float]:
    """(plate before JPEG, its quality, its noise sigma): the scene from ``pose`` (+ parallax), re-exposed."""
    clean = exposure.apply(view_through(scene.world, pose, scene.shape, field=parallax,
                                        offset=(scene.margin, scene.margin)))
    plate, noise = add_sensor_noise(rng, clean)
    return plate, jpeg_quality(rng), noise


def _description(kind: str, exposure: Exposure, shadow: Shadow, parallax: np.ndarray | None, noise: float,
                 quality: int) -> dict:
    length = 0.0 if parallax is None else float(np.percentile(np.hypot(parallax[0], parallax[1]), 90))
    gains = dict(zip(("gain_r", "gain_g", "gain_b"), (round(g, 4) for g in exposure.gains)))
    return {"kind": kind, **gains, "gamma": round(exposure.gamma, 4), "shadow": round(shadow.strength, 4),
            "parallax_px": round(length, 3), "plate_noise": round(noise, 5), "plate_jpeg": quality}


def render_still(scene: CaptureScene, seed: int, index: int, name: str) -> RenderedCapture:
    """A still capture of ``scene`` (module docstring)."""
    rng = np.random.default_rng([seed, _STILL_STREAM, index])
    h, w = scene.shape
    pose, parallax = random_pose(rng, h, w), parallax_field(rng, h, w)
    exposure, shadow = Exposure.draw(rng), Shadow.draw(rng)
    plate, quality, noise = _plate(rng, scene, pose, parallax, exposure)
    frame = _render_frame(rng, scene, name, scene.premult, scene.alpha, scene.fill, shadow, None)
    info = _description("still", exposure, shadow, parallax, noise, quality)
    return RenderedCapture(name, "still", [frame], plate, quality, pose, parallax, [None], info)


def _subject_motion(rng: np.random.Generator, n_frames: int, height: int, width: int) -> list[np.ndarray]:
    """2 x 3 affine maps of the subject per frame: sideways up to 6 % of the width, bobbing down up to 2 % of the
    height (never up: the body leaves the bottom edge)."""
    tx = smooth_path(rng, n_frames, 0.06 * width)
    ty = np.abs(smooth_path(rng, n_frames, 0.02 * height))
    return [np.array([[1.0, 0.0, x], [0.0, 1.0, y]]) for x, y in zip(tx, ty)]


def _camera_path(rng: np.random.Generator, n_frames: int, height: int, width: int) -> list[np.ndarray]:
    m = max(height, width)
    return [pose_homography(height, width, shift=(float(a), float(b)), angle_deg=float(c))
            for a, b, c in zip(smooth_path(rng, n_frames, 0.015 * m), smooth_path(rng, n_frames, 0.015 * m),
                               smooth_path(rng, n_frames, 0.8))]


def render_clip(scene: CaptureScene, seed: int, index: int, name: str, n_frames: int,
                handheld: bool) -> RenderedCapture:
    """A clip of ``n_frames`` frames of ``scene`` with a fixed or a hand-held camera (module docstring)."""
    rng = np.random.default_rng([seed, _CLIP_STREAM, index])
    h, w = scene.shape
    if handheld:
        pose, parallax = random_pose(rng, h, w), parallax_field(rng, h, w)
    else:
        pose, parallax = pose_homography(h, w, shift=tuple(rng.normal(0.0, 0.15, 2))), None
    exposure, shadow = Exposure.draw(rng), Shadow.draw(rng)
    motion = _subject_motion(rng, n_frames, h, w)
    cameras = _camera_path(rng, n_frames, h, w) if handheld else [None] * n_frames
    plate, quality, noise = _plate(rng, scene, pose, parallax, exposure)
    frames = []
    for t, (affine, camera) in enumerate(zip(motion, cameras)):
        moved = [cv2.warpAffine(a, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
                 for a, border in ((scene.premult, cv2.BORDER_CONSTANT), (scene.alpha, cv2.BORDER_CONSTANT),
                                   (scene.fill, cv2.BORDER_REPLICATE))]
        frames.append(_render_frame(rng, scene, f"{name}_f{t:02d}", *moved, shadow, camera))
    kind = "handheld" if handheld else "fixed"
    info = _description(kind, exposure, shadow, parallax, noise, quality)
    return RenderedCapture(name, kind, frames, plate, quality, pose, parallax, cameras, info)
