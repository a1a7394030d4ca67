"""The original-mode crop: the bounding-box rule, crop/resize, uncrop, and the full-mode processing size."""
from __future__ import annotations

import numpy as np
import pytest

from bgmatting.inference.crop import CropBox, crop_to_network, processing_size, subject_box, uncrop


def _mask(height, width, rows, cols):
    mask = np.zeros((height, width), np.float32)
    mask[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = 1.0
    return mask


def test_box_is_square_anchored_at_subject_top_left_plus_ten_percent():
    # Subject rows 20..59 (extent 39), columns 50..79 (extent 29): side = 39.
    # top = 20 - 3.9 = 16.1, left = 50 - 3.9 = 46.1, bottom = 20 + 42.9 = 62.9, right = 50 + 42.9 = 92.9.
    box = subject_box(_mask(100, 200, (20, 59), (50, 79)))
    assert box == CropBox(top=16, left=46, height=47, width=47)


def test_wide_subject_uses_its_width_as_side():
    # rows 10..19 (extent 9), cols 30..129 (extent 99): side 99.
    # top = 10 - 9.9 = 0.1, bottom = 10 + 108.9 clipped to 100 -> height 99.9;
    # left = 30 - 9.9 = 20.1, right = 30 + 108.9 = 138.9 -> width 118.8.
    box = subject_box(_mask(100, 300, (10, 19), (30, 129)))
    assert box == CropBox(top=0, left=20, height=100, width=119)


def test_box_is_clipped_to_the_frame_and_keeps_the_last_row():
    # A subject touching the bottom-right corner: the box ends at the frame's last row and column.
    box = subject_box(_mask(50, 60, (30, 49), (45, 59)))
    rows, cols = box.slices
    assert rows.stop == 50 and cols.stop == 60
    assert box.top == round(30 - 1.9) and box.left == round(45 - 1.9)


def test_threshold_and_empty_segmentation():
    soft = np.zeros((40, 40), np.float32)
    soft[10:20, 10:20] = 0.9
    soft[30:35, 30:35] = 0.1  # below the threshold: not subject
    assert subject_box(soft, threshold=0.2) == subject_box((soft > 0.2).astype(np.float32))
    assert subject_box(soft, threshold=0.0) != subject_box(soft, threshold=0.2)
    assert subject_box(np.zeros((10, 10), np.float32)) is None
    with pytest.raises(ValueError):
        subject_box(np.zeros((4, 4, 3)))


def test_crop_uncrop_round_trip_without_resize_is_exact(rng):
    image = rng.random((40, 50, 3)).astype(np.float32)
    box = CropBox(5, 7, 20, 24)
    patch = crop_to_network(image, box, (20, 24))
    np.testing.assert_array_equal(patch, image[5:25, 7:31])
    back = uncrop(patch, box, (40, 50))
    np.testing.assert_array_equal(back[5:25, 7:31], image[5:25, 7:31])
    outside = np.ones((40, 50), bool)
    outside[5:25, 7:31] = False
    assert np.all(back[outside] == 0)


def test_crop_uncrop_round_trip_through_network_size_on_smooth_content():
    ys, xs = np.mgrid[0:60, 0:80].astype(np.float32)
    alpha = 0.5 + 0.5 * np.sin(xs / 9.0) * np.cos(ys / 7.0)
    box = CropBox(10, 20, 37, 41)
    net = crop_to_network(alpha, box, 64)
    assert net.shape == (64, 64)
    back = uncrop(net, box, alpha.shape)
    rows, cols = box.slices
    assert np.abs(back[rows, cols] - alpha[rows, cols])[2:-2, 2:-2].max() < 0.02
    assert back[: box.top].sum() == 0 and back[:, box.left + box.width :].sum() == 0


def test_crop_keeps_channels():
    cues = np.ones((30, 30, 4), np.float32)
    assert crop_to_network(cues, CropBox(0, 0, 30, 30), 16).shape == (16, 16, 4)
    single = np.ones((30, 30, 1), np.float32)
    assert crop_to_network(single, CropBox(0, 0, 30, 30), 16).shape == (16, 16, 1)
    assert uncrop(np.ones((16, 16, 1), np.float32), CropBox(2, 2, 10, 10), (30, 30)).shape == (30, 30, 1)


@pytest.mark.parametrize(
    "height, width, long_side, expected",
    [(1080, 1920, 512, (288, 512)), (1080, 1920, None, (1080, 1920)), (50, 75, 0, (52, 76)), (7, 9, 4, (4, 4))],
)
def test_processing_size_is_a_multiple_of_four(height, width, long_side, expected):
    assert processing_size(height, width, long_side) == expected
