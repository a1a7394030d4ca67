"""Samples/s of the supervised data pipeline alone (Adobe-style composites at 512, no network).

The pipeline is the training one: :class:`bgmatting.data.AdobeCompositeDataset` reading foreground,
alpha and background files and running :class:`bgmatting.data.AdobeAugment` (resize, crop around the
unknown region, B' perturbation, soft segmentation, motion cues) inside a DataLoader. The files are a
small Adobe-like set written from scikit-image photos: foregrounds 1080 x 810 PNG with soft alpha,
backgrounds 640 x 480 JPEG (COCO-like sizes).
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data as skdata

from bgmatting.data import AdobeAugment, AdobeCompositeDataset
from bgmatting.data.batch_augment import BackgroundPerturbation
from bgmatting.io import write_alpha, write_image

FOREGROUND_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
BACKGROUND_PHOTOS = ("coffee", "rocket", "chelsea", "astronaut", "hubble_deep_field", "immunohistochemistry")


def _photo(name: str, height: int, width: int) -> np.ndarray:
    rgb = getattr(skdata, name)()
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0


def _portrait_alpha(height: int, width: int, seed: int) -> np.ndarray:
    """H x W float32 alpha: a head-and-shoulders silhouette with a soft, strand-like border."""
    rng = np.random.default_rng(seed)
    alpha = np.zeros((height, width), np.float32)
    cv2.ellipse(alpha, (width // 2, int(height * 0.33)), (int(width * 0.2), int(height * 0.2)), 0, 0, 360, 1.0, -1)
    cv2.ellipse(alpha, (width // 2, height), (int(width * 0.42), int(height * 0.45)), 0, 180, 360, 1.0, -1)
    for _ in range(80):
        angle = rng.uniform(np.pi, 2 * np.pi)
        x0, y0 = width / 2 + 0.2 * width * np.cos(angle), height * 0.33 + 0.2 * height * np.sin(angle)
        x1, y1 = x0 + 40 * np.cos(angle), y0 + 40 * np.sin(angle)
        cv2.line(alpha, (int(x0), int(y0)), (int(x1), int(y1)), float(rng.uniform(0.3, 0.9)), 1, cv2.LINE_AA)
    return np.clip(cv2.GaussianBlur(alpha, (5, 5), 1.5), 0.0, 1.0)


def write_adobe_like_folder(root: Path, fg_size: tuple[int, int] = (1080, 810),
                            bg_size: tuple[int, int] = (480, 640)) -> tuple[list[Path], list[Path], list[Path]]:
    """Write fg/ (PNG), alpha/ (PNG), bg/ (JPEG) under ``root``; returns (fg paths, alpha paths, bg paths)."""
    fg_paths, alpha_paths, bg_paths = [], [], []
    for folder in ("fg", "alpha", "bg"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(FOREGROUND_PHOTOS):
        fg_path, alpha_path = root / "fg" / f"{name}.png", root / "alpha" / f"{name}.png"
        write_image(fg_path, _photo(name, *fg_size))
        write_alpha(alpha_path, _portrait_alpha(*fg_size, seed=index))
        fg_paths.append(fg_path)
        alpha_paths.append(alpha_path)
    for name in BACKGROUND_PHOTOS:
        image = getattr(skdata, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        bg_path = root / "bg" / f"{name}.jpg"
        write_image(bg_path, cv2.resize(image[..., :3], (bg_size[1], bg_size[0]), interpolation=cv2.INTER_AREA))
        bg_paths.append(bg_path)
    return fg_paths, alpha_paths, bg_paths


# Worker processes start with "forkserver": a worker *forked* from a process that has already used OpenCV's
# thread pool hangs in cv2.setNumThreads (called by the dataset in each worker), and this benchmark process
# uses OpenCV before the loaders start. Start-up is timed apart, so the start method does not change samples/s.
WORKER_START_METHOD = "forkserver"


PREFETCH_FACTOR = 2


def loader_samples_per_second(dataset: torch.utils.data.Dataset, workers: int, samples: int) -> dict:
    """Samples/s of a batch-1 DataLoader over ``samples`` samples in steady state.

    Start-up (until the first sample) is timed apart; the samples the workers prefetched meanwhile
    (``PREFETCH_FACTOR`` per worker) are drawn untimed, so they do not inflate the rate.
    """
    context = WORKER_START_METHOD if workers > 0 else None
    options = dict(multiprocessing_context=context, prefetch_factor=PREFETCH_FACTOR) if workers > 0 else {}
    order = torch.Generator().manual_seed(0)  # shuffled, so every foreground and background takes part
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=True, generator=order, num_workers=workers,
                                         **options)
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    startup = time.perf_counter() - start
    for _ in range(PREFETCH_FACTOR * workers):
        next(iterator)
    start = time.perf_counter()
    count = 0
    for _ in range(samples):
        try:
            next(iterator)
        except StopIteration:
            break
        count += 1
    seconds = time.perf_counter() - start
    del iterator
    return {"workers": workers, "samples": count, "seconds": seconds, "startup_s": startup,
            "samples_per_s": count / seconds if seconds > 0 else float("nan")}


def batch_perturbation_seconds(size: int, batch: int, device: torch.device, repeats: int = 3) -> float:
    """Median seconds of the device-side BGMv2 background perturbation on one batch at ``size``."""
    generator = torch.Generator(device=device).manual_seed(0)
    tensors = {
        "image": torch.rand(batch, 3, size, size, device=device),
        "background": torch.rand(batch, 3, size, size, device=device),
        "background_clean": torch.rand(batch, 3, size, size, device=device),
        "alpha": torch.rand(batch, 1, size, size, device=device),
        "foreground": torch.rand(batch, 3, size, size, device=device),
        "motion": torch.rand(batch, 4, size, size, device=device),
        "segmentation": torch.rand(batch, 1, size, size, device=device),
    }
    perturb = BackgroundPerturbation()
    perturb(tensors, generator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        perturb(tensors, generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_data(size: int = 512, workers: tuple[int, ...] = (0, 1, 2), samples: int = 16,
               device: torch.device = torch.device("cpu"), progress: Callable[[str], None] = print) -> dict:
    """Samples/s of the Adobe-style pipeline at ``size`` per DataLoader worker count, plus the batch perturbation."""
    result: dict = {"size": size, "samples": samples, "loaders": []}
    with tempfile.TemporaryDirectory(prefix="bgmatting-bench-data-") as folder:
        fgs, alphas, bgs = write_adobe_like_folder(Path(folder))
        needed = samples + 1 + PREFETCH_FACTOR * max(workers, default=0)
        per_foreground = -(-needed // len(fgs))  # ceil
        dataset = AdobeCompositeDataset(fgs, alphas, bgs, samples_per_fg=per_foreground,
                                        augment=AdobeAugment(output_size=size))
        for count in workers:
            entry = loader_samples_per_second(dataset, count, samples)
            result["loaders"].append(entry)
            progress(f"[data] {size}x{size}, {count} workers: {entry['samples_per_s']:.2f} samples/s "
                     f"(startup {entry['startup_s']:.2f} s)")
    seconds = batch_perturbation_seconds(size, 4, device)
    result["batch_perturbation"] = {"batch": 4, "median_s": seconds, "samples_per_s": 4 / seconds}
    progress(f"[data] BGMv2 batch perturbation (batch 4, {size}^2, {device}): {seconds * 1e3:.1f} ms")
    return result
