"""The capture set at one frame size: files, manifest and cache.

Layout (read by :class:`~bgmatting.data.synthetic.capture_set.dataset.CaptureSet`)::

    <root>/manifest.csv                 name, unit, kind, index, photo, plate, alpha, foreground, trimap, and per
                                        unit: subject, hair, background_photo, gains, gamma, shadow, parallax_px,
                                        plate_noise, plate_jpeg, photo_noise, photo_jpeg
    <root>/photo/still_0000.jpg         a still's photo (JPEG, as a phone stores it)
    <root>/photo/clip_00/f00.jpg ...    a clip's frames (a folder, as ``python -m bgmatting.infer`` reads a clip)
    <root>/plate/<unit>.jpg             the unit's captured background (JPEG)
    <root>/{alpha,foreground,trimap}/<frame name>.png    the truth (PNG, 8 bit)
    <root>/COMPLETE.json                parameters, generator version, seconds, per-unit description

Units: ``n_stills`` stills, then ``n_clips`` clips of ``n_frames`` frames (even clip indices a fixed camera,
odd ones hand-held). Frame shapes (:func:`frame_shape`): sizes below 720 are the long side of a 4:3 landscape
photo (256 -> 256 x 192, 512 -> 512 x 384); 720 and above are a 16:9 video's height (1080 -> 1920 x 1080).
Everything is a pure function of (size, n_stills, n_clips, n_frames, seed); worker threads do not change it.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bgmatting.io import write_alpha, write_image, write_jpeg
from bgmatting.data.manifest import write_manifest
from bgmatting.data.synthetic.cache import build_atomically, cache_root, parameter_key

from .capture import RenderedCapture, render_clip, render_still
from .scene import render_capture_scene

PathLike = str | os.PathLike
GENERATOR_VERSION = 1  # bump whenever the generated content changes
CAPTURE_SIZES = (256, 512, 1080)
#: Default counts: scoring one size end to end stays within about 1-2 minutes on 2 CPU cores (docs/CAPTURES.md).
N_STILLS, N_CLIPS, N_FRAMES = 24, 2, 10
#: The default seed; the capture set's random streams (scene 31, still 32, clip 33) are used by nothing else.
SEED = 1
COLUMNS = ("name", "unit", "kind", "index", "photo", "plate", "alpha", "foreground", "trimap")
UNIT_COLUMNS = ("subject", "hair", "background_photo", "camouflage", "gain_r", "gain_g", "gain_b", "gamma", "shadow",
                "parallax_px", "plate_noise", "plate_jpeg")
_KIND = "capture_set"


def frame_shape(size: int) -> tuple[int, int]:
    """(height, width) of the frames at ``size``: 4:3 landscape with long side ``size`` below 720, else 16:9 of
    height ``size`` (module docstring)."""
    size = int(size)
    if size >= 720:
        return size, int(round(size * 16 / 9))
    return int(round(size * 0.75)), size


def _unit(seed: int, index: int, shape: tuple[int, int], n_stills: int,
          n_frames: int) -> tuple[RenderedCapture, dict]:
    """(unit ``index``, its scene's description): a still below ``n_stills``, else clip ``index - n_stills``."""
    scene = render_capture_scene(seed, index, *shape)
    if index < n_stills:
        return render_still(scene, seed, index, f"still_{index:04d}"), scene.info
    clip = index - n_stills
    return render_clip(scene, seed, clip, f"clip_{clip:02d}", n_frames, handheld=clip % 2 == 1), scene.info


def _write_unit(out: Path, capture: RenderedCapture, scene_info: dict) -> list[dict]:
    """Write one unit's files; returns its manifest rows."""
    clip = capture.kind != "still"
    plate = write_jpeg(out / "plate" / f"{capture.name}.jpg", capture.plate, capture.plate_quality)
    unit_info = {**{k: scene_info.get(k, "") for k in UNIT_COLUMNS}, **capture.info}
    rows = []
    for index, frame in enumerate(capture.frames):
        photo_name = f"{capture.name}/f{index:02d}.jpg" if clip else f"{frame.name}.jpg"
        row = {"name": frame.name, "unit": capture.name, "kind": capture.kind, "index": index,
               "photo": write_jpeg(out / "photo" / photo_name, frame.photo, frame.quality), "plate": plate,
               "alpha": out / "alpha" / f"{frame.name}.png", "foreground": out / "foreground" / f"{frame.name}.png",
               "trimap": out / "trimap" / f"{frame.name}.png"}
        write_alpha(row["alpha"], frame.alpha)
        write_image(row["foreground"], frame.foreground)
        write_alpha(row["trimap"], frame.trimap)
        rows.append({**row, **{k: unit_info[k] for k in UNIT_COLUMNS},
                     "photo_noise": round(frame.noise, 5), "photo_jpeg": frame.quality})
    return rows


def generate_capture_set(out: Path, *, size: int, n_stills: int, n_clips: int, n_frames: int, seed: int,
                         workers: int = 2) -> dict:
    """Write the set at ``size`` into ``out`` (module docstring); returns the description for the marker."""
    out, shape = Path(out), frame_shape(size)

    def one(index: int) -> list[dict]:
        return _write_unit(out, *_unit(seed, index, shape, n_stills, n_frames))

    with ThreadPoolExecutor(max(1, workers)) as pool:
        units = list(pool.map(one, range(n_stills + n_clips)))
    rows = [row for unit in units for row in unit]
    write_manifest(out / "manifest.csv", rows, (*COLUMNS, *UNIT_COLUMNS, "photo_noise", "photo_jpeg"))
    return {"generator_version": GENERATOR_VERSION, "kind": _KIND, "frame_shape": list(shape),
            "parameters": {"size": size, "n_stills": n_stills, "n_clips": n_clips, "n_frames": n_frames, "seed": seed},
            "units": [{k: v for k, v in unit[0].items() if k in ("unit", "kind", *UNIT_COLUMNS)} for unit in units]}


def ensure_capture_set(root: PathLike | None = None, *, size: int = 256, n_stills: int = N_STILLS,
                       n_clips: int = N_CLIPS, n_frames: int = N_FRAMES, seed: int = SEED, workers: int = 2) -> Path:
    """Generate (first call) or find (later calls) the capture set at ``size``; returns its folder.

    root: cache root (default ``$BGMATTING_CACHE`` or ``~/.cache/bgmatting``); the set goes to
    ``root/capture_set/<parameters>``, generated atomically (``synthetic.cache.build_atomically``).
    """
    if int(size) < 32:
        raise ValueError(f"capture set size must be at least 32 px, got {size}")
    if n_stills < 0 or n_clips < 0 or n_stills + n_clips < 1:
        raise ValueError(f"a capture set needs at least one still or clip, got {n_stills} stills and {n_clips} clips")
    if n_clips and n_frames < 2:
        raise ValueError(f"clips need at least 2 frames (dtSSD compares consecutive frames), got {n_frames}")
    base = Path(root).expanduser() if root is not None else cache_root()
    key = parameter_key(v=GENERATOR_VERSION, size=int(size), stills=n_stills, clips=n_clips, frames=n_frames, seed=seed)
    folder, _ = build_atomically(base / _KIND / key, lambda tmp: generate_capture_set(
        tmp, size=int(size), n_stills=n_stills, n_clips=n_clips, n_frames=n_frames, seed=seed, workers=workers))
    return folder
