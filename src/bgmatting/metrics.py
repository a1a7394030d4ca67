"""Matting metrics, numerically faithful to the Deep Image Matting MATLAB evaluation code.

Reference: ``compute_sad_loss.m``, ``compute_mse_loss.m``, ``compute_gradient_loss.m`` (with
``gaussgradient.m``) and ``compute_connectivity_error.m`` by Ning Xu (Adobe, 2018), the code behind the
Composition-1k numbers and Background Matting's Table 1. METRICS.md gives the line-by-line correspondence,
the units and where popular ports differ.

Conventions of this module:

* ``pred`` and ``gt`` are float arrays H x W in [0, 1] (the MATLAB code takes 0..255 and divides by 255
  inside; for 8-bit mattes ``x / 255`` both give the same numbers).
* ``trimap`` is uint8 H x W with values 0 / 128 / 255, or None. With a trimap only the unknown pixels
  (== 128) count, exactly as in MATLAB; with None every pixel counts.
* Units, as papers report them: ``sad``, ``grad`` and ``conn`` are in thousands (the raw sums / 1000);
  ``mse`` is the raw mean squared error (papers print it x1e3 or x1e2 and say so in the table header).

Video metrics (``dtssd``, ``messddt``) follow the temporal-coherence metrics of Erofeev et al.
(videomatting.com benchmark); dtSSD is normalised as in Robust Video Matting's evaluation scripts. See
their docstrings for the exact scaling.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage

__all__ = [
    "GRADIENT_SIGMA",
    "CONNECTIVITY_STEP",
    "CONNECTIVITY_THETA",
    "sad",
    "mse",
    "false_foreground",
    "grad",
    "conn",
    "gaussian_gradient_kernels",
    "gaussian_gradient",
    "gaussian_gradient_magnitude",
    "connectivity_levels",
    "foreground_mse",
    "foreground_sad",
    "dtssd",
    "messddt",
    "ground_truth_flow",
]

GRADIENT_SIGMA = 1.4  # compute_gradient_loss.m: gaussgradient(pred, 1.4)
GRADIENT_EPSILON = 1e-2  # gaussgradient.m: truncation level that sets the kernel size (9 x 9 at sigma 1.4)
CONNECTIVITY_STEP = 0.1  # benchmark call: compute_connectivity_error(pred, target, trimap, 0.1)
CONNECTIVITY_THETA = 0.15  # compute_connectivity_error.m: phi ignores differences below 0.15

_RANGE_TOLERANCE = 1e-6


# ----------------------------------------------------------------------------------------- input checks
def _matte(x: np.ndarray, name: str) -> np.ndarray:
    """Validate a matte: H x W (or H x W x 1), finite, in [0, 1] (1e-6 slack); returns float64 H x W."""
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected an H x W matte, got shape {a.shape}")
    if a.dtype == np.uint8:
        raise ValueError(f"{name}: got uint8; metrics take float mattes in [0, 1] (divide 8-bit mattes by 255)")
    a = a.astype(np.float64, copy=False)
    if a.size == 0:
        raise ValueError(f"{name}: empty matte")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if lo < -_RANGE_TOLERANCE or hi > 1.0 + _RANGE_TOLERANCE:
        raise ValueError(f"{name}: values outside [0, 1] (min {lo:.6g}, max {hi:.6g})")
    if lo < 0.0 or hi > 1.0:
        a = np.clip(a, 0.0, 1.0)
    return a


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = _matte(pred, "pred")
    g = _matte(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} differs from gt shape {g.shape}")
    return p, g


def _unknown_mask(trimap: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """Boolean mask of trimap == 128, or None for 'every pixel'. Rejects values other than 0/128/255."""
    if trimap is None:
        return None
    t = np.asarray(trimap)
    if t.ndim == 3 and t.shape[2] == 1:
        t = t[:, :, 0]
    if t.shape != shape:
        raise ValueError(f"trimap shape {t.shape} differs from matte shape {shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"trimap: expected uint8 with values 0/128/255, got dtype {t.dtype}")
    bad = (t != 0) & (t != 128) & (t != 255)
    if bad.any():
        values = np.unique(t[bad])[:5].tolist()
        raise ValueError(f"trimap: values other than 0/128/255 present (e.g. {values}); snap it first")
    return t == 128


def _region_sum(values: np.ndarray, mask: np.ndarray | None) -> float:
    return float(values.sum() if mask is None else values[mask].sum())


# ----------------------------------------------------------------------------------------- SAD / MSE
def sad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Sum of absolute differences over the unknown region, in thousands (compute_sad_loss.m).

    ``sum(|pred - gt|) / 1000`` over trimap == 128 (every pixel when ``trimap`` is None).
    pred, gt: float H x W in [0, 1]; trimap: uint8 H x W (0/128/255) or None.
    """
    p, g = _pair(pred, gt)
    mask = _unknown_mask(trimap, p.shape)
    return _region_sum(np.abs(p - g), mask) / 1000.0


