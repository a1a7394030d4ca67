"""How far a captured background plate is from registered with a frame, measured cheaply, and whether a
gain/bias correction of the plate's exposure measurably helps.

:func:`measure_misalignment` works on gray copies whose longest side is at most ``max_side`` (640), locally
normalised (their blur subtracted, divided by the local contrast) so that exposure, gamma and soft shadows do not
read as motion. It tracks corners of the plate into the frame with pyramidal Lucas-Kanade, starting where the
plate in use (its homography: an earlier alignment, or a plain resize) puts them, keeps the tracks that come back
to where they started, fits the residual motion robustly (an affine map, RANSAC: the subject moves with respect to
the plate, its tracks are outliers) and reports the 90th percentile of that motion over the agreeing tracks, in
full-resolution pixels. On synthetic captures at 960 x 540 it cost a sixth of an AKAZE alignment
(:func:`bgmatting.preprocess.align.align_background`) and read misalignments of aligned plates to within 0.4 px
(README, Matting).

:func:`correct_exposure` fits the plate's per-channel gain and bias to the frame outside the subject
(:func:`bgmatting.preprocess.align.fit_gain_bias`) and keeps the correction only when it lowers the median
absolute difference there by at least ``min_gain`` (a share of it).

Images are RGB H x W x 3, uint8 or float in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bgmatting.preprocess.align import fit_gain_bias
from bgmatting.io import to_float
from bgmatting.preprocess.motion import to_gray

#: A plate off by at most this share of the frame's longest side (and at least 1 px) counts as registered:
#: half a pixel at the measuring scale (``max_side`` 640), 1.5 px on a 1920 x 1080 frame.
MISALIGNMENT_TOLERANCE = 1.0 / 1280
#: An exposure correction is kept when it lowers the plate's median residual by at least this share.
EXPOSURE_MIN_GAIN = 0.2
#: Sigma (px at the measuring scale) of the local normalisation of the gray copies.
LOCAL_SIGMA = 4.0
#: Median |I - B'| outside the subject above which image and plate "differ grossly" (wrong plate, other scene;
#: measured on photos: another photo 0.35-0.5, the same view 25 % darker 0.21).
GROSS_DIFFERENCE = 0.3


@dataclass(frozen=True)
class Misalignment:
    """``pixels``: how far the plate in use is off, full-resolution px: the 90th percentile over the tracked
    background points (None when it could not be measured: ``reason`` says why); ``tracks``: corners tracked both
    ways; ``inliers``: tracks that agree with one affine motion."""

    pixels: float | None
    tracks: int = 0
    inliers: int = 0
    reason: str | None = None

    def within(self, tolerance: float) -> bool:
        """Measured, and at most ``tolerance`` px."""
        return self.pixels is not None and self.pixels <= tolerance


def tolerance_px(shape: tuple[int, int], tolerance: float = MISALIGNMENT_TOLERANCE) -> float:
    """The misalignment in px that still counts as registered on a frame of ``shape`` (H, W)."""
    return max(1.0, tolerance * max(shape))


def _normalised_gray(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Gray copy resized to ``size`` (h, w) and locally normalised (its blur subtracted, divided by the local
    contrast) so that exposure, gamma and soft shadows do not read as motion, stretched to uint8; and the full ->
    small pixel matrix (``cv2.resize``'s pixel-centre convention)."""
    gray = to_gray(image)
    if gray.shape != size:
        shrinking = size[0] * size[1] < gray.shape[0] * gray.shape[1]
        gray = cv2.resize(gray, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    detail = gray - cv2.GaussianBlur(gray, (0, 0), LOCAL_SIGMA)
    contrast = np.sqrt(cv2.GaussianBlur(detail * detail, (0, 0), 2 * LOCAL_SIGMA)) + 0.01
    return np.clip(128.0 + 40.0 * detail / contrast, 0, 255).astype(np.uint8), resize_matrix(np.shape(image)[:2], size)


def _small_size(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    height, width = shape
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_matrix(source: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """3 x 3 map of pixel coordinates of an image of size ``source`` (H, W) to the same image resized to
    ``target`` by ``cv2.resize`` (pixel centres at +0.5)."""
    sx, sy = target[1] / source[1], target[0] / source[0]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _outside_subject(points: np.ndarray, subject_mask: np.ndarray | None, to_small: np.ndarray) -> np.ndarray:
    """Bool per image point (small px): not on the subject (dilated by 2 % of the frame)."""
    keep = np.ones(len(points), bool)
    if subject_mask is None:
        return keep
    subject = (np.asarray(subject_mask, np.float32) > 0.5).astype(np.uint8)
    radius = max(2, round(0.02 * max(subject.shape)))
    subject = cv2.dilate(subject, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)) > 0
    full = (points - to_small[:2, 2]) / np.diag(to_small)[:2]
    cols = np.clip(np.round(full[:, 0]).astype(int), 0, subject.shape[1] - 1)
    rows = np.clip(np.round(full[:, 1]).astype(int), 0, subject.shape[0] - 1)
    return keep & ~subject[rows, cols]


def _tracks(plate: np.ndarray, image: np.ndarray, predicted: np.ndarray,
            max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corners of ``plate`` tracked into ``image`` starting from where ``predicted`` (small-px homography) puts
    them, and back: (plate points, image points, bool: came back to within 0.5 px)."""
    corners = cv2.goodFeaturesToTrack(plate, maxCorners=max_points, qualityLevel=0.01,
                                      minDistance=max(4, max(plate.shape) // 60), blockSize=5)
    if corners is None:
        empty = np.zeros((0, 2), np.float32)
        return empty, empty, np.zeros(0, bool)
    guess = cv2.perspectiveTransform(corners, predicted).astype(np.float32)
    lk = dict(winSize=(21, 21), maxLevel=3, criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01))
    forward, ok_forward, _ = cv2.calcOpticalFlowPyrLK(plate, image, corners, guess.copy(),
                                                      flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(image, plate, forward, corners.copy(),
                                                flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
    round_trip = np.linalg.norm((back - corners).reshape(-1, 2), axis=1)
    good = (ok_forward.ravel() == 1) & (ok_back.ravel() == 1) & (round_trip < 0.5)
    return corners.reshape(-1, 2), forward.reshape(-1, 2), good


def measure_misalignment(
    image: np.ndarray,
    plate: np.ndarray,
    homography: np.ndarray | None = None,
    subject_mask: np.ndarray | None = None,
    *,
    max_side: int = 640,
    max_points: int = 400,
    min_tracks: int = 12,
) -> Misalignment:
    """How far the plate as it is used is from registered with ``image`` (module docstring).

    image: H x W x 3. plate: the captured plate, h x w x 3 (any size). homography: 3 x 3, plate px -> image px,
    how the plate is used (e.g. an alignment's); default: the plate resized to the image. subject_mask:
    optional H x W (> 0.5: subject), kept out of the measure. Never raises on content: a pair without enough
    texture or consistent motion gives ``pixels=None`` with the reason.
    """
    image, plate = np.asarray(image), np.asarray(plate)
    for name, array in (("image", image), ("plate", plate)):
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"{name} must be H x W x 3 RGB, got shape {array.shape}")
    if homography is None:
        homography = resize_matrix(plate.shape[:2], image.shape[:2])
    small = _small_size(image.shape[:2], max_side)  # both at this size: LK tracks between equal sizes
    image_small, image_to_small = _normalised_gray(image, small)
    plate_small, plate_to_small = _normalised_gray(plate, small)
    predicted = image_to_small @ homography @ np.linalg.inv(plate_to_small)
    start, end, good = _tracks(plate_small, image_small, predicted, max_points)
    good &= _outside_subject(end, subject_mask, image_to_small)
    start, end = start[good], end[good]
    if len(start) < min_tracks:
        return Misalignment(None, len(start), 0, f"too few trackable corners ({len(start)} < {min_tracks})")
    # The plate in use shows plate point p at predicted(p); it really is at ``end``. The residual motion
    # (predicted -> end) is small and close to affine: fitted robustly (the subject's tracks are outliers), it
    # averages out the tracking noise of single points.
    shown = cv2.perspectiveTransform(start.reshape(-1, 1, 2), predicted).reshape(-1, 2)
    residual, inlier_mask = cv2.estimateAffine2D(shown, end, method=cv2.RANSAC, ransacReprojThreshold=1.0)
    inliers = int(inlier_mask.sum()) if inlier_mask is not None else 0
    if residual is None or inliers < max(min_tracks, 0.3 * len(start)):
        return Misalignment(None, len(start), inliers, f"no consistent motion ({inliers} of {len(start)} tracks agree)")
    points = shown[inlier_mask.ravel() == 1]
    moved = points @ residual[:, :2].T + residual[:, 2]
    offsets = np.linalg.norm(moved - points, axis=1)
    pixels = float(np.percentile(offsets, 90)) / image_to_small[0, 0]
    return Misalignment(round(float(pixels), 3), len(start), inliers)


@dataclass(frozen=True)
class ExposureCorrection:
    """``applied``: whether the plate was corrected; ``gain``/``bias`` per channel (plate' = gain * plate + bias);
    ``residual_before``/``residual_after``: median |I - B'| outside the subject without and with the correction."""

    applied: bool
    gain: tuple[float, float, float]
    bias: tuple[float, float, float]
    residual_before: float
    residual_after: float


def background_residual(image: np.ndarray, plate: np.ndarray, subject_mask: np.ndarray | None = None,
                        step: int = 4) -> float:
    """Median of max-over-channels |I - B'| over the pixels (every ``step``-th row and column) outside
    ``subject_mask`` (H x W, > 0.5 or True: excluded; None: all pixels). Images H x W x 3, uint8 or float."""
    image, plate = to_float(image, "image")[::step, ::step], to_float(plate, "plate")[::step, ::step]
    residual = np.abs(image - plate).max(axis=2)
    if subject_mask is not None:
        outside = np.asarray(subject_mask, np.float32)[::step, ::step] <= 0.5
        if outside.sum() >= 16:
            residual = residual[outside]
    return float(np.median(residual))


def correct_exposure(
    image: np.ndarray,
    plate: np.ndarray,
    region: np.ndarray | None = None,
    *,
    min_gain: float = EXPOSURE_MIN_GAIN,
) -> tuple[np.ndarray, ExposureCorrection]:
    """``plate`` (H x W x 3, at ``image``'s size) as float32 in [0, 1] with its exposure matched to ``image`` if that
    lowers the median residual over ``region`` by at least ``min_gain`` of it; else the plate unchanged.

    region: H x W bool, the pixels that show the plate's scene outside the subject (default: all); the fit is
    robust to what differs there all the same (:func:`~bgmatting.preprocess.align.fit_gain_bias`).
    """
    image_f, plate_f = to_float(image, "image"), to_float(plate, "plate")
    region = np.ones(image_f.shape[:2], bool) if region is None else np.asarray(region, bool)
    gain, bias = fit_gain_bias(plate_f, image_f, region, robust=True)
    corrected = np.clip(plate_f * gain + bias, 0.0, 1.0).astype(np.float32)
    outside = ~region
    before = background_residual(image_f, plate_f, outside)
    after = background_residual(image_f, corrected, outside)
    applied = after < (1.0 - min_gain) * before
    report = ExposureCorrection(bool(applied), tuple(round(float(g), 4) for g in gain),
                                tuple(round(float(b), 4) for b in bias), round(before, 4), round(after, 4))
    return (corrected if applied else plate_f), report
