"""Motion cues: gray conversion, still-image cues, frame indices at clip ends, video cues."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from bgmatting.preprocess.motion import image_motion_cues, motion_frame_indices, to_gray, video_motion_cues


def test_to_gray_uses_bt601_weights_for_every_input_kind():
    rgb8 = data.astronaut()[:64, :48]
    rgb = rgb8.astype(np.float32) / 255
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    gray = to_gray(rgb)
    assert gray.dtype == np.float32 and gray.shape == (64, 48)
    np.testing.assert_allclose(gray, expected, atol=1e-6)
    np.testing.assert_allclose(to_gray(rgb8), expected, atol=1e-6)
    np.testing.assert_allclose(to_gray(rgb8), cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY) / 255.0, atol=1 / 255)
    np.testing.assert_allclose(to_gray((rgb * 65535).round().astype(np.uint16)), expected, atol=1e-4)
    tensor = torch.from_numpy(rgb.transpose(2, 0, 1))[None]
    np.testing.assert_allclose(to_gray(tensor)[0, 0].numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(to_gray(gray), gray)
    with pytest.raises(ValueError, match="H x W x 3"):
        to_gray(np.zeros((4, 4, 4), np.float32))


def test_image_motion_cues_are_four_copies_of_gray():
    image = data.coffee()[:40, :56]
    cues = image_motion_cues(image)
    assert cues.shape == (4, 40, 56) and cues.dtype == np.float32
    for frame in cues:
        np.testing.assert_array_equal(frame, to_gray(image))
    assert cues.flags.writeable and cues.flags.c_contiguous


def test_frame_indices_inside_the_clip():
    assert motion_frame_indices(50, 100) == [10, 30, 70, 90]
    assert motion_frame_indices(50, 100, offsets=(-2, 2)) == [48, 52]


def test_frame_indices_at_clip_ends():
    assert motion_frame_indices(5, 100, boundary="clamp") == [0, 0, 25, 45]
    assert motion_frame_indices(95, 100, boundary="clamp") == [55, 75, 99, 99]
    assert motion_frame_indices(5, 100, boundary="wrap") == [65, 85, 25, 45]  # the public test script's rule
    assert motion_frame_indices(95, 100, boundary="wrap") == [55, 75, 15, 35]
    assert motion_frame_indices(5, 100, boundary="reflect") == [35, 15, 25, 45]
    assert motion_frame_indices(95, 100, boundary="reflect") == [55, 75, 83, 63]
    assert motion_frame_indices(3, 10, boundary="wrap") == [3, 3, 3, 3]
    assert motion_frame_indices(0, 1) == [0, 0, 0, 0]
    assert motion_frame_indices(0, 1, boundary="reflect") == [0, 0, 0, 0]


def test_frame_index_errors():
    with pytest.raises(ValueError, match="outside the clip"):
        motion_frame_indices(100, 100)
    with pytest.raises(ValueError, match="n_frames"):
        motion_frame_indices(0, 0)
    with pytest.raises(ValueError, match="boundary"):
        motion_frame_indices(0, 10, boundary="mirror")


def constant_clip(n: int, height=12, width=16) -> list[np.ndarray]:
    """Frame i is a gray frame of value i / n (float RGB), so a cue's value tells its frame index."""
    return [np.full((height, width, 3), i / n, np.float32) for i in range(n)]


def test_video_motion_cues_from_a_sequence():
    frames = constant_clip(60)
    cues = video_motion_cues(frames, 45)
    assert cues.shape == (4, 12, 16) and cues.dtype == np.float32
    np.testing.assert_allclose(cues[:, 0, 0], np.array([5, 25, 59, 59]) / 60, atol=1e-6)  # clamped at the end
    wrapped = video_motion_cues(frames, 45, boundary="wrap")
    np.testing.assert_allclose(wrapped[:, 0, 0], np.array([5, 25, 5, 25]) / 60, atol=1e-6)


def test_video_motion_cues_fetch_each_frame_once_from_a_getter():
    frames = constant_clip(30)
    calls = []

    def get_frame(i):
        calls.append(i)
        return (frames[i] * 255).round().astype(np.uint8)

    cues = video_motion_cues(get_frame, 2, n_frames=30, offsets=(-40, -20, 20, 40))
    assert sorted(calls) == [0, 22, 29]
    np.testing.assert_allclose(cues[:, 0, 0], np.array([0, 0, 22, 29]) / 30, atol=1 / 255)
    with pytest.raises(ValueError, match="n_frames is required"):
        video_motion_cues(get_frame, 2)


def test_video_motion_cues_reject_frames_of_different_sizes():
    frames = constant_clip(50)
    frames[30] = np.zeros((10, 16, 3), np.float32)
    with pytest.raises(ValueError, match="differ in size"):
        video_motion_cues(frames, 10)
    with pytest.raises(ValueError, match="holds 50 frames"):
        video_motion_cues(frames, 10, n_frames=80)
