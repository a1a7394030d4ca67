"""Align a captured background B' to an image I with a homography (hand-held captures).

The public code's recipe: AKAZE features on both images, brute-force matching, keep the best 15 % of the
matches by descriptor distance, RANSAC homography, warp B' into I's frame, and fill the pixels the warped
B' does not cover from I (except under the subject, where the unaligned B' is used).

Departures and additions, each optional or documented:
* Features are detected on copies downscaled to ``max_side`` (default 960 px); the homography is mapped back
  to full resolution exactly (pixel-centre convention of ``cv2.resize``). ``max_side=None`` detects at full size.
* Matching uses the Hamming norm (AKAZE descriptors are binary; the public code used the L2 brute-force matcher).
* With ``subject_mask`` the image's features on the (dilated) subject are ignored: the subject is not in B'.
* Degenerate homographies (non-finite, folded, extreme scale or perspective, little overlap) and too few
  matches or inliers fall back to the unaligned background, resized to I's size, with a warning.
* ``photometric=True``: per-channel gain/bias of B' fitted to I outside the subject (the MATLAB version's
  moment matching, on a robustly selected pixel set when no subject mask is given).
* ``ecc_refine=True``: the RANSAC homography refined with OpenCV's ECC (``MOTION_HOMOGRAPHY``) on a
  downscaled gray pyramid; the refinement is kept only when it raises the correlation.

Homographies in the report map background pixel coordinates (x, y) to image pixel coordinates.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from bgmatting.io import to_float
from bgmatting.preprocess.motion import to_gray

FILL_MODES = ("image", "unaligned", "replicate", "zeros")


class AlignmentWarning(UserWarning):
    """Alignment fell back to the unaligned background (the message says why)."""


@dataclass
class AlignmentReport:
    """What ``align_background`` did. Pixel quantities are in full-resolution image pixels."""

    keypoints_image: int = 0
    keypoints_background: int = 0
    matches: int = 0  # all brute-force matches
    kept_matches: int = 0  # the best ``match_fraction`` of them
    inliers: int = 0  # RANSAC inliers among the kept matches
    refit_matches: int = 0  # matches (of all) consistent with RANSAC's homography, used in the final fit
    akaze_threshold: float = 0.0  # detector threshold used (lowered for low-texture images)
    reprojection_error: float = float("nan")  # RMS over the fitted matches, px, of the final homography
    homography: np.ndarray = field(default_factory=lambda: np.eye(3))  # 3x3, background px -> image px
    fell_back: bool = False
    reason: str | None = None  # why it fell back
    coverage: float = 0.0  # fraction of image pixels covered by the warped background
    valid_mask: np.ndarray | None = field(default=None, repr=False)  # H x W bool, warped background defined
    photometric_gain: np.ndarray | None = None  # (3,) per channel, applied as gain * B + bias
    photometric_bias: np.ndarray | None = None  # (3,) in [0, 1] units
    ecc_applied: bool = False
    ecc_status: str | None = None  # "improved", "rejected: ...", "failed: ..."
    ecc_correlation: tuple[float, float] | None = None  # (before, after) at the finest ECC level
    detection_scale: tuple[float, float] = (1.0, 1.0)  # (image, background) downscale factors
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step and "total"

    def summary(self) -> dict:
        """JSON-ready dict of the report without the mask (e.g. for a manifest or a log line)."""
        def plain(value):
            if isinstance(value, np.ndarray):
                return value.tolist()
            if isinstance(value, (np.floating, np.integer)):
                return value.item()
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return {k: plain(v) for k, v in self.__dict__.items() if k != "valid_mask"}


@dataclass(frozen=True)
class AlignOptions:
    """Options of :func:`align_background` (defaults: the public code's recipe plus the additions above).

    match_fraction: share of matches kept, best first (public code: 0.15).
    ransac_threshold: RANSAC inlier distance in full-resolution image px (OpenCV's default 3).
    min_matches / min_inliers / min_inlier_ratio: below these (kept matches, RANSAC inliers, inliers per kept
      match) the alignment falls back.
    max_side: features are detected on copies whose longest side is at most this (None: full size).
    akaze_threshold / min_keypoints: AKAZE's detector threshold (OpenCV's default 0.001); when either image
      gets fewer than ``min_keypoints``, both are detected again with a 10x lower threshold.
    refit_all_matches / refit_threshold: after RANSAC on the kept matches, refit the homography by least
      squares on *all* matches within ``refit_threshold`` full-resolution px of it (twice): more, better
      spread correspondences (corner error on 1920x1080 pairs measured 0.2 instead of 0.5 px).
    mask_features: ignore the image's features on the subject (needs a subject mask).
    photometric: correct B' per channel with a gain and bias fitted to I outside the subject.
    ecc_refine: refine the homography with ECC on a gray pyramid whose finest level has ``ecc_max_side``
      (``ecc_levels`` levels, ``ecc_iterations`` per level).
    fill: pixels outside the warped B': "image" (the public code: taken from I, and from the unaligned B'
      under the subject), "unaligned" (the unaligned B'), "replicate" (B's border), "zeros".
    max_scale / max_perspective / min_coverage: degeneracy limits on the warped B' (linear scale change
      against I's size, ratio of the projective divisor over B's corners, share of I covered).
    subject_margin: px the subject mask is dilated by before it masks features and photometric pixels
      (default 1 % of I's longest side, at least 3).
    """

    match_fraction: float = 0.15
    ransac_threshold: float = 3.0
    min_matches: int = 10
    min_inliers: int = 10
    min_inlier_ratio: float = 0.2
    max_side: int | None = 960
    akaze_threshold: float = 0.001
    min_keypoints: int = 300
    refit_all_matches: bool = True
    refit_threshold: float = 1.0
    mask_features: bool = True
    photometric: bool = False
    ecc_refine: bool = False
    ecc_max_side: int = 960
    ecc_levels: int = 2
    ecc_iterations: int = 30
    fill: str = "image"
    max_scale: float = 3.0
    max_perspective: float = 2.0
    min_coverage: float = 0.25
    subject_margin: int | None = None

    def __post_init__(self) -> None:
        if self.fill not in FILL_MODES:
            raise ValueError(f"unknown fill {self.fill!r}; choose one of {', '.join(FILL_MODES)}")
        if not 0.0 < self.match_fraction <= 1.0:
            raise ValueError(f"match_fraction must be in (0, 1], got {self.match_fraction}")


class _FallBack(Exception):
    """Raised by an alignment step that cannot go on; the message says why."""


@dataclass
class _Pair:
    """The image and background of one alignment, as float32 [0, 1], with the subject's masks in I's frame."""

    image: np.ndarray  # H x W x 3
    background: np.ndarray  # h x w x 3
    dtype: np.dtype  # the background's input dtype (the result's)
    subject: np.ndarray | None  # H x W bool
    outside_subject: np.ndarray | None  # H x W bool: outside the dilated subject

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    def unaligned(self) -> np.ndarray:
        return _resize(self.background, self.shape)


@dataclass
class _Features:
    """AKAZE keypoints and descriptors of both images, detected on gray copies scaled by ``*_to_small``."""

    image_gray: np.ndarray
    background_gray: np.ndarray
    image_to_small: np.ndarray
    background_to_small: np.ndarray
    kp_image: tuple
    desc_image: np.ndarray | None
    kp_background: tuple
    desc_background: np.ndarray | None


def align_background(
    image: np.ndarray,
    background: np.ndarray,
    *,
    subject_mask: np.ndarray | None = None,
    options: AlignOptions | None = None,
    **overrides,
) -> tuple[np.ndarray, AlignmentReport]:
    """Warp ``background`` into ``image``'s frame.

    image: H x W x 3 RGB, uint8 or float in [0, 1]. background: h x w x 3 RGB (any size), same kinds.
    subject_mask: optional H x W (bool, or numbers where > 0.5 means subject), e.g. a segmentation.
    options: an :class:`AlignOptions`; ``overrides`` are its fields by name (``align_background(I, B,
    photometric=True)``), applied on top of ``options``.

    Returns (aligned background H x W x 3 with background's dtype and range, AlignmentReport).
    Never raises on a failed alignment: it warns (AlignmentWarning) and returns the unaligned background.
    """
    options = replace(options or AlignOptions(), **overrides)
    t_start = time.perf_counter()
    pair = _prepare_pair(image, background, subject_mask, options)
    report = AlignmentReport()
    try:
        homography = _estimate_homography(pair, options, report)
    except _FallBack as reason:
        return _fall_back(pair, report, str(reason), t_start)
    aligned = _warp_and_fill(pair, homography, options, report)
    report.timings["total"] = time.perf_counter() - t_start
    return _from_float(aligned, pair.dtype), report


def _prepare_pair(image: np.ndarray, background: np.ndarray, subject_mask: np.ndarray | None,
                  options: AlignOptions) -> _Pair:
    _check_rgb("image", image)
    _check_rgb("background", background)
    height, width = image.shape[:2]
    subject = _subject_mask(subject_mask, (height, width))
    margin = options.subject_margin if options.subject_margin is not None else max(3, round(0.01 * max(height, width)))
    outside_subject = None if subject is None else ~_dilate(subject, margin)
    return _Pair(to_float(image, "image"), to_float(background, "background"), background.dtype, subject, outside_subject)


def _fall_back(pair: _Pair, report: AlignmentReport, reason: str, t_start: float) -> tuple[np.ndarray, AlignmentReport]:
    """The unaligned background (resized to I's size), with the reason in the report and a warning."""
    height, width = pair.shape
    report.fell_back, report.reason = True, reason
    report.homography = _resize_homography(pair.background.shape[:2], (height, width))
    report.coverage, report.valid_mask = 1.0, np.ones((height, width), dtype=bool)
    warnings.warn(f"background alignment fell back to the unaligned background: {reason}",
                  AlignmentWarning, stacklevel=3)
    report.timings["total"] = time.perf_counter() - t_start
    return _from_float(pair.unaligned(), pair.dtype), report


def _estimate_homography(pair: _Pair, options: AlignOptions, report: AlignmentReport) -> np.ndarray:
    """Background px -> image px (normalised, also in ``report``): features, matches, RANSAC, refit, checks,
    optional ECC. Raises _FallBack when a step fails."""
    features = _detect(pair, options, report)
    matches, kept = _match(features, options, report)
    h_small, fit_background, fit_image = _ransac(features, kept, options, report)
    if options.refit_all_matches:
        h_small, fit_background, fit_image = _refit(features, matches, h_small, fit_background, fit_image,
                                                    options, report)
    homography = np.linalg.inv(features.image_to_small) @ h_small @ features.background_to_small
    problem = _degeneracy(homography, pair.background.shape[:2], pair.shape,
                          options.max_scale, options.max_perspective, options.min_coverage)
    if problem:
        raise _FallBack(f"degenerate homography: {problem}")
    if options.ecc_refine:
        homography = _ecc_step(pair, features, homography, options, report)
    report.homography = homography / homography[2, 2]
    pts_background_full = _apply_inverse_scaling(fit_background, features.background_to_small)
    pts_image_full = _apply_inverse_scaling(fit_image, features.image_to_small)
    report.reprojection_error = _rms_reprojection(report.homography, pts_background_full, pts_image_full)
    return report.homography


def _detect(pair: _Pair, options: AlignOptions, report: AlignmentReport) -> _Features:
    """AKAZE on downscaled gray copies (the subject masked out of I); a 10x lower threshold when either image
    has fewer than ``min_keypoints``."""
    t = time.perf_counter()
    image_gray = _gray_u8(pair.image)
    background_gray = _gray_u8(pair.background)
    image_small, image_to_small = _downscale(image_gray, options.max_side)
    background_small, background_to_small = _downscale(background_gray, options.max_side)
    report.detection_scale = (float(image_to_small[0, 0]), float(background_to_small[0, 0]))
    feature_mask = None
    if pair.outside_subject is not None and options.mask_features:
        feature_mask = _resize_mask(pair.outside_subject, image_small.shape).astype(np.uint8) * 255
    threshold = options.akaze_threshold
    for attempt in range(2):
        akaze = cv2.AKAZE_create(threshold=threshold)
        kp_image, desc_image = akaze.detectAndCompute(image_small, feature_mask)
        kp_background, desc_background = akaze.detectAndCompute(background_small, None)
        if attempt == 1 or min(len(kp_image), len(kp_background)) >= options.min_keypoints:
            break
        threshold = options.akaze_threshold / 10
    report.akaze_threshold = threshold
    report.keypoints_image, report.keypoints_background = len(kp_image), len(kp_background)
    report.timings["detect"] = time.perf_counter() - t
    if desc_image is None or desc_background is None or len(kp_image) < 4 or len(kp_background) < 4:
        raise _FallBack(f"too few keypoints (image {len(kp_image)}, background {len(kp_background)})")
    return _Features(image_gray, background_gray, image_to_small, background_to_small,
                     kp_image, desc_image, kp_background, desc_background)


def _match(features: _Features, options: AlignOptions, report: AlignmentReport) -> tuple[list, list]:
    """(all matches best first, the kept best ``match_fraction``): Hamming brute force, background -> image."""
    t = time.perf_counter()
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).match(features.desc_background, features.desc_image)
    matches = sorted(matches, key=lambda m: m.distance)
    report.matches = len(matches)
    kept = matches[: int(len(matches) * options.match_fraction)]
    report.kept_matches = len(kept)
    report.timings["match"] = time.perf_counter() - t
    need = max(options.min_matches, 4)
    if len(kept) < need:
        raise _FallBack(f"too few matches ({len(kept)} kept of {len(matches)}, need {need})")
    return matches, kept


def _matched_points(features: _Features, matches: list) -> tuple[np.ndarray, np.ndarray]:
    """(background points, image points) of ``matches`` in the detection copies' pixels."""
    return (np.float32([features.kp_background[m.queryIdx].pt for m in matches]),
            np.float32([features.kp_image[m.trainIdx].pt for m in matches]))


def _ransac(features: _Features, kept: list, options: AlignOptions,
            report: AlignmentReport) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RANSAC homography of the kept matches (detection copies' px) and its inlier points."""
    t = time.perf_counter()
    pts_background, pts_image = _matched_points(features, kept)
    threshold_small = options.ransac_threshold * float(features.image_to_small[0, 0])
    h_small, inlier_mask = cv2.findHomography(pts_background, pts_image, cv2.RANSAC, threshold_small)
    report.timings["ransac"] = time.perf_counter() - t
    if h_small is None or inlier_mask is None:
        raise _FallBack("RANSAC found no homography")
    inliers = inlier_mask.ravel().astype(bool)
    report.inliers = int(inliers.sum())
    if report.inliers < max(options.min_inliers, options.min_inlier_ratio * len(kept)):
        raise _FallBack(f"too few RANSAC inliers ({report.inliers} of {len(kept)} kept matches, need "
                        f"{options.min_inliers} and {options.min_inlier_ratio:.0%})")
    return h_small, pts_background[inliers], pts_image[inliers]


def _refit(features: _Features, matches: list, h_small: np.ndarray, fit_background: np.ndarray,
           fit_image: np.ndarray, options: AlignOptions,
           report: AlignmentReport) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares refit (twice) on all matches within ``refit_threshold`` of the current homography."""
    t = time.perf_counter()
    refit_small = options.refit_threshold * float(features.image_to_small[0, 0])
    all_background, all_image = _matched_points(features, matches)
    for _ in range(2):
        projected = cv2.perspectiveTransform(all_background.reshape(-1, 1, 2), h_small).reshape(-1, 2)
        consistent = np.linalg.norm(projected - all_image, axis=1) < refit_small
        if consistent.sum() < max(report.inliers, 4):
            break
        refit, _ = cv2.findHomography(all_background[consistent], all_image[consistent], 0)
        if refit is None or not np.all(np.isfinite(refit)):
            break
        h_small = refit
        fit_background, fit_image = all_background[consistent], all_image[consistent]
    report.refit_matches = len(fit_background)
    report.timings["refit"] = time.perf_counter() - t
    return h_small, fit_background, fit_image


def _ecc_step(pair: _Pair, features: _Features, homography: np.ndarray, options: AlignOptions,
              report: AlignmentReport) -> np.ndarray:
    """The ECC-refined homography when it is not degenerate, else ``homography`` (the report says which)."""
    t = time.perf_counter()
    refined = _refine_with_ecc(report, homography, features.image_gray, features.background_gray,
                               pair.outside_subject, options.ecc_max_side, options.ecc_levels,
                               options.ecc_iterations)
    problem = _degeneracy(refined, pair.background.shape[:2], pair.shape,
                          options.max_scale, options.max_perspective, options.min_coverage)
    if problem:
        report.ecc_applied, report.ecc_status = False, f"rejected: {problem}"
    else:
        homography = refined
    report.timings["ecc"] = time.perf_counter() - t
    return homography


def _warp_and_fill(pair: _Pair, homography: np.ndarray, options: AlignOptions,
                   report: AlignmentReport) -> np.ndarray:
    """B' warped into I's frame (float32), photometrically matched if asked, uncovered pixels filled."""
    height, width = pair.shape
    t = time.perf_counter()
    border = cv2.BORDER_REPLICATE if options.fill == "replicate" else cv2.BORDER_CONSTANT
    aligned = cv2.warpPerspective(pair.background, homography, (width, height),
                                  flags=cv2.INTER_LINEAR, borderMode=border)
    valid = cv2.warpPerspective(np.full(pair.background.shape[:2], 255, np.uint8), homography,
                                (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) == 255
    report.valid_mask, report.coverage = valid, float(valid.mean())
    report.timings["warp"] = time.perf_counter() - t
    if options.photometric:
        t = time.perf_counter()
        fit_region = valid if pair.outside_subject is None else valid & pair.outside_subject
        gain, bias = fit_gain_bias(aligned, pair.image, fit_region, robust=pair.outside_subject is None)
        np.multiply(aligned, gain, out=aligned)
        np.add(aligned, bias, out=aligned)
        np.clip(aligned, 0.0, 1.0, out=aligned)
        report.photometric_gain, report.photometric_bias = gain, bias
        report.timings["photometric"] = time.perf_counter() - t
    if options.fill == "zeros":
        aligned[~valid] = 0.0  # also the border pixels the interpolation blended with zeros
    if options.fill in ("image", "unaligned"):
        outside = ~valid
        np.copyto(aligned, pair.image if options.fill == "image" else pair.unaligned(), where=outside[:, :, None])
        if options.fill == "image" and pair.subject is not None:
            np.copyto(aligned, pair.unaligned(), where=(outside & pair.subject)[:, :, None])
    return aligned


def fit_gain_bias(
    source: np.ndarray,
    target: np.ndarray,
    region: np.ndarray,
    *,
    robust: bool = True,
    max_samples: int = 100_000,
    iterations: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel gain and bias with target ~= gain * source + bias over ``region``.

    source, target: float H x W x 3 in [0, 1]; region: H x W bool. Estimator: moment matching
    (gain = std(target) / std(source), bias = mean(target) - gain * mean(source)), as in the public MATLAB
    code, over pixels not clipped in either image. ``robust``: pixels whose residual exceeds 3 robust
    sigmas (MAD, taken over all channels) are dropped, ``iterations`` times, so a subject absent from the
    source does not bias the fit. Returns (gain (3,), bias (3,)) float32; (1, 0) when too few pixels remain.
    """
    step = max(1, int(np.ceil(np.sqrt(region.size / max_samples))))  # a regular grid of samples
    grid = region[::step, ::step]
    src = source[::step, ::step][grid].astype(np.float32)
    dst = target[::step, ::step][grid].astype(np.float32)
    unclipped = np.all((src > 0.02) & (src < 0.98) & (dst > 0.02) & (dst < 0.98), axis=1)
    src, dst = src[unclipped], dst[unclipped]
    identity = np.ones(3, np.float32), np.zeros(3, np.float32)
    if len(src) < 100:
        return identity
    gain, bias = _moment_match(src, dst)
    if robust:
        for _ in range(iterations):
            residual = np.abs(dst - (src * gain + bias)).max(axis=1)
            median = np.median(residual)
            mad = np.median(np.abs(residual - median)) * 1.4826 + 1e-4
            keep = residual <= median + 3.0 * mad
            if keep.sum() < 100:
                break
            gain, bias = _moment_match(src[keep], dst[keep])
    return gain.astype(np.float32), bias.astype(np.float32)


def _moment_match(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std_src = src.std(axis=0)
    gain = np.where(std_src > 1e-6, dst.std(axis=0) / np.maximum(std_src, 1e-6), 1.0)
    bias = dst.mean(axis=0) - gain * src.mean(axis=0)
    return gain, bias


def _refine_with_ecc(
    report: AlignmentReport,
    homography: np.ndarray,
    image_gray: np.ndarray,
    background_gray: np.ndarray,
    outside_subject: np.ndarray | None,
    ecc_max_side: int,
    levels: int,
    iterations: int,
) -> np.ndarray:
    """ECC refinement of ``homography`` (background px -> image px), coarse to fine; returns the kept one.

    ECC runs with the background as template and the image as input, so the subject can be masked in
    the image's frame (OpenCV's mask belongs to the input image). Without a subject mask, pixels that
    disagree after the RANSAC alignment (the subject, shadows, moved objects) are masked instead. The
    result is kept only when the correlation at the finest level, under the same mask, goes up.
    """
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iterations, 1e-6)
    longest = max(*image_gray.shape, *background_gray.shape)
    sides = sorted({min(max(int(round(ecc_max_side / 2**level)), 32), longest) for level in range(max(levels, 1))})
    pyramid = []
    for side in sides:
        img_l, img_to_l = _downscale(image_gray, side)
        bg_l, bg_to_l = _downscale(background_gray, side)
        pyramid.append((img_l.astype(np.float32) / 255.0, img_to_l, bg_l.astype(np.float32) / 255.0, bg_to_l))
    img_f, img_to_f, bg_f, bg_to_f = pyramid[-1]
    h_fine = _to_level(homography, img_to_f, bg_to_f)
    if outside_subject is not None:
        keep = outside_subject
    else:
        keep = _agreeing_pixels(img_f, bg_f, h_fine)
    masks = [_resize_mask(keep, img_l.shape).astype(np.uint8) for img_l, *_ in pyramid]
    before = _ecc_correlation(bg_f, img_f, masks[-1], h_fine)

    current = homography.copy()
    for (img_l, img_to_l, bg_l, bg_to_l), mask_l in zip(pyramid, masks):
        h_l = _to_level(current, img_to_l, bg_to_l)
        try:  # Gaussian pre-filter 3: without it ECC drifts on noisy images (measured)
            _, refined = cv2.findTransformECC(bg_l, img_l, h_l, cv2.MOTION_HOMOGRAPHY, criteria, mask_l, 3)
        except cv2.error as error:
            report.ecc_status = f"failed: {str(error).strip().splitlines()[-1]}"
            return homography
        if not np.all(np.isfinite(refined)):
            report.ecc_status = "failed: non-finite homography"
            return homography
        current = np.linalg.inv(img_to_l) @ refined.astype(np.float64) @ bg_to_l
    after = _ecc_correlation(bg_f, img_f, masks[-1], _to_level(current, img_to_f, bg_to_f))
    report.ecc_correlation = (before, after)
    if not after > before:
        report.ecc_status = f"rejected: correlation {after:.6f} not above {before:.6f}"
        return homography
    report.ecc_applied, report.ecc_status = True, "improved"
    return current / current[2, 2]


def _to_level(h: np.ndarray, image_to_level: np.ndarray, background_to_level: np.ndarray) -> np.ndarray:
    h_l = image_to_level @ h @ np.linalg.inv(background_to_level)
    return (h_l / h_l[2, 2]).astype(np.float32)


def _agreeing_pixels(image: np.ndarray, background: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Image-frame bool mask of pixels where the warped background matches the image (gain/bias-normalised).

    Disagreeing pixels (residual above max(0.1, median + 4 robust sigmas)) are dilated by 2 % of the size.
    """
    size = (image.shape[1], image.shape[0])
    warped = cv2.warpPerspective(background, h.astype(np.float64), size, flags=cv2.INTER_LINEAR)
    valid = cv2.warpPerspective(np.ones(background.shape, np.uint8), h.astype(np.float64), size,
                                flags=cv2.INTER_NEAREST) > 0
    if valid.sum() < 100:
        return valid

    def normalise(x: np.ndarray) -> np.ndarray:
        return (x - x[valid].mean()) / (x[valid].std() + 1e-6)

    residual = cv2.GaussianBlur(np.abs(normalise(warped) - normalise(image)), (5, 5), 0)
    values = residual[valid]
    median = np.median(values)
    sigma = 1.4826 * np.median(np.abs(values - median)) + 1e-6
    outliers = residual > max(0.1, median + 4.0 * sigma)
    return valid & ~_dilate(outliers, max(2, round(0.02 * max(image.shape))))


def _ecc_correlation(template: np.ndarray, image: np.ndarray, mask: np.ndarray | None, h: np.ndarray) -> float:
    """ECC (zero-mean normalised correlation) of ``template`` and ``image`` warped back by ``h``."""
    size = (template.shape[1], template.shape[0])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(image, h, size, flags=flags)
    valid = np.full(image.shape, 1, np.uint8) if mask is None else mask
    warped_mask = cv2.warpPerspective(valid, h, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    if not warped_mask.any():
        return float("-inf")
    return float(cv2.computeECC(template, warped, warped_mask))


def _degeneracy(
    h: np.ndarray,
    background_shape: tuple[int, int],
    image_shape: tuple[int, int],
    max_scale: float,
    max_perspective: float,
    min_coverage: float,
) -> str | None:
    """A reason string when the homography is unusable, else None."""
    if not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        return "non-finite"
    h = h / h[2, 2]
    bh, bw = background_shape
    corners = np.array([[0, 0, 1], [bw, 0, 1], [bw, bh, 1], [0, bh, 1]], dtype=np.float64).T
    mapped = h @ corners
    w = mapped[2]
    if np.any(w <= 1e-9):
        return "background corners map behind the camera"
    if w.max() / w.min() > max_perspective:
        return f"extreme perspective (divisor ratio {w.max() / w.min():.2f} > {max_perspective})"
    quad = (mapped[:2] / w).T
    edges = np.roll(quad, -1, axis=0) - quad
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not (np.all(cross > 0) or np.all(cross < 0)):
        return "warped background is folded (not convex)"
    ih, iw = image_shape
    area = 0.5 * abs(np.dot(quad[:, 0], np.roll(quad[:, 1], -1)) - np.dot(quad[:, 1], np.roll(quad[:, 0], -1)))
    scale = np.sqrt(area / (ih * iw))
    if not 1.0 / max_scale <= scale <= max_scale:
        return f"extreme scale ({scale:.3f} of the image size, limit {max_scale})"
    coverage = _quad_coverage(quad, image_shape)
    if coverage < min_coverage:
        return f"warped background covers {coverage:.1%} of the image (< {min_coverage:.0%})"
    return None


def _quad_coverage(quad: np.ndarray, image_shape: tuple[int, int], raster_side: int = 256) -> float:
    """Share of the image inside a convex quadrilateral (rasterised on a small grid)."""
    ih, iw = image_shape
    s = raster_side / max(ih, iw)
    rh, rw = max(1, round(ih * s)), max(1, round(iw * s))
    canvas = np.zeros((rh, rw), np.uint8)
    pts = np.clip(quad * s, -1e6, 1e6)
    cv2.fillConvexPoly(canvas, np.round(pts * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    return float(canvas.mean())


def _rms_reprojection(h: np.ndarray, src: np.ndarray, dst: np.ndarray) -> float:
    if len(src) == 0:
        return float("nan")
    projected = cv2.perspectiveTransform(src.reshape(-1, 1, 2).astype(np.float64), h).reshape(-1, 2)
    return float(np.sqrt(np.mean(np.sum((projected - dst) ** 2, axis=1))))


def _scaling_matrix(sx: float, sy: float) -> np.ndarray:
    """Full-resolution px -> resized px for ``cv2.resize`` by (sx, sy) (pixel centres at +0.5)."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _apply_inverse_scaling(points: np.ndarray, to_small: np.ndarray) -> np.ndarray:
    return (points.astype(np.float64) - to_small[:2, 2]) / np.diag(to_small)[:2]


def _downscale(gray: np.ndarray, max_side: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Shrink so the longest side is at most ``max_side``; returns (image, full -> small matrix)."""
    h, w = gray.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return gray, np.eye(3)
    s = max_side / max(h, w)
    new_w, new_h = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(gray, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return small, _scaling_matrix(new_w / w, new_h / h)


def _resize_homography(background_shape: tuple[int, int], image_shape: tuple[int, int]) -> np.ndarray:
    (bh, bw), (ih, iw) = background_shape, image_shape
    return _scaling_matrix(iw / bw, ih / bh)


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    if image.shape[:2] == (h, w):
        return image
    shrinking = h * w < image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def _subject_mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.shape != shape:
        raise ValueError(f"subject_mask has shape {mask.shape}, expected the image's {shape}")
    if mask.dtype == bool:
        return mask
    if mask.dtype == np.uint8:
        return mask > 127
    return mask > 0.5


def _check_rgb(name: str, array: np.ndarray) -> None:
    if not isinstance(array, np.ndarray) or array.ndim != 3 or array.shape[2] != 3:
        shape = getattr(array, "shape", type(array).__name__)
        raise ValueError(f"{name} must be an H x W x 3 RGB array, got {shape}")
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or float in [0, 1], got dtype {array.dtype}")
    if min(array.shape[:2]) < 8:
        raise ValueError(f"{name} is too small to align ({array.shape[0]} x {array.shape[1]})")


def _from_float(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:
        return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return image.astype(dtype, copy=False)


def _gray_u8(image_f: np.ndarray) -> np.ndarray:
    return np.clip(np.round(to_gray(image_f) * 255.0), 0, 255).astype(np.uint8)
