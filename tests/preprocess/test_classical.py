"""The careful classical matte: on a simple capture (plate from another pose with another exposure and noise) it
aligns, fits the gain, and finds the subject; and the misalignment-tolerant difference it relies on."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from bgmatting import metrics
from bgmatting.data.compositing import composite
from bgmatting.data.nuisances import Exposure, add_sensor_noise, pose_homography, view_through
from bgmatting.preprocess import AlignmentWarning, careful_matte
from bgmatting.preprocess.segment import BackgroundDifferenceSegmenter, background_difference_matte


def _scene(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    noise = cv2.resize(rng.random((h // 8, w // 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.2)
    return np.clip(0.15 + 0.5 * noise + 0.35 * fine, 0.0, 1.0)


def _capture(h: int = 240, w: int = 320):
    """(photo, plate, true alpha): a soft disc-and-body subject over a texture; the plate from a pose 1.5 degrees
    and 6 px off, 12 % brighter in red, noisy."""
    margin = 40
    world = _scene(h + 2 * margin, w + 2 * margin)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    head = np.clip(1.5 - np.hypot(xx - 160, yy - 90) / 1.0 + 30 - 1.0, 0.0, 1.0)
    body = ((np.abs(xx - 160) < 55) & (yy > 125)).astype(np.float32)
    alpha = np.clip(np.maximum(head, cv2.GaussianBlur(body, (0, 0), 0.8)), 0.0, 1.0)
    foreground = np.empty((h, w, 3), np.float32)
    foreground[:] = (0.8, 0.3, 0.25)
    photo = composite(alpha, foreground, world[margin:margin + h, margin:margin + w])
    pose = pose_homography(h, w, shift=(6.0, -4.0), angle_deg=1.5)
    plate = Exposure((1.12, 1.0, 0.95), 1.0).apply(view_through(world, pose, (h, w), offset=(margin, margin)))
    return add_sensor_noise(1, photo, (0.006, 0.006))[0], add_sensor_noise(2, plate, (0.006, 0.006))[0], alpha


def test_careful_matte_aligns_the_plate_and_finds_the_subject():
    photo, plate, alpha = _capture()
    matte, report = careful_matte(photo, plate)
    assert not report.fell_back and report.photometric_gain is not None
    assert matte.shape == alpha.shape and matte.dtype == np.float32 and 0.0 <= matte.min() <= matte.max() <= 1.0
    found, truth = matte > 0.5, alpha > 0.5
    assert (found & truth).sum() / (found | truth).sum() > 0.95  # the silhouette, to about a pixel at its edges
    assert metrics.false_foreground(matte, alpha) < 0.002
    naive = background_difference_matte(photo, plate)  # the plate as captured: off by the pose
    assert metrics.sad(matte, alpha) < 0.5 * metrics.sad(naive, alpha)
    assert ((matte > 0.05) & (matte < 0.95)).any()  # feathered, not a hard mask


def test_careful_matte_of_a_plate_without_texture_falls_back_without_raising():
    flat = np.full((64, 80, 3), 0.5, np.float32)
    photo = flat.copy()
    photo[20:50, 30:50] = (0.9, 0.1, 0.1)
    with pytest.warns(AlignmentWarning, match="fell back"):
        matte, report = careful_matte(photo, flat)
    assert report.fell_back and matte[35, 40] > 0.9 and matte[5, 5] == 0.0


def test_difference_tolerates_misalignment_up_to_its_radius():
    scene = _scene(120, 160)
    moved = np.roll(scene, 1, axis=1)  # the plate one pixel off
    plain = BackgroundDifferenceSegmenter(shadow_suppression=False)
    tolerant = BackgroundDifferenceSegmenter(shadow_suppression=False, tolerance_px=1)
    assert np.median(tolerant.difference(scene, moved)) < 0.25 * np.median(plain.difference(scene, moved))
    subject = scene.copy()
    subject[40:80, 60:100] = (0.95, 0.05, 0.05)
    assert tolerant.difference(subject, scene)[50:70, 70:90].min() > 0.3  # a real difference stays
    assert np.array_equal(BackgroundDifferenceSegmenter(tolerance_px=0).difference(subject, scene),
                          BackgroundDifferenceSegmenter().difference(subject, scene))  # the default is unchanged
