"""Video inference end to end, as ``python -m bgmatting.infer`` runs it: refine mode against the crop (original)
mode, this code against another checkout's, per stage and with peak memory.

A synthetic fixed-camera clip (a textured plate of scikit-image photos with sensor noise, a subject moving across
it; MJPG) and its plate are written per frame size. Each configuration (code x mode) is one ``infer`` run in a
fresh process (:mod:`bgmatting.benchmarks.clip_probe`): frames/s end to end, exclusive seconds per stage and the
process's peak resident set size. Repeats are interleaved (every configuration once, then again), so machine
noise hits them alike; frames/s is the median over repeats, with the spread. ``compare_src`` is another checkout's
``src`` folder (e.g. the previous commit's): the same measurement runs there with that PYTHONPATH. Without a
checkpoint, a random-weight model of ``model_name`` (BatchNorm calibrated, refiner output layer drawn) is saved
and used; speed does not depend on the weights' values.

Alpha check: the first frames of the clip are matted again (untimed) with the fast path, with the unoptimised
path (``fast_inference`` off, threads off) and, with ``compare_src``, by the other code; the report gives the
largest |alpha difference| over the written (post-processed, temporally filtered) float alphas.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data as skdata

import bgmatting
from bgmatting.benchmarks import clip_probe
from bgmatting.benchmarks.inputs import make_batch
from bgmatting.benchmarks.model import calibrate_batchnorm, configured_model
from bgmatting.io import write_image

SUBJECT_SIDE_FRACTION = 0.8  # subject height relative to the frame height
VIDEO_MODES = ("refine", "original")  # infer --mode: the refining checkpoint at native resolution, and the 512 crop
ALPHA_CHECK_FRAMES = 3
#: Runs one configuration in a fresh process: loads clip_probe.py by its path (argv 1) and runs spec argv 2.
_BOOT = ("import importlib.util, json, sys; s = importlib.util.spec_from_file_location('clip_probe', sys.argv[1]); "
         "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
         "open(sys.argv[3], 'w').write(json.dumps(m.run(json.load(open(sys.argv[2])))))")


def _textured_background(height: int, width: int) -> np.ndarray:
    """uint8 H x W x 3: a 2 x 3 mosaic of scikit-image photos (many features for AKAZE)."""
    names = ("rocket", "coffee", "chelsea", "immunohistochemistry", "hubble_deep_field", "coffee")
    tile_h, tile_w = height // 2 + 1, width // 3 + 1
    tiles = [cv2.resize(getattr(skdata, n)()[..., :3], (tile_w, tile_h), interpolation=cv2.INTER_CUBIC) for n in names]
    rows = [np.concatenate(tiles[r * 3:(r + 1) * 3], axis=1) for r in range(2)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height, :width])


def _subject(side: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 side x side x 3 photo, float32 side x side soft head-and-shoulders alpha)."""
    photo = cv2.resize(skdata.astronaut(), (side, side), interpolation=cv2.INTER_CUBIC)
    alpha = np.zeros((side, side), np.float32)
    cv2.ellipse(alpha, (side // 2, int(side * 0.35)), (int(side * 0.22), int(side * 0.25)), 0, 0, 360, 1.0, -1)
    cv2.ellipse(alpha, (side // 2, side), (int(side * 0.45), int(side * 0.45)), 0, 180, 360, 1.0, -1)
    return photo, cv2.GaussianBlur(alpha, (9, 9), 3.0)


def write_clip(folder: Path, frames: int, height: int = 1080, width: int = 1920, fps: float = 25.0, *,
               handheld: bool = False, noise: float = 1.5, seed: int = 0) -> tuple[Path, Path]:
    """Write ``clip.avi`` (MJPG) and ``plate.png`` into ``folder``; returns (video path, plate path).

    A subject moves across a textured plate; ``handheld``: the view also shifts a few pixels per frame (AKAZE
    alignment has work to do), else the camera is fixed. ``noise``: sensor noise sigma in 8-bit levels.
    """
    margin = 24
    scene = _textured_background(height + 2 * margin, width + 2 * margin)
    plate = scene[margin:margin + height, margin:margin + width]
    write_image(folder / "plate.png", plate)
    side = int(height * SUBJECT_SIDE_FRACTION)
    photo, alpha = _subject(side)
    rng = np.random.default_rng(seed)
    path = folder / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write MJPG video here")
    try:
        for index in range(frames):
            dx, dy = (int(round(6 * np.sin(index / 3.0))), int(round(4 * np.cos(index / 4.0)))) if handheld else (0, 0)
            frame = scene[margin + dy:margin + dy + height, margin + dx:margin + dx + width].astype(np.float32)
            x0 = width // 2 - side // 2 + int((index - frames / 2) * width / 160)
            region = frame[height - side:, x0:x0 + side]
            region[:] = alpha[..., None] * photo + (1 - alpha[..., None]) * region
            if noise:
                frame += rng.normal(0.0, noise, frame.shape).astype(np.float32)
            writer.write(cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path, folder / "plate.png"


def write_handheld_clip(folder: Path, frames: int, height: int = 1080, width: int = 1920,
                        fps: float = 25.0) -> tuple[Path, Path]:
    """:func:`write_clip` with a hand-held camera and no sensor noise."""
    return write_clip(folder, frames, height, width, fps, handheld=True, noise=0.0)


def random_checkpoint(path: Path, model_name: str, seed: int = 0) -> Path:
    """Save a random-weight refining model of ``configs/model/<model_name>.yaml`` (BatchNorm calibrated on a photo
    composite, the refiner's zero-initialised output layer drawn so that refined patches differ) to ``path``."""
    model = configured_model(model_name, seed=seed)
    calibrate_batchnorm(model, make_batch(2, 128))
    if model.refiner is not None:
        last = model.refiner.fine_stage[-1]
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            last.weight.copy_(torch.randn(last.weight.shape, generator=generator) * 0.05)
    torch.save(model.checkpoint_state(), path)
    return path


def run_probe(spec: dict, src: str | os.PathLike | None, folder: Path, timeout: float | None = None) -> dict:
    """One :func:`clip_probe.run` in a fresh process whose PYTHONPATH starts with ``src`` (None: this code)."""
    src = Path(src) if src is not None else Path(bgmatting.__file__).resolve().parents[1]
    spec_path = Path(tempfile.mkstemp(suffix=".json", dir=folder)[1])
    result_path = spec_path.with_suffix(".result.json")
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    process = subprocess.run([sys.executable, "-c", _BOOT, clip_probe.__file__, str(spec_path), str(result_path)],
                             env=env, capture_output=True, text=True, timeout=timeout)
    if process.returncode != 0:
        tail = (process.stderr or process.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"clip probe ({spec['mode']}, code {src}) failed: " + " | ".join(tail))
    return json.loads(result_path.read_text())


def _summarize(runs: list[dict]) -> dict:
    """Median frames/s over repeats with the spread, median stage seconds per frame, largest peak RSS."""
    rates = [r["frames_per_s"] for r in runs]
    frames = runs[0]["frames"]
    stages = {s: statistics.median(r["stages_s"][s] for r in runs) / frames for s in clip_probe.STAGES}
    keep = ("code", "mode", "frames", "threads", "fast_inference", "precision", "torch_threads", "refine_options")
    per_run = [{s: r["stages_s"][s] / frames for s in clip_probe.STAGES} for r in runs]
    return {**{k: runs[0][k] for k in keep}, "frames_per_s": statistics.median(rates), "frames_per_s_runs": rates,
            "spread": (max(rates) - min(rates)) / statistics.median(rates), "stages_s_per_frame": stages,
            "stages_s_per_frame_runs": per_run,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "rss_after_loading_mib": max(r["rss_after_loading_mib"] for r in runs)}


def _alpha_check(base_spec: dict, compare_src: str | None, folder: Path, progress: Callable[[str], None]) -> dict:
    """The fast path's alphas against the unoptimised path's (and the other code's), on the first frames: the
    network's alpha (largest |difference|) and the written one after the thresholded clean-up (largest, and the
    share of pixels above 1e-3: a pixel at a threshold may flip)."""
    alphas = {}
    variants = {"fast": (None, dict(fast=True, threads=True)), "unoptimised": (None, dict(fast=False, threads=False))}
    if compare_src:
        variants["compare"] = (compare_src, {})
    for name, (src, options) in variants.items():
        spec = dict(base_spec, **options, max_frames=ALPHA_CHECK_FRAMES, alpha_path=str(folder / f"alpha_{name}.npz"),
                    output=str(folder / f"alpha_{name}"))
        run_probe(spec, src, folder)
        with np.load(spec["alpha_path"]) as saved:
            alphas[name] = {key: saved[key] for key in ("network", "output")}
    check: dict = {"frames": int(alphas["fast"]["output"].shape[0])}
    for name in (n for n in alphas if n != "fast"):
        network = np.abs(alphas["fast"]["network"] - alphas[name]["network"])
        output = np.abs(alphas["fast"]["output"] - alphas[name]["output"])
        check.update({f"network_max_abs_diff_vs_{name}": float(network.max()),
                      f"output_max_abs_diff_vs_{name}": float(output.max()),
                      f"output_share_above_1e-3_vs_{name}": float((output > 1e-3).mean())})
    progress("[video] alpha, fast path vs " + ", ".join(f"{k.replace('_abs_diff_vs', '')}: {v:.1e}"
                                                        for k, v in check.items() if k != "frames"))
    return check


def _ratios(runs: dict[tuple[str, str], list[dict]], numerator: tuple[str, str],
            denominator: tuple[str, str]) -> dict | None:
    """frames/s of ``numerator`` over ``denominator`` (code, mode), paired by repeat: median, min, max."""
    if numerator not in runs or denominator not in runs:
        return None
    pairs = [a["frames_per_s"] / b["frames_per_s"] for a, b in zip(runs[numerator], runs[denominator])]
    return {"median": statistics.median(pairs), "min": min(pairs), "max": max(pairs), "runs": pairs}


def _bench_size(height: int, width: int, frames: int, checkpoint: str, codes: dict[str, str | None],
                repeats: int, torch_threads: int | None, folder: Path, progress: Callable[[str], None]) -> dict:
    """Every (code, mode) on one clip, ``repeats`` times interleaved; their summaries and the ratios."""
    video, plate = write_clip(folder, frames, height, width)
    base = dict(video=str(video), plate=str(plate), checkpoint=checkpoint, torch_threads=torch_threads)
    runs: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(repeats):
        for code, src in codes.items():
            for mode in VIDEO_MODES:
                output = folder / f"out_{code}_{mode}_{repeat}"
                result = run_probe(dict(base, mode=mode, output=str(output)), src, folder)
                runs.setdefault((code, mode), []).append(result)
                progress(f"[video] {width}x{height} {code} {mode} (run {repeat + 1}/{repeats}): "
                         f"{result['frames_per_s']:.3f} frames/s, peak RSS {result['peak_rss_mib']:.0f} MiB")
                for path in sorted(output.rglob("*"), reverse=True):  # free the disk: only the timing matters
                    path.rmdir() if path.is_dir() else path.unlink()
    ratios = {"refine_vs_crop": _ratios(runs, ("this", "refine"), ("this", "original")),
              "refine_vs_compare": _ratios(runs, ("this", "refine"), ("compare", "refine")),
              "crop_vs_compare": _ratios(runs, ("this", "original"), ("compare", "original")),
              "compare_refine_vs_crop": _ratios(runs, ("compare", "refine"), ("compare", "original"))}
    return {"height": height, "width": width, "frames": frames,
            "configs": {f"{code}/{mode}": _summarize(r) for (code, mode), r in runs.items()},
            "ratios": {k: v for k, v in ratios.items() if v is not None},
            "alpha": _alpha_check(dict(base, mode="refine"), codes.get("compare"), folder, progress)}


def bench_video(frame_sizes: list[tuple[int, int]] | None = None, frames: int = 8, checkpoint: str | None = None,
                compare_src: str | None = None, repeats: int = 1, model_name: str = "quickstart_refine",
                torch_threads: int | None = None, progress: Callable[[str], None] = print) -> dict:
    """Refine vs crop mode on synthetic fixed-camera clips of ``frame_sizes`` (H, W; default 1080 x 1920), end
    to end as ``infer`` runs them, this code and (``compare_src``) another's; see the module docstring.

    Returns ``{"checkpoint", "compare_src", "repeats", "sizes": [{"height", "width", "frames", "configs":
    {"this/refine": {...}, ...}, "ratios", "alpha"}], "per_pixel_vs_first"}``.
    """
    frame_sizes = list(frame_sizes or [(1080, 1920)])
    codes = {"this": None, **({"compare": str(compare_src)} if compare_src else {})}
    with tempfile.TemporaryDirectory(prefix="bgmatting-bench-video-") as tmp:
        folder = Path(tmp)
        weights = str(checkpoint) if checkpoint else str(random_checkpoint(folder / "random.pt", model_name))
        sizes = []
        for height, width in frame_sizes:
            clip_folder = folder / f"{height}x{width}"
            clip_folder.mkdir()
            sizes.append(_bench_size(height, width, frames, weights, codes, repeats, torch_threads, clip_folder,
                                     progress))
    first = sizes[0]["configs"]["this/refine"]
    first_per_pixel = 1.0 / (first["frames_per_s"] * sizes[0]["height"] * sizes[0]["width"])
    per_pixel = [1.0 / (s["configs"]["this/refine"]["frames_per_s"] * s["height"] * s["width"]) / first_per_pixel
                 for s in sizes]
    return {"checkpoint": str(checkpoint) if checkpoint else f"random weights (model={model_name})",
            "compare_src": str(compare_src) if compare_src else None, "repeats": repeats, "sizes": sizes,
            "per_pixel_vs_first": per_pixel}


def _ratio_text(ratio: dict | None) -> str:
    if not ratio:
        return "–"
    return f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"


def video_lines(video: dict | None) -> list[str]:
    """Summary sentences of :func:`bench_video`'s result (none without one)."""
    if not video:
        return []
    lines = []
    for size in video["sizes"]:
        configs, ratios, alpha = size["configs"], size["ratios"], size["alpha"]
        refine, crop = configs["this/refine"], configs["this/original"]
        line = (f"Video {size['width']}x{size['height']} end to end ({size['frames']} frames, {video['repeats']} "
                f"runs): refine mode {refine['frames_per_s']:.3f} frames/s, crop mode {crop['frames_per_s']:.3f}: "
                f"refine/crop {_ratio_text(ratios.get('refine_vs_crop'))}")
        if "refine_vs_compare" in ratios:
            line += (f"; vs {video['compare_src']}: refine {_ratio_text(ratios['refine_vs_compare'])}, crop "
                     f"{_ratio_text(ratios['crop_vs_compare'])}")
        diffs = ", ".join(f"{key[24:]} {value:.1e}" for key, value in alpha.items()
                          if key.startswith("network_max_abs_diff_vs_"))
        lines.append(line + f"; peak RSS {refine['peak_rss_mib']:.0f} MiB (refine); network max |Δα| vs {diffs}.")
    for size, ratio in zip(video["sizes"][1:], video["per_pixel_vs_first"][1:]):
        first = video["sizes"][0]
        lines.append(f"Refine mode time per pixel at {size['width']}x{size['height']}: {ratio:.2f}x that at "
                     f"{first['width']}x{first['height']}.")
    return lines
