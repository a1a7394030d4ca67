"""Synthetic "real captures": short clips of a moving subject over a static scene, plus a separately
captured background plate that differs from the frames the way a real one does.

Per clip (all from one seeded generator):
* a static scene (photo crop or procedural texture) larger than the frame, so the camera can move;
* a subject (``shapes.render_subject``: hair/fur strands, veils, glass) that translates and rotates
  smoothly over the clip, with motion blur along its per-frame motion;
* a soft shadow of the subject on the scene, in the frames only;
* frames: the camera's view (fixed camera: sub-pixel shake; hand-held: a smooth homography path) plus
  sensor noise;
* the plate: the scene without subject or shadow, seen from a slightly different pose (a small homography),
  with another exposure (gain, gamma, colour balance) and its own noise. Hand-held clips also get the plate
  aligned to each frame (the exact warp plus a small residual error, outside the warp filled from the frame
  as in the public code);
* soft segmentation per frame, by ``segmentation``: ``background_difference`` (default) runs the offline
  segmenter ``prepare_real`` uses on the frame and the plate aligned to it (a good alignment's residual error;
  exposure, noise and the subject's shadow differ as they do in a real capture), so S fails the way a real
  segmenter's S fails (shadows, camouflage, noise); ``from_alpha`` is the true alpha thresholded at 0.5 with
  per-frame boundary jitter (a near-perfect S). Both get the public code's erode/dilate/blur post-process.
True alpha, foreground and shadow per frame go to a separate ``ground_truth/`` tree that training never reads.
Written in the real-captures layout (``bgmatting.data.real``).
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bgmatting.io import to_float, to_uint8, write_alpha, write_image
from bgmatting.data.nuisances import pose_homography, random_pose
from bgmatting.data.real import MANIFEST_NAME, Clip, RealCaptureDataset, frame_name, write_real_manifest
from bgmatting.preprocess.segment import get_segmenter, postprocess_segmentation, segmentation_crop_scale

from .cache import build_atomically, cache_root, parameter_key
from .shapes import Subject, apply_motion_blur, render_subject, unpremultiply
from .textures import random_background

PathLike = str | os.PathLike
GENERATOR_VERSION = 3  # bump whenever the generated content changes
SEGMENTATIONS = ("background_difference", "from_alpha")
_CLIP, _TARGET = 11, 12


def _size_hw(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def _view(world: np.ndarray, pose: np.ndarray, margin: int, out_hw: tuple[int, int], interp=cv2.INTER_LINEAR,
          border=cv2.BORDER_REFLECT) -> np.ndarray:
    """The camera's view of ``world``: frame pixel p sees world pixel pose^-1-mapped, offset by ``margin``."""
    offset = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1]], np.float64)
    m = offset @ np.linalg.inv(pose)  # frame -> world
    return cv2.warpPerspective(world, m, (out_hw[1], out_hw[0]), flags=interp | cv2.WARP_INVERSE_MAP,
                               borderMode=border)


def _photometric(image: np.ndarray, gain: float, gamma: float, balance: np.ndarray) -> np.ndarray:
    return np.clip(gain * balance * np.power(np.clip(image, 0, 1), gamma), 0.0, 1.0).astype(np.float32)