def mse(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Mean squared error over the unknown region, raw (compute_mse_loss.m).

    ``sum((pred - gt)^2) / #unknown`` over trimap == 128 (the mean over all pixels when ``trimap`` is None).
    No scaling: papers print it x1e3 (or x1e2) and say so. NaN when the region is empty (MATLAB's 0/0).
    """
    p, g = _pair(pred, gt)
    mask = _unknown_mask(trimap, p.shape)
    count = p.size if mask is None else int(mask.sum())
    if count == 0:
        return math.nan
    return _region_sum((p - g) ** 2, mask) / count


#: Levels of :func:`false_foreground`: truth below ``BACKGROUND_LEVEL`` is background; a prediction above
#: ``FOREGROUND_LEVEL`` there is false foreground.
BACKGROUND_LEVEL = 0.1
FOREGROUND_LEVEL = 0.5


def false_foreground(pred: np.ndarray, gt: np.ndarray, background_level: float = BACKGROUND_LEVEL,
                     foreground_level: float = FOREGROUND_LEVEL) -> float:
    """Share of the background pixels (gt < ``background_level``) that the prediction calls foreground
    (pred > ``foreground_level``): ghosts of misaligned scene edges, shadows taken for the subject. In [0, 1];
    NaN when there is no background pixel. pred, gt: float H x W in [0, 1]."""
    p, g = _pair(pred, gt)
    background = g < background_level
    count = int(background.sum())
    if count == 0:
        return math.nan
    return float(np.count_nonzero(p[background] > foreground_level)) / count


# ----------------------------------------------------------------------------------------- Grad
def gaussian_gradient_kernels(sigma: float = GRADIENT_SIGMA,
                              epsilon: float = GRADIENT_EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """The separable factors of gaussgradient.m's 2-D kernel ``hx``.

    MATLAB builds ``hx(i, j) = gauss(i - c) * dgauss(j - c)`` on a ``2 * halfsize + 1`` grid with
    ``halfsize = ceil(sigma * sqrt(-2 * log(sqrt(2*pi) * sigma * epsilon)))`` (9 x 9 for sigma 1.4), then
    divides by its Frobenius norm. Returns ``(smooth, derivative)``, each 1-D and of unit L2 norm, so that
    ``hx == np.outer(smooth, derivative)`` exactly (the norm of an outer product is the product of norms).
    """
    halfsize = math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * epsilon)))
    u = np.arange(-halfsize, halfsize + 1, dtype=np.float64)
    gauss = np.exp(-(u**2) / (2.0 * sigma**2)) / (sigma * math.sqrt(2.0 * math.pi))
    dgauss = -u * gauss / sigma**2
    return gauss / np.linalg.norm(gauss), dgauss / np.linalg.norm(dgauss)


def gaussian_gradient(alpha: np.ndarray, sigma: float = GRADIENT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """gaussgradient.m: ``(gx, gy) = (IM conv hx, IM conv hy)`` with ``hy = hx'`` and replicated borders.

    ``imfilter(IM, h, 'replicate', 'conv')`` is a true convolution; OpenCV correlates, so the separable
    factors are flipped. alpha: float H x W; returns two float64 H x W arrays (x = along columns).
    """
    a = np.ascontiguousarray(alpha, dtype=np.float64)
    smooth, derivative = gaussian_gradient_kernels(sigma)
    smooth_c, derivative_c = smooth[::-1].copy(), derivative[::-1].copy()
    # hx(i, j) = smooth(i) * derivative(j): derivative along x (columns), smoothing along y (rows).
    gx = cv2.sepFilter2D(a, cv2.CV_64F, derivative_c, smooth_c, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(a, cv2.CV_64F, smooth_c, derivative_c, borderType=cv2.BORDER_REPLICATE)
    return gx, gy


def gaussian_gradient_magnitude(alpha: np.ndarray, sigma: float = GRADIENT_SIGMA) -> np.ndarray:
    """|grad alpha| as in compute_gradient_loss.m: ``mat2gray``, then gaussgradient, then the magnitude.

    ``mat2gray`` rescales the matte to its own [min, max] (a constant matte is left as is: its gradient is 0).
    alpha: float H x W; returns float64 H x W.
    """
    a = np.asarray(alpha, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi > lo and (lo != 0.0 or hi != 1.0):  # mat2gray is the identity on a matte spanning [0, 1]
        a = (a - lo) / (hi - lo)
    gx, gy = gaussian_gradient(a, sigma)
    gx *= gx
    gy *= gy
    gx += gy
    return np.sqrt(gx, out=gx)


def grad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Gradient error in thousands (compute_gradient_loss.m, sigma 1.4, 9 x 9 kernel).

    ``sum((|grad pred| - |grad gt|)^2) / 1000`` over trimap == 128 (every pixel when None). The MATLAB
    function returns the raw sum; the Deep Image Matting tables (and every port) divide it by 1000.
    Both mattes are min-max normalised first (``mat2gray``), as in MATLAB.
    """
    p, g = _pair(pred, gt)
    mask = _unknown_mask(trimap, p.shape)
    # MATLAB casts the magnitudes to single before differencing.
    pa = gaussian_gradient_magnitude(p).astype(np.float32).astype(np.float64)
    ga = gaussian_gradient_magnitude(g).astype(np.float32).astype(np.float64)
    return _region_sum((pa - ga) ** 2, mask) / 1000.0


# ----------------------------------------------------------------------------------------- Conn
def _largest_component_first_in_scan(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of a boolean mask (all False when the mask is empty); of equally large
    ones, the component met first in row-major scan order (the order ``ndimage.label`` numbers them)."""
    labels, count = ndimage.label(mask)  # default structure = 4-connectivity
    if count == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))  # argmax: the first of the largest


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def connectivity_levels(pred: np.ndarray, gt: np.ndarray, step: float = CONNECTIVITY_STEP) -> np.ndarray:
    """The ``l_map`` of compute_connectivity_error.m: per pixel, the last threshold at which it was still
    in the largest 4-connected component of ``(pred >= t) & (gt >= t)``, t = step, 2*step, ..., 1; 1 for
    pixels that never drop out. pred, gt: float64 H x W in [0, 1]; returns float64 H x W.

    An empty intersection has no component (every remaining pixel drops out); the MATLAB code errors there.
    Work after the first threshold is cropped to the bounding box of the first intersection, which holds
    every later one, and done on the transposed crop so that scan order is MATLAB's column-major order.
    """
    n_steps = int(round(1.0 / step))
    thresholds = np.arange(n_steps + 1) / n_steps  # 0, 0.1, ..., 1 (correctly rounded, see METRICS.md)
    level = np.full(pred.shape, thresholds[0])  # pixels outside the first intersection drop out at once
    box = _bounding_box((pred >= thresholds[1]) & (gt >= thresholds[1]))
    if box is None:
        return level
    p_t, g_t = np.ascontiguousarray(pred[box].T), np.ascontiguousarray(gt[box].T)
    # A pixel that drops out at step i gets thresholds[i - 1]: the number of steps it survived indexes it.
    alive = np.ones(p_t.shape, bool)
    survived = np.zeros(p_t.shape, np.uint8)
    for i in range(1, n_steps + 1):
        intersection = p_t >= thresholds[i]
        intersection &= g_t >= thresholds[i]
        alive &= _largest_component_first_in_scan(intersection)
        if not alive.any():
            break
        survived += alive
    level[box] = thresholds[survived].T
    return level


def conn(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None,
         step: float = CONNECTIVITY_STEP) -> float:
    """Connectivity error in thousands (compute_connectivity_error.m with step 0.1).

    ``phi(x) = 1 - d * [d >= 0.15]`` with ``d = x - l_map`` (see :func:`connectivity_levels`);
    returns ``sum(|phi(pred) - phi(gt)|) / 1000`` over trimap == 128 (every pixel when None).
    The MATLAB function returns the raw sum; the tables divide by 1000.
    """
    p, g = _pair(pred, gt)
    mask = _unknown_mask(trimap, p.shape)
    level = connectivity_levels(p, g, step)
    pd = p - level
    gd = g - level
    p_phi = 1.0 - pd * (pd >= CONNECTIVITY_THETA)
    g_phi = 1.0 - gd * (gd >= CONNECTIVITY_THETA)
    return _region_sum(np.abs(p_phi - g_phi), mask) / 1000.0


# ----------------------------------------------------------------------------------------- foreground
def _foreground_region(pred_fg: np.ndarray, gt_fg: np.ndarray, gt_alpha: np.ndarray,
                       trimap: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pf = np.asarray(pred_fg, dtype=np.float64)
    gf = np.asarray(gt_fg, dtype=np.float64)
    if pf.ndim != 3 or pf.shape != gf.shape:
        raise ValueError(f"foregrounds must be H x W x C of the same shape, got {pf.shape} and {gf.shape}")
    a = _matte(gt_alpha, "gt_alpha")
    if a.shape != pf.shape[:2]:
        raise ValueError(f"gt_alpha shape {a.shape} differs from foreground shape {pf.shape[:2]}")
    for name, f in (("pred_fg", pf), ("gt_fg", gf)):
        if not np.all(np.isfinite(f)):
            raise ValueError(f"{name}: contains NaN or infinite values")
    region = a > 0
    unknown = _unknown_mask(trimap, a.shape)
    if unknown is not None:
        region &= unknown
    return pf, gf, region


def foreground_mse(pred_fg: np.ndarray, gt_fg: np.ndarray, gt_alpha: np.ndarray,
                   trimap: np.ndarray | None = None) -> float:
    """MSE of the foreground colour where the ground-truth alpha > 0 (raw; papers print x1e3).

    Mean over the region's pixels and channels of ``(pred_fg - gt_fg)^2``; the region is ``gt_alpha > 0``,
    intersected with trimap == 128 when a trimap is given. pred_fg, gt_fg: float H x W x 3 in [0, 1].
    NaN when the region is empty.
    """
    pf, gf, region = _foreground_region(pred_fg, gt_fg, gt_alpha, trimap)
    count = int(region.sum())
    if count == 0:
        return math.nan
    return float(((pf[region] - gf[region]) ** 2).mean())


def foreground_sad(pred_fg: np.ndarray, gt_fg: np.ndarray, gt_alpha: np.ndarray,
                   trimap: np.ndarray | None = None) -> float:
    """Sum of absolute foreground-colour differences where gt alpha > 0, in thousands.

    ``sum over region pixels and channels of |pred_fg - gt_fg| / 1000``; region as in :func:`foreground_mse`.
    """
    pf, gf, region = _foreground_region(pred_fg, gt_fg, gt_alpha, trimap)
    return float(np.abs(pf[region] - gf[region]).sum()) / 1000.0


# ----------------------------------------------------------------------------------------- video
def _sequence(seq: Sequence[np.ndarray] | np.ndarray, name: str) -> np.ndarray:
    frames = [_matte(f, f"{name}[{i}]") for i, f in enumerate(seq)]
    if not frames:
        raise ValueError(f"{name}: empty sequence")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"{name}: frames of different shapes {sorted(shapes)}")
    return np.stack(frames)


def _sequence_pair(pred_seq, gt_seq, trimap_seq) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    p = _sequence(pred_seq, "pred_seq")
    g = _sequence(gt_seq, "gt_seq")
    if p.shape != g.shape:
        raise ValueError(f"pred_seq shape {p.shape} differs from gt_seq shape {g.shape}")
    if trimap_seq is None:
        return p, g, None
    if len(trimap_seq) != len(p):
        raise ValueError(f"trimap_seq has {len(trimap_seq)} frames, the mattes {len(p)}")
    masks = np.stack([_unknown_mask(t, p.shape[1:]) for t in trimap_seq])
    return p, g, masks


def dtssd(pred_seq: Sequence[np.ndarray] | np.ndarray, gt_seq: Sequence[np.ndarray] | np.ndarray,
          trimap_seq: Sequence[np.ndarray] | None = None, *, scale: float = 100.0) -> float:
    """Temporal gradient error dtSSD (Erofeev et al. 2015), scaled as in RVM's evaluation (x100).

    For each consecutive pair ``t-1, t``: ``sqrt(mean_p (dpred(p) - dgt(p))^2)`` with ``dx = x_t - x_{t-1}``;
    the result is the mean over the T - 1 pairs times ``scale``. The mean runs over every pixel, or over the
    unknown pixels of frame t when trimaps are given. Sequences: T x H x W floats in [0, 1] (T >= 2).
    (RVM's spreadsheet also averages a 0 for the first frame, i.e. multiplies this by (T - 1) / T.)
    """
    p, g, masks = _sequence_pair(pred_seq, gt_seq, trimap_seq)
    if len(p) < 2:
        raise ValueError("dtssd needs at least 2 frames")
    values = []
    for t in range(1, len(p)):
        d = (p[t] - p[t - 1]) - (g[t] - g[t - 1])
        region = None if masks is None else masks[t]
        count = d.size if region is None else int(region.sum())
        if count == 0:
            continue
        values.append(math.sqrt(_region_sum(d * d, region) / count))
    return float(np.mean(values)) * scale if values else math.nan


def ground_truth_flow(gt_prev: np.ndarray, gt_next: np.ndarray) -> np.ndarray:
    """Dense optical flow H x W x 2 (dx, dy) from ground-truth alpha ``gt_prev`` to ``gt_next``.

    Farneback on the 8-bit mattes with the parameters of the DVM / VideoMatting evaluation code
    (pyramid 0.5, 5 levels, window 10, 2 iterations, poly_n 7, poly_sigma 1.5, Gaussian window):
    ``gt_prev(y, x) ~ gt_next(y + dy, x + dx)``.
    """
    a = np.round(np.clip(gt_prev, 0, 1) * 255).astype(np.uint8)
    b = np.round(np.clip(gt_next, 0, 1) * 255).astype(np.uint8)
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 5, 10, 2, 7, 1.5, cv2.OPTFLOW_FARNEBACK_GAUSSIAN)


def messddt(pred_seq: Sequence[np.ndarray] | np.ndarray, gt_seq: Sequence[np.ndarray] | np.ndarray,
            trimap_seq: Sequence[np.ndarray] | None = None, *, flows: Sequence[np.ndarray] | None = None,
            scale: float = 1000.0) -> float:
    """Motion-aware temporal error MESSDdt (Erofeev et al. 2015).

    With the error ``E_t = pred_t - gt_t`` and the ground truth's motion ``v_t`` from frame t to t+1, each pair
    contributes ``mean_p |E_t(p)^2 m_t(p) - E_{t+1}(p + v_t(p))^2 m_{t+1}(p + v_t(p))|`` where ``m`` is the
    region (every pixel, or trimap == 128 when trimaps are given; the mean divides by the count of ``m_t``).
    ``v_t`` is rounded to whole pixels and the target clamped inside the frame, as in the DVM code.
    ``flows``: T - 1 arrays H x W x 2 (dx, dy); computed with :func:`ground_truth_flow` when None.
    Returns the mean over pairs times ``scale`` (1000, the convention for squared-error metrics; there is no
    single convention in the literature, see METRICS.md).
    """
    p, g, masks = _sequence_pair(pred_seq, gt_seq, trimap_seq)
    if len(p) < 2:
        raise ValueError("messddt needs at least 2 frames")
    if flows is not None and len(flows) != len(p) - 1:
        raise ValueError(f"messddt: expected {len(p) - 1} flows for {len(p)} frames, got {len(flows)}")
    h, w = p.shape[1:]
    yy, xx = np.mgrid[0:h, 0:w]
    error_sq = (p - g) ** 2
    values = []
    for t in range(len(p) - 1):
        flow = ground_truth_flow(g[t], g[t + 1]) if flows is None else np.asarray(flows[t], dtype=np.float64)
        if flow.shape != (h, w, 2):
            raise ValueError(f"messddt: flow {t} has shape {flow.shape}, expected {(h, w, 2)}")
        ty = np.clip(yy + np.rint(flow[..., 1]).astype(np.int64), 0, h - 1)
        tx = np.clip(xx + np.rint(flow[..., 0]).astype(np.int64), 0, w - 1)
        now = error_sq[t]
        warped = error_sq[t + 1][ty, tx]
        if masks is not None:
            now = now * masks[t]
            warped = warped * masks[t + 1][ty, tx]
            count = int(masks[t].sum())
        else:
            count = h * w
        if count == 0:
            continue
        values.append(float(np.abs(now - warped).sum()) / count)
    return float(np.mean(values)) * scale if values else math.nan
