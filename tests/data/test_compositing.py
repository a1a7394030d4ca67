"""Compositing identities, trimaps from alpha, background fitting."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bgmatting.data.compositing import composite, cut_and_resize, fit_background, odd, to_gray, trimap_from_alpha


@pytest.fixture
def arrays(rng):
    fg = rng.random((9, 11, 3), dtype=np.float32)
    bg = rng.random((9, 11, 3), dtype=np.float32)
    alpha = rng.random((9, 11), dtype=np.float32)
    return fg, bg, alpha


def test_composite_identities(arrays):
    fg, bg, alpha = arrays
    np.testing.assert_allclose(composite(np.ones_like(alpha), fg, bg), fg, atol=1e-6)
    np.testing.assert_allclose(composite(np.zeros_like(alpha), fg, bg), bg, atol=1e-6)
    out = composite(alpha, fg, bg)
    np.testing.assert_allclose(out, alpha[..., None] * fg + (1 - alpha[..., None]) * bg, atol=1e-6)
    np.testing.assert_allclose(composite(alpha[..., None], fg, bg), out, atol=1e-6)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    # F == B gives B whatever alpha is
    np.testing.assert_allclose(composite(alpha, bg, bg), bg, atol=1e-6)
    # a colour background broadcasts over the image
    green = np.float32([0.0, 1.0, 0.0])
    np.testing.assert_allclose(composite(alpha, fg, green), composite(alpha, fg, np.broadcast_to(green, fg.shape)))


def test_composite_torch_matches_numpy_and_broadcasts(arrays):
    fg, bg, alpha = arrays
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]  # noqa: E731
    out = composite(t(alpha[..., None]), t(fg), t(bg))
    assert out.shape == (1, 3, 9, 11)
    np.testing.assert_allclose(out[0].numpy().transpose(1, 2, 0), composite(alpha, fg, bg), atol=1e-6)


def test_cut_and_resize_pads_past_the_border_and_picks_the_interpolation(rng):
    image = rng.random((10, 12, 3), dtype=np.float32)
    np.testing.assert_array_equal(cut_and_resize(image, (2, 3, 4, 5), (4, 5)), image[2:6, 3:8])  # no resize
    padded = cut_and_resize(image, (6, 8, 8, 8), (8, 8))  # runs past the bottom and right: zeros there
    np.testing.assert_array_equal(padded[:4, :4], image[6:, 8:])
    assert not padded[4:].any() and not padded[:, 4:].any()
    trimap = np.repeat(np.uint8([0, 128, 255]), 4)[None].repeat(12, axis=0)  # 12 x 12
    small = cut_and_resize(trimap, (0, 0, 12, 12), (6, 6), nearest=True)
    assert small.dtype == np.uint8 and set(np.unique(small)) == {0, 128, 255}
    halved = cut_and_resize(image, (0, 0, 10, 12), (5, 6))  # shrinking both sides: area = 2 x 2 means
    np.testing.assert_allclose(halved[0, 0], image[:2, :2].mean(axis=(0, 1)), atol=1e-6)
    single = cut_and_resize(image[:, :, :1], (0, 0, 10, 12), (20, 24))
    assert single.shape == (20, 24, 1)


def test_to_gray_numpy_and_torch_agree(arrays):
    fg, _, _ = arrays
    g = to_gray(fg)
    assert g.shape == (9, 11)
    gt = to_gray(torch.from_numpy(fg.transpose(2, 0, 1).copy())[None])
    assert gt.shape == (1, 1, 9, 11)
    np.testing.assert_allclose(gt[0, 0].numpy(), g, atol=1e-5)
    np.testing.assert_allclose(to_gray(np.full((2, 2, 3), 0.3, np.float32)), 0.3, atol=1e-6)


def _disc(size=64, radius=18, soft=4):
    yy, xx = np.mgrid[:size, :size]
    return np.clip((radius - np.hypot(yy - size / 2, xx - size / 2)) / soft + 0.5, 0, 1).astype(np.float32)


def test_trimap_from_alpha_brackets_the_fractional_region():
    alpha = _disc()
    exact = trimap_from_alpha(alpha, k=0)
    assert exact.dtype == np.uint8 and set(np.unique(exact)) == {0, 128, 255}
    assert np.array_equal(exact == 255, alpha == 1) and np.array_equal(exact == 0, alpha == 0)
    t = trimap_from_alpha(alpha, k=5)
    assert set(np.unique(t)) <= {0, 128, 255}
    assert np.all(alpha[t == 255] == 1) and np.all(alpha[t == 0] == 0)  # known regions are right
    assert np.all(t[(alpha > 0) & (alpha < 1)] == 128)  # every fractional pixel is unknown
    assert (t == 128).sum() > (exact == 128).sum()  # the band grew
    assert (trimap_from_alpha(alpha, k=8) == 128).sum() > (t == 128).sum()


def test_fit_background_upscales_small_then_crops():
    bg = np.random.default_rng(1).random((10, 20, 3), dtype=np.float32)
    out = fit_background(bg, 40, 30)  # ratio max(30/20, 40/10) = 4 -> 40 x 80, crop 40 x 30
    assert out.shape == (40, 30, 3)
    assert out.min() >= 0 and out.max() <= 1
    big = np.random.default_rng(2).random((50, 60, 3), dtype=np.float32)
    np.testing.assert_array_equal(fit_background(big, 20, 30), big[:20, :30])  # public code: top-left crop
    np.testing.assert_array_equal(fit_background(big, 20, 30, position=(1.0, 1.0)), big[30:, 30:])
    flat = np.full((5, 5, 3), 0.25, np.float32)
    np.testing.assert_allclose(fit_background(flat, 17, 23), 0.25, atol=1e-5)


def test_odd_kernel_sizes():
    assert [odd(v) for v in (21, 31, 41)] == [21, 31, 41]
    assert [odd(v * 0.25, 3) for v in (21, 31, 41)] == [5, 7, 11]
    assert odd(0.2, 3) == 3
