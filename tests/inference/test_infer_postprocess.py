"""The original post-process: largest connected component of alpha > 0.05, F = I where alpha > 0.975,
F = 0 where alpha <= 0.01."""
from __future__ import annotations

import numpy as np
import pytest

from bgmatting.inference.postprocess import (
    foreground_cleanup,
    keep_largest_component,
    largest_component_mask,
    postprocess_matte,
)


def test_largest_component_keeps_the_biggest_blob_only():
    alpha = np.zeros((20, 20), np.float32)
    alpha[2:10, 2:10] = 0.8  # 64 px
    alpha[14:17, 14:17] = 1.0  # 9 px
    out = keep_largest_component(alpha)
    np.testing.assert_array_equal(out[2:10, 2:10], alpha[2:10, 2:10])
    assert out[14:17, 14:17].sum() == 0


def test_components_are_eight_connected_and_thresholded_at_005():
    alpha = np.zeros((10, 10), np.float32)
    alpha[1:4, 1:4] = 0.5
    alpha[4, 4] = 0.5  # touches the block diagonally: same component
    alpha[6:9, 6:9] = 0.5
    alpha[5, 5] = 0.04  # too faint to link (5,5) to the second block
    mask = largest_component_mask(alpha > 0.05)
    assert mask.sum() == 10 and mask[4, 4]
    out = keep_largest_component(alpha)
    assert out[5, 5] == 0  # faint pixels outside the component are zeroed, as in the original


def test_component_threshold_is_strict():
    """A pixel at exactly 0.05 does not link two blocks: the larger (10 px) is kept alone, the link zeroed."""
    alpha = np.zeros((10, 10), np.float32)
    alpha[1:4, 1:4] = alpha[4, 4] = 0.5
    alpha[6:9, 6:9] = 0.5
    alpha[5, 5] = 0.05
    out = keep_largest_component(alpha)
    assert out[5, 5] == 0 and out[6:9, 6:9].sum() == 0
    np.testing.assert_array_equal(out[:5, :5], alpha[:5, :5])


def test_no_component_gives_zero_alpha():
    alpha = np.full((6, 6), 0.03, np.float32)
    assert keep_largest_component(alpha).sum() == 0


def test_foreground_rules_and_their_boundaries():
    alpha = np.array([[0.0, 0.01, 0.0100001, 0.5, 0.975, 0.9750001]], np.float32)
    fg = np.full((1, 6, 3), 0.3, np.float32)
    image = np.full((1, 6, 3), 0.9, np.float32)
    out = foreground_cleanup(fg, alpha, image)
    np.testing.assert_array_equal(out[0, :, 0], np.array([0, 0, 0.3, 0.3, 0.3, 0.9], np.float32))
    assert fg[0, 0, 0] == 0.3  # the input is not modified
    without_image = foreground_cleanup(fg, alpha)
    np.testing.assert_array_equal(without_image[0, :, 0], np.array([0, 0, 0.3, 0.3, 0.3, 0.3], np.float32))


def test_postprocess_order_component_then_clear():
    alpha = np.zeros((12, 12), np.float32)
    alpha[1:7, 1:7] = 1.0
    alpha[9:11, 9:11] = 0.6  # small blob: removed, so its F must be cleared too
    fg = np.full((12, 12, 3), 0.4, np.float32)
    image = np.full((12, 12, 3), 0.7, np.float32)
    a, f = postprocess_matte(alpha, fg, image)
    assert a[9:11, 9:11].sum() == 0 and f[9:11, 9:11].sum() == 0
    np.testing.assert_array_equal(f[1:7, 1:7], image[1:7, 1:7])  # opaque: F = I
    assert f[0, 0].sum() == 0
    a2, _ = postprocess_matte(alpha, fg, image, largest_component=False)
    np.testing.assert_array_equal(a2, alpha)


@pytest.mark.parametrize("components", [1, 2])
def test_in_place_clean_up_equals_the_copying_one(components):
    rng = np.random.default_rng(1)
    alpha = np.zeros((20, 24), np.float32)
    alpha[2:12, 3:15] = rng.uniform(0.0, 1.0, (10, 12))  # some pixels at or below 0.05 and 0.01 inside
    if components == 2:
        alpha[15:18, 18:21] = 0.7
    foreground, image = rng.random((20, 24, 3)).astype(np.float32), rng.random((20, 24, 3)).astype(np.float32)
    expected = postprocess_matte(alpha, foreground, image)
    a, f = alpha.copy(), foreground.copy()
    got = postprocess_matte(a, f, image, copy=False)
    assert got[0] is a and got[1] is f  # written in place
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    np.testing.assert_array_equal(expected[0], alpha * largest_component_mask(alpha > 0.05))