def _segmentation_from_alpha(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A near-perfect soft S from a true alpha: alpha > 0.5 with +-1 px of per-frame boundary jitter, then
    the segmenters' post-process (the public code's erode/dilate/blur, scaled to the subject's crop)."""
    mask = (alpha > 0.5).astype(np.uint8)
    jitter = int(rng.integers(-1, 2))
    k3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    if jitter > 0:
        mask = cv2.dilate(mask, k3, iterations=jitter)
    elif jitter < 0:
        mask = cv2.erode(mask, k3, iterations=-jitter)
    mask = mask.astype(np.float32)
    return postprocess_segmentation(mask, scale=segmentation_crop_scale(mask))


def smooth_path(rng, n: int, amplitude: float, cycles=(0.3, 1.0)) -> np.ndarray:
    """A smooth periodic-ish 1D path of n samples in [-amplitude, amplitude]."""
    t = np.linspace(0.0, 1.0, n)
    f1, f2 = rng.uniform(*cycles), rng.uniform(*cycles) * 2
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    return amplitude * (0.75 * np.sin(2 * np.pi * f1 * t + p1) + 0.25 * np.sin(2 * np.pi * f2 * t + p2))


@dataclass
class _World:
    """The static scene, larger than the frame by ``margin`` on each side so that the camera can move."""

    height: int  # frame size
    width: int
    margin: int
    scene: np.ndarray  # (height + 2 margin) x (width + 2 margin) x 3

    @property
    def shape(self) -> tuple[int, int]:
        return self.scene.shape[0], self.scene.shape[1]

    def view(self, image: np.ndarray, pose: np.ndarray, border=cv2.BORDER_REFLECT) -> np.ndarray:
        """What a camera at ``pose`` sees of a world-sized ``image``."""
        return _view(image, pose, self.margin, (self.height, self.width), border=border)


@dataclass
class _MovingSubject:
    """The subject in the world: its rendering and a smooth translation + rotation about a pivot per frame."""

    kind: str
    camouflaged: bool
    subject: Subject  # on a canvas taller than the world
    premultiplied: np.ndarray
    centre: tuple[float, float]
    pivot: tuple[float, float]
    tx: np.ndarray
    ty: np.ndarray
    rot: np.ndarray

    def affine(self, i: int) -> np.ndarray:
        a = cv2.getRotationMatrix2D(self.pivot, float(self.rot[i]), 1.0)
        a[:, 2] += (self.tx[i], self.ty[i])
        return a


@dataclass
class _Shadow:
    """The subject's silhouette sheared and offset onto the scene, blurred, darkening by ``strength``."""

    shift: tuple[float, float]
    shear: float
    sigma: float
    strength: float

    def of(self, alpha: np.ndarray) -> np.ndarray:
        wh, ww = alpha.shape
        sh = np.array([[1.0, self.shear, self.shift[0] - self.shear * wh], [0.0, 1.0, self.shift[1]]])
        return cv2.GaussianBlur(cv2.warpAffine(alpha, sh, (ww, wh), borderValue=0), (0, 0), self.sigma)


@dataclass
class _Camera:
    """Frame poses and the plate's pose, and the plate's different exposure; noise levels of both."""

    frame_poses: list[np.ndarray]
    plate_pose: np.ndarray
    gain: float
    gamma: float
    balance: np.ndarray
    frame_noise: float
    plate_noise: float


def _make_world(rng: np.random.Generator, size: tuple[int, int]) -> _World:
    H, W = size
    margin = int(round(0.08 * max(H, W))) + 2
    return _World(H, W, margin, random_background(rng, H + 2 * margin, W + 2 * margin))


def _make_subject(rng: np.random.Generator, world: _World, n_frames: int) -> _MovingSubject:
    """Subject on a canvas taller than the world, so that swaying never uncovers a person's cut-off torso."""
    wh, ww = world.shape
    scene = world.scene
    kind = ["person", "furry", "object"][int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
    pad = int(round(0.3 * wh))
    if kind == "person":  # head at 30-45 % of the frame height
        scale = rng.uniform(0.55, 0.7) * wh / min(wh + pad, ww)
        centre = (ww / 2, wh * rng.uniform(0.3, 0.45))
    else:
        scale = rng.uniform(0.4, 0.55)
        centre = (ww / 2, wh / 2 + rng.uniform(-0.05, 0.05) * wh)
    camouflaged = rng.random() < 0.3
    canvas_scene = np.concatenate([scene, np.repeat(scene[-1:], pad, axis=0)], axis=0)
    subject = render_subject(rng, wh + pad, ww, kind=kind, scale=scale, centre=centre,
                             camouflage=canvas_scene if camouflaged else None, p_motion_blur=0.0)
    premult_full = subject.foreground * subject.alpha[:, :, None]
    # Motion of the subject in the world: translation + rotation about a pivot (bottom centre for persons).
    tx = smooth_path(rng, n_frames, 0.22 * ww)
    ty = smooth_path(rng, n_frames, 0.03 * wh if kind == "person" else 0.12 * wh)
    rot = smooth_path(rng, n_frames, rng.uniform(3.0, 10.0))
    pivot = (centre[0], float(wh) if kind == "person" else centre[1])
    return _MovingSubject(kind, camouflaged, subject, premult_full, centre, pivot, tx, ty, rot)


def _make_shadow(rng: np.random.Generator, world: _World) -> _Shadow:
    wh, ww = world.shape
    m = max(world.height, world.width)
    shift = (rng.choice([-1, 1]) * rng.uniform(0.04, 0.1) * ww, rng.uniform(-0.04, 0.02) * wh)
    shear = rng.uniform(-0.35, 0.35)
    sigma = rng.uniform(0.015, 0.035) * m
    return _Shadow(shift, shear, sigma, rng.uniform(0.3, 0.6))


def _make_camera(rng: np.random.Generator, world: _World, n_frames: int, handheld: bool) -> _Camera:
    """Frames: fixed (sub-pixel shake) or hand-held (a smooth path); the plate from its own pose, exposed
    differently from the frames (auto exposure, white balance)."""
    H, W = world.height, world.width
    m = max(H, W)
    if handheld:
        frame_poses = [pose_homography(H, W, shift=(float(a), float(b)), angle_deg=float(c))
                       for a, b, c in zip(smooth_path(rng, n_frames, 0.03 * m), smooth_path(rng, n_frames, 0.03 * m),
                                          smooth_path(rng, n_frames, 1.5))]
        plate_pose = random_pose(rng, H, W, shift=0.03, angle=1.5, scale=0.02, perspective=0.03)
    else:
        shake = rng.normal(0.0, 0.25, (n_frames, 2))
        frame_poses = [pose_homography(H, W, shift=tuple(s)) for s in shake]
        plate_pose = random_pose(rng, H, W, shift=0.008, angle=0.4, scale=0.005, perspective=0.005)
    gain = float(rng.choice([-1, 1]) * rng.uniform(0.05, 0.15) + 1.0)
    gamma = float(rng.uniform(0.85, 1.15))
    balance = (1.0 + rng.uniform(-0.04, 0.04, 3)).astype(np.float32)
    frame_noise, plate_noise = rng.uniform(0.004, 0.012), rng.uniform(0.004, 0.012)
    return _Camera(frame_poses, plate_pose, gain, gamma, balance, frame_noise, plate_noise)


def _make_plate(rng: np.random.Generator, world: _World, camera: _Camera) -> np.ndarray:
    """The scene without subject or shadow, from the plate's pose and exposure, with its own noise."""
    plate_clean = _photometric(world.view(world.scene, camera.plate_pose), camera.gain, camera.gamma,
                               camera.balance)
    return np.clip(plate_clean + rng.normal(0, camera.plate_noise, plate_clean.shape), 0, 1).astype(np.float32)


def _subject_in_world(subject: _MovingSubject, world: _World, i: int,
                      previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(premultiplied colour, alpha) of the subject in the world at frame ``i``, motion-blurred over 30 % of
    the frame interval (a ~110-degree shutter) along its motion since the ``previous`` frame's affine."""
    wh, ww = world.shape
    a = subject.affine(i)
    premult = cv2.warpAffine(subject.premultiplied, a, (ww, wh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    alpha = cv2.warpAffine(subject.subject.alpha, a, (ww, wh), flags=cv2.INTER_LINEAR, borderValue=0)
    centre = np.array([subject.centre[0], subject.centre[1], 1.0])
    velocity = a @ centre - previous @ centre
    speed = float(np.hypot(*velocity))
    if speed >= 3.0:
        premult, alpha = apply_motion_blur(premult, alpha, 0.3 * speed,
                                           float(np.degrees(np.arctan2(velocity[1], velocity[0]))))
    return premult, alpha


def _write_frame(rng: np.random.Generator, out_clip: Path, out_truth: Path, i: int, world: _World,
                 subject: _MovingSubject, shadow: _Shadow, camera: _Camera, plate: np.ndarray, handheld: bool,
                 segmentation: str) -> None:
    """Frame ``i`` with its segmentation (and aligned plate when hand-held), and its ground truth."""
    pose = camera.frame_poses[i]
    previous = subject.affine(max(i - 1, 0))
    premult, alpha = _subject_in_world(subject, world, i, previous)
    shadow_map = shadow.of(alpha)
    shaded = world.scene * (1.0 - shadow.strength * shadow_map[:, :, None])
    frame = world.view(premult + (1.0 - alpha[:, :, None]) * shaded, pose)
    frame = np.clip(frame + rng.normal(0, camera.frame_noise, frame.shape), 0, 1).astype(np.float32)
    alpha_f = np.clip(world.view(alpha, pose, border=cv2.BORDER_CONSTANT), 0, 1)
    premult_f = world.view(premult, pose, border=cv2.BORDER_CONSTANT)
    fg_f = unpremultiply(premult_f, alpha_f, world.view(subject.subject.foreground[:world.shape[0]], pose))
    write_image(out_clip / "frames" / frame_name(i), frame)
    aligned = _aligned_plate(rng, world, camera, plate, frame, pose)
    if segmentation == "background_difference":  # on the 8-bit files, as prepare_real reads them
        seg = get_segmenter("background_difference")(to_float(to_uint8(frame)), to_float(to_uint8(aligned)))
    else:
        seg = _segmentation_from_alpha(alpha_f, rng)
    write_alpha(out_clip / "segmentation" / frame_name(i), seg)
    write_alpha(out_truth / "alpha" / frame_name(i), alpha_f)
    write_image(out_truth / "foreground" / frame_name(i), fg_f)
    write_alpha(out_truth / "shadow" / frame_name(i),
                shadow.strength * world.view(shadow_map, pose, border=cv2.BORDER_CONSTANT))
    if handheld:
        write_image(out_clip / "aligned_background" / frame_name(i), aligned)


def _aligned_plate(rng: np.random.Generator, world: _World, camera: _Camera, plate: np.ndarray, frame: np.ndarray,
                   pose: np.ndarray) -> np.ndarray:
    """The plate warped into a frame (exact, plus a residual error of a good alignment), and pixels the plate
    does not cover taken from the frame (the public code's fill rule)."""
    H, W = world.height, world.width
    residual = pose_homography(H, W, shift=tuple(rng.normal(0, 0.3, 2)), angle_deg=float(rng.normal(0, 0.05)))
    to_frame = residual @ pose @ np.linalg.inv(camera.plate_pose)
    aligned = cv2.warpPerspective(plate, to_frame, (W, H), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=(-1, -1, -1))
    outside = aligned[:, :, :1] < 0
    return np.where(outside, frame, aligned)


def generate_clip(out_clip: Path, out_truth: Path, rng: np.random.Generator, n_frames: int,
                  size: tuple[int, int], handheld: bool, name: str, segmentation: str = "background_difference") -> Clip:
    """Write one synthetic capture (frames, plate, segmentation, optional aligned plates, ground truth).
    Every random draw comes from ``rng``, in the order of the steps below."""
    world = _make_world(rng, size)
    subject = _make_subject(rng, world, n_frames)
    shadow = _make_shadow(rng, world)
    camera = _make_camera(rng, world, n_frames, handheld)
    plate = _make_plate(rng, world, camera)
    write_image(out_clip / "background.png", plate)
    for i in range(n_frames):
        _write_frame(rng, out_clip, out_truth, i, world, subject, shadow, camera, plate, handheld, segmentation)
    truth = {"kind": subject.kind, "handheld": handheld, "camouflage": subject.camouflaged, "gain": camera.gain,
             "gamma": camera.gamma, "balance": camera.balance.tolist(), "frame_noise": camera.frame_noise,
             "plate_noise": camera.plate_noise, "shadow_strength": shadow.strength,
             "plate_pose": camera.plate_pose.tolist(), "frame_poses": [p.tolist() for p in camera.frame_poses],
             "subject": subject.subject.info}
    (out_truth / "capture.json").write_text(json.dumps(truth, indent=1, default=float), encoding="utf-8")
    H, W = size
    return Clip(name=name, path=out_clip, n_frames=n_frames, height=H, width=W, handheld=handheld,
                aligned_background="aligned_background" if handheld else None, source="synthetic",
                ground_truth=out_truth)


def generate_real_set(out: Path, *, n_clips: int, n_frames: int, size, n_targets: int, handheld_fraction: float,
                      seed: int, workers: int = 2, segmentation: str = "background_difference") -> dict:
    """Write the synthetic captures (clips, targets, ground truth, manifest.json) into ``out``."""
    h, w = _size_hw(size)
    out = Path(out)
    n_handheld = int(round(handheld_fraction * n_clips))
    def clip(c: int) -> Clip:
        name = f"clip_{c:03d}"
        return generate_clip(out / "clips" / name, out / "ground_truth" / name, np.random.default_rng([seed, _CLIP, c]),
                             n_frames, (h, w), handheld=c >= n_clips - n_handheld, name=name,
                             segmentation=segmentation)

    def target(i: int) -> None:
        write_image(out / "targets" / f"target_{i:04d}.png",
                    random_background(np.random.default_rng([seed, _TARGET, i]), h, w))

    # Clips and targets are independent (one seeded generator each): threads give the same files.
    with ThreadPoolExecutor(max(1, workers)) as pool:
        clips = list(pool.map(clip, range(n_clips)))
        list(pool.map(target, range(n_targets)))
    write_real_manifest(out / MANIFEST_NAME, clips, out / "targets")
    return {"generator_version": GENERATOR_VERSION, "kind": "synthetic_real",
            "parameters": {"n_clips": n_clips, "n_frames": n_frames, "size": [h, w], "n_targets": n_targets,
                           "handheld_fraction": handheld_fraction, "seed": seed, "segmentation": segmentation}}


def ensure_synthetic_real(root: PathLike | None = None, *, n_clips: int = 6, n_frames: int = 24,
                          size: int | tuple[int, int] = (144, 192), n_targets: int = 16,
                          handheld_fraction: float = 0.34, seed: int = 0, workers: int = 2,
                          segmentation: str = "background_difference") -> Path:
    """Generate (first call) or find (later calls) the synthetic captures; returns the manifest path.

    root: cache root (default ``$BGMATTING_CACHE`` or ``~/.cache/bgmatting``); the set goes to
    ``root/synthetic_real/<parameters>``. size: frame size, int (square) or (height, width).
    handheld_fraction: share of clips filmed hand-held (these get aligned_background/).
    workers: generation threads (the result does not depend on it). segmentation: how each frame's S is made
    (:data:`SEGMENTATIONS`, see the module docstring).
    """
    if n_clips < 1 or n_frames < 1 or n_targets < 1:
        raise ValueError("n_clips, n_frames and n_targets must be >= 1")
    h, w = _size_hw(size)
    if min(h, w) < 16:
        raise ValueError(f"size must be at least 16 px, got {(h, w)}")
    if not 0.0 <= handheld_fraction <= 1.0:
        raise ValueError(f"handheld_fraction must be in [0, 1], got {handheld_fraction}")
    if segmentation not in SEGMENTATIONS:
        raise ValueError(f"segmentation must be one of {', '.join(SEGMENTATIONS)}, got {segmentation!r}")
    base = Path(root).expanduser() if root is not None else cache_root()
    key = parameter_key(v=GENERATOR_VERSION, clips=n_clips, frames=n_frames, size=(h, w), targets=n_targets,
                        handheld=handheld_fraction, seed=seed, seg=segmentation)
    folder, _ = build_atomically(base / "synthetic_real" / key, lambda tmp: generate_real_set(
        tmp, n_clips=n_clips, n_frames=n_frames, size=(h, w), n_targets=n_targets,
        handheld_fraction=handheld_fraction, seed=seed, workers=workers, segmentation=segmentation))
    return folder / MANIFEST_NAME


def synthetic_real_dataset(cache_dir: PathLike | None = None, *, n_clips: int = 6, n_frames: int = 24,
                           frame_size: int | tuple[int, int] = (144, 192), n_targets: int = 16,
                           handheld_fraction: float = 0.34, seed: int = 0, workers: int = 2,
                           segmentation: str = "background_difference", **dataset_kwargs):
    """``RealCaptureDataset`` over the synthetic captures (generated on first use).

    ``frame_size`` and the other named arguments are generation parameters (``ensure_synthetic_real``'s
    ``size`` is ``frame_size`` here). ``dataset_kwargs`` go to ``RealCaptureDataset`` (size = output size,
    motion_offsets, boundary, crop, hflip, ...); ``sample_seed`` becomes its ``seed``."""
    manifest = ensure_synthetic_real(cache_dir, n_clips=n_clips, n_frames=n_frames, size=frame_size,
                                     n_targets=n_targets, handheld_fraction=handheld_fraction, seed=seed,
                                     workers=workers, segmentation=segmentation)
    if "sample_seed" in dataset_kwargs:
        dataset_kwargs["seed"] = dataset_kwargs.pop("sample_seed")
    return RealCaptureDataset(manifest, **dataset_kwargs)
