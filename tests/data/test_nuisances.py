"""The capture nuisances: each draws from a seed, stays in its stated range, and does what it says (parallax no
affine map removes, exposure per channel, a shadow offset from the subject, noise, JPEG)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from bgmatting.io import encode_jpeg, image_from_bytes, read_image, write_jpeg
from bgmatting.data.nuisances import (Exposure, Shadow, _affine_part, add_sensor_noise, jpeg_quality, jpeg_round_trip,
                                      parallax_field, pose_homography, random_pose, view_through)


def _texture(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(3)
    return cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.5)


def test_every_nuisance_is_a_pure_function_of_its_seed():
    image = _texture()
    assert np.array_equal(random_pose(7, 48, 64), random_pose(np.random.default_rng(7), 48, 64))
    assert np.array_equal(parallax_field(7, 48, 64), parallax_field(7, 48, 64))
    assert Exposure.draw(7) == Exposure.draw(7) != Exposure.draw(8)
    assert Shadow.draw(7) == Shadow.draw(7) != Shadow.draw(8)
    assert np.array_equal(add_sensor_noise(7, image)[0], add_sensor_noise(7, image)[0])
    assert not np.array_equal(add_sensor_noise(7, image)[0], add_sensor_noise(8, image)[0])
    assert jpeg_quality(7) == jpeg_quality(7)


def test_random_pose_stays_within_its_ranges():
    h, w = 300, 400
    corners = np.array([[[0, 0]], [[w, 0]], [[w, h]], [[0, h]]], np.float64)
    for seed in range(20):
        moved = cv2.perspectiveTransform(corners, random_pose(seed, h, w)) - corners
        # rotation 3 deg (~13 px at a corner 250 px from the centre), scale 3 % (~8 px), shift 4 % of 400 (16 px
        # per axis), perspective 3 % of the frame (~6 px)
        assert np.abs(moved).max() < 13 + 8 + 16 + 12
    assert not np.allclose(random_pose(1, h, w), np.eye(3))


def test_parallax_has_no_affine_part_and_the_drawn_amplitude():
    for seed in range(5):
        field = parallax_field(seed, 60, 80, amplitude=(0.5, 1.5))
        assert field.shape == (2, 60, 80) and field.dtype == np.float32
        length = np.hypot(field[0], field[1])
        assert 0.5 - 1e-4 <= np.percentile(length, 90) <= 1.5 + 1e-4
        assert np.abs(_affine_part(field)).max() < 1e-3  # what an affine (or nearly, a homography) takes out
        assert length.std() > 0.1  # not a constant shift either


def test_view_through_samples_where_the_map_points():
    world = _texture(80, 100)
    shift = pose_homography(40, 60, shift=(3.0, 2.0))
    out = view_through(world, shift, (40, 60), offset=(10, 5))
    assert np.allclose(out, world[7:47, 13:73], atol=1e-5)  # out(x, y) = world(x + 3 + 10, y + 2 + 5)
    field = np.zeros((2, 40, 60), np.float32)
    field[0] += 1.0
    assert np.allclose(view_through(world, shift, (40, 60), field=field, offset=(10, 5)), world[7:47, 14:74], atol=1e-5)


def test_exposure_changes_each_channel_within_about_15_percent_and_gamma_within_10():
    for seed in range(30):
        e = Exposure.draw(seed)
        assert all(0.85 - 1e-9 <= g <= 1.15 + 1e-9 for g in e.gains) and 0.9 <= e.gamma <= 1.1
    e = Exposure((1.1, 1.0, 0.9), 1.0)
    image = np.full((4, 4, 3), 0.5, np.float32)
    assert np.allclose(e.apply(image)[0, 0], [0.55, 0.5, 0.45])
    assert np.allclose(Exposure((1.0, 1.0, 1.0), 2.0).apply(image), 0.25)


def test_the_shadow_is_the_subject_moved_sideways_blurred_and_as_dark_as_drawn():
    alpha = np.zeros((60, 80), np.float32)
    alpha[20:60, 30:40] = 1.0  # a standing subject, feet on the bottom edge
    shadow = Shadow(strength=0.4, offset=(0.25, 0.0), shear=0.0, squash=1.0, blur=0.001)
    darkening = shadow.map(alpha)
    assert darkening.max() == pytest.approx(0.4, abs=1e-3)
    assert darkening[40, 52:58].min() > 0.39 and darkening[40, 30:40].max() < 0.01  # moved by 25 % of 80 = 20 px
    sheared = Shadow(strength=0.4, offset=(0.0, 0.0), shear=0.5, squash=1.0, blur=0.001).map(alpha)
    assert sheared[59, 32:38].min() > 0.39  # the feet stay put
    assert sheared[22, 30:40].max() < 0.01 and sheared[22, 13:19].min() > 0.39  # the top leans by 0.5 * 38 px
    scene = np.full((60, 80, 3), 0.5, np.float32)
    assert np.allclose(Shadow.apply(scene, darkening)[40, 55], 0.5 * 0.6, atol=1e-3)
    for seed in range(20):
        assert 0.25 <= Shadow.draw(seed).strength <= 0.45


def test_noise_has_the_drawn_sigma():
    image = np.full((200, 200, 3), 0.5, np.float32)
    noisy, sigma = add_sensor_noise(4, image, sigma=(0.005, 0.015))
    assert 0.005 <= sigma <= 0.015 and np.std(noisy - image) == pytest.approx(sigma, rel=0.05)


def test_jpeg_round_trip_is_what_the_written_file_reads_back(tmp_path):
    image = _texture()
    quality = jpeg_quality(5, (80, 92))
    assert 80 <= quality <= 92
    path = write_jpeg(tmp_path / "a.jpg", image, quality)
    assert path.read_bytes()[:3] == b"\xff\xd8\xff" and path.read_bytes() == encode_jpeg(image, quality)
    assert np.array_equal(read_image(path), jpeg_round_trip(image, quality))
    assert 0 < np.abs(jpeg_round_trip(image, 80) - image).mean() < 0.03  # lossy, but close
    assert np.array_equal(image_from_bytes(encode_jpeg(image, 90), "bytes"), jpeg_round_trip(image, 90))
    with pytest.raises(ValueError, match="quality"):
        encode_jpeg(image, 0)
