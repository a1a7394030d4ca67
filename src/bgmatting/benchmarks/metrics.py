"""Time of the matting metrics (SAD, MSE, Grad, Conn) on one full-HD prediction / ground-truth pair."""
from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

from bgmatting import metrics as matting_metrics

METRIC_FUNCTIONS = {"sad": matting_metrics.sad, "mse": matting_metrics.mse,
                    "grad": matting_metrics.grad, "conn": matting_metrics.conn}


def make_alpha_pair(height: int = 1080, width: int = 1920, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, ground truth, trimap): float32 H x W mattes in [0, 1] and a uint8 0/128/255 trimap.

    The ground truth is a soft-edged ellipse with thin strands across its border (hair-like detail); the
    prediction is it blurred, with noise and a few false-positive blobs, as a plausible network output.
    The trimap marks a 20-px band around the ground truth's edge as unknown.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.sqrt(((x - width / 2) / (0.22 * width)) ** 2 + ((y - height / 2) / (0.42 * height)) ** 2)
    gt = 1.0 / (1.0 + np.exp(-np.clip((1.0 - radius) * 60.0, -60.0, 60.0)))
    strands = np.zeros((height, width), np.float32)
    for _ in range(60):
        angle = rng.uniform(0, 2 * np.pi)
        start = (width / 2 + 0.2 * width * np.cos(angle), height / 2 + 0.4 * height * np.sin(angle))
        end = (start[0] + 60 * np.cos(angle), start[1] + 60 * np.sin(angle))
        cv2.line(strands, tuple(map(int, start)), tuple(map(int, end)), float(rng.uniform(0.3, 0.9)), 1, cv2.LINE_AA)
    gt = np.clip(np.maximum(gt, strands), 0.0, 1.0).astype(np.float32)
    pred = cv2.GaussianBlur(gt, (7, 7), 2.0) + rng.normal(0.0, 0.02, gt.shape).astype(np.float32)
    for _ in range(5):
        cv2.circle(pred, (int(rng.integers(width)), int(rng.integers(height))), int(rng.integers(5, 30)), 0.6, -1)
    pred = np.clip(pred, 0.0, 1.0).astype(np.float32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21))
    certain_fg = cv2.erode((gt > 0.99).astype(np.uint8), kernel)
    maybe_fg = cv2.dilate((gt > 0.01).astype(np.uint8), kernel)
    trimap = np.where(certain_fg > 0, 255, np.where(maybe_fg > 0, 128, 0)).astype(np.uint8)
    return pred, gt, trimap


def bench_metrics(height: int = 1080, width: int = 1920, repeats: int = 3,
                  progress: Callable[[str], None] = print) -> dict:
    """Median and best seconds of each metric on one pair, with the trimap (evaluation protocol) and without."""
    pred, gt, trimap = make_alpha_pair(height, width)
    results: dict = {"height": height, "width": width, "unknown_fraction": float((trimap == 128).mean()), "metrics": {}}
    for name, function in METRIC_FUNCTIONS.items():
        for label, tri in (("trimap", trimap), ("full_frame", None)):
            times, value = [], None
            for _ in range(repeats):
                start = time.perf_counter()
                value = function(pred, gt, tri)
                times.append(time.perf_counter() - start)
            entry = {"median_s": float(np.median(times)), "min_s": min(times), "value": float(value)}
            results["metrics"][f"{name}/{label}"] = entry
            progress(f"[metrics] {name} ({label}) {width}x{height}: {entry['median_s'] * 1e3:.1f} ms")
    return results
