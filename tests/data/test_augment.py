"""Train-time augmentation: ranges of every random piece, scaling to small sizes, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bgmatting.data.augment import (AdobeAugment, affine_about_centre, colour_jitter, corrupt_segmentation, crop_window,
                                    motion_cues, perturb_background, soft_segmentation_from_alpha)
from bgmatting.data.batch_augment import BackgroundPerturbation
from bgmatting.data.compositing import composite, to_gray, trimap_from_alpha


def disc(size=64, radius=18, soft=4.0, centre=None):
    yy, xx = np.mgrid[:size, :size]
    cy, cx = centre or (size / 2, size / 2)
    return np.clip((radius - np.hypot(yy - cy, xx - cx)) / soft + 0.5, 0, 1).astype(np.float32)


@pytest.fixture
def sample(rng):
    fg = rng.random((80, 96, 3), dtype=np.float32)
    bg = rng.random((80, 96, 3), dtype=np.float32)
    alpha = disc(96, 28)[8:88]
    return fg, alpha, bg


def test_crop_sizes_follow_the_public_code_and_scale():
    assert AdobeAugment().resolved_crop_sizes() == tuple(range(576, 801, 32))
    assert AdobeAugment().resolved_resize_size() == 800
    q = AdobeAugment(output_size=128)
    assert q.resolved_crop_sizes() == tuple(range(144, 201, 8))
    assert q.resolved_resize_size() == 200 and q.resolved_trimap_k() == 1
    seg = q.segmentation_parameters()
    assert seg["erode_iterations"] == (2, 5) and seg["dilate_iterations"] == (4, 7)
    assert seg["blur_sizes"] == (5, 7, 11) and seg["hole_sizes"] == (4, 6, 9, 11)
    assert q.motion_parameters()["translation_std"] == pytest.approx(1.25)
    unscaled = AdobeAugment(output_size=128, scale_pixel_parameters=False)
    assert unscaled.segmentation_parameters()["blur_sizes"] == (21, 31, 41)
    assert AdobeAugment(output_size=64, crop_sizes=[70, 80]).resolved_crop_sizes() == (70, 80)


def test_crop_window_is_centred_on_an_unknown_pixel_inside_the_image(rng):
    trimap = trimap_from_alpha(disc(100, 30), 2)
    for crop in (20, 50, 61):
        for _ in range(30):
            y, x = crop_window(trimap, crop, rng)
            assert 0 <= y <= 100 - crop and 0 <= x <= 100 - crop
            assert trimap[y + crop // 2, x + crop // 2] == 128
    assert crop_window(trimap, 100, rng) == (0, 0)  # the only window that fits
    empty = np.zeros((40, 40), np.uint8)
    y, x = crop_window(empty, 16, rng)
    assert 0 <= y <= 24 and 0 <= x <= 24


def test_background_noise_is_within_the_public_code_ranges():
    flat = np.full((64, 64, 3), 0.5, np.float32)
    means, stds = [], []
    for seed in range(40):
        d = (perturb_background(flat, np.random.default_rng(seed), noise_p=1.0) - flat) * 255
        means.append(d.mean())
        stds.append(d.std())
    assert min(means) > -7.5 and max(means) < 6.5 and max(means) - min(means) > 5  # integer means in [-7, 6]
    assert min(stds) > 1.8 and max(stds) < 5.3 and max(stds) - min(stds) > 1.5  # integer sigmas in [2, 5]


def test_background_gamma_is_near_one():
    ramp = np.linspace(0.05, 0.95, 64, dtype=np.float32)[None, :, None].repeat(4, 0).repeat(3, 2)
    gammas = []
    for seed in range(200):
        out = perturb_background(ramp, np.random.default_rng(seed), noise_p=0.0)
        gammas.append(np.log(out[0, 10, 0]) / np.log(ramp[0, 10, 0]))
        assert np.all(np.diff(out[0, :, 0]) > 0)  # monotone, no noise
    assert abs(np.mean(gammas) - 1) < 0.03 and 0.09 < np.std(gammas) < 0.15


def test_soft_segmentation_is_soft_bounded_and_covers_the_subject(rng):
    alpha = disc(128, 30)
    trimap = trimap_from_alpha(alpha, 2)
    for seed in range(5):
        s = soft_segmentation_from_alpha(alpha, trimap, np.random.default_rng(seed), erode_iterations=(2, 4),
                                         dilate_iterations=(4, 7), hole_sizes=(4, 6), blur_sizes=(5, 7))
        assert s.dtype == np.float32 and s.shape == alpha.shape
        assert s.min() >= 0 and s.max() <= 1
        assert np.any((s > 0.05) & (s < 0.95))  # soft edges
        assert s[64, 64] > 0.99 and s[0, 0] == 0  # subject centre in, far corner out
    # the full-size recipe on a 512 image: net growth (dilate > erode) and blur
    big = disc(512, 120)
    s = soft_segmentation_from_alpha(big, trimap_from_alpha(big, 5), rng, max_holes=0)
    assert ((s > 0.5) & (big < 0.5)).sum() > 0 and s[256, 256] == pytest.approx(1.0)


def test_motion_cues_are_four_gray_frames(sample, rng):
    fg, alpha, bg = sample
    still = motion_cues(fg, alpha, bg, rng, translation_std=0, rotation_std=0, scale_std=0, shear_std=0,
                        background_noise=False)
    assert still.shape == (80, 96, 4) and still.dtype == np.float32
    expected = to_gray(composite(alpha, fg, bg))
    for t in range(4):
        np.testing.assert_allclose(still[..., t], expected, atol=1e-5)
    moving = motion_cues(fg, alpha, bg, rng)
    assert moving.min() >= 0 and moving.max() <= 1
    assert np.abs(moving[..., 0] - moving[..., 1]).mean() > 1e-3


def test_affine_about_centre():
    np.testing.assert_allclose(affine_about_centre(10, 20), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    m = affine_about_centre(11, 11, degrees=90)
    np.testing.assert_allclose(m[:, :2] @ [5, 5] + m[:, 2], [5, 5], atol=1e-9)  # the centre is fixed
    e = affine_about_centre(11, 11, degrees=10, scale=(1.1, 1), shear=(0.1, 0.1), elementwise=True)
    assert e[0, 1] == 0 and e[1, 0] == 0  # element-wise product drops rotation and shear (public code)


def test_colour_jitter_identity_and_range(rng):
    img = rng.random((16, 16, 3), dtype=np.float32)
    np.testing.assert_allclose(colour_jitter(img, rng, 0, 0, 0, 0), img, atol=1e-6)
    out = colour_jitter(img, rng, 0.5, 0.5, 0.5, 0.2)
    assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1 and not np.allclose(out, img)


@pytest.mark.parametrize("aug", [AdobeAugment(output_size=64), AdobeAugment(output_size=48, background_extras=True, foreground_extras=True)])
def test_recipe_outputs_and_composite_identity(sample, aug):
    fg, alpha, bg = sample
    out = aug(fg, alpha, bg, np.random.default_rng(3))
    n = aug.output_size
    shapes = {"image": (n, n, 3), "background": (n, n, 3), "background_clean": (n, n, 3), "foreground": (n, n, 3),
              "segmentation": (n, n), "alpha": (n, n), "motion": (n, n, 4), "trimap": (n, n)}
    assert {k: v.shape for k, v in out.items()} == shapes
    for k, v in out.items():
        if k == "trimap":
            assert v.dtype == np.uint8 and set(np.unique(v)) <= {0, 128, 255}
        else:
            assert v.dtype == np.float32 and v.min() >= 0 and v.max() <= 1, k
    np.testing.assert_allclose(out["image"], composite(out["alpha"], out["foreground"], out["background_clean"]),
                               atol=1e-5)
    assert not np.allclose(out["background"], out["background_clean"])  # B' is perturbed


@pytest.mark.parametrize("flip_p", [0.0, 1.0])
def test_flip_mirrors_every_aligned_array_alike(rng, flip_p):
    """Resize and crop at the input's own 32 px, B' unperturbed: the outputs are the inputs themselves, every one
    mirrored (flip_p=1) or none (flip_p=0)."""
    fg, bg = rng.random((32, 32, 3), dtype=np.float32), rng.random((32, 32, 3), dtype=np.float32)
    alpha = disc(32, 9, centre=(12, 10))  # off-centre: its mirror image differs
    aug = AdobeAugment(output_size=32, resize_size=32, crop_sizes=(32,), flip_p=flip_p, perturb_background=False)
    out = aug(fg, alpha, bg, np.random.default_rng(0))
    mirror = np.fliplr if flip_p else np.asarray
    for key, source in (("foreground", fg), ("alpha", alpha), ("background_clean", bg), ("background", bg)):
        np.testing.assert_array_equal(out[key], mirror(source), err_msg=key)
    np.testing.assert_array_equal(out["trimap"], trimap_from_alpha(mirror(alpha), aug.resolved_trimap_k()))


def test_crop_cuts_one_window_from_every_aligned_array():
    """F and B are one picture whose first channel is alpha: whatever the random crop (and flip), the outputs keep
    F == B and alpha == F's first channel, and the trimap (cut nearest) stays on alpha's regions."""
    alpha = disc(96, 30, centre=(40, 55))
    ramp = np.linspace(0.0, 1.0, 96, dtype=np.float32)
    picture = np.stack([alpha, np.tile(ramp, (96, 1)), np.tile(ramp[:, None], (1, 96))], axis=2)
    aug = AdobeAugment(output_size=32, perturb_background=False)
    for seed in range(4):
        out = aug(picture, alpha, picture, np.random.default_rng(seed))
        np.testing.assert_array_equal(out["foreground"], out["background_clean"])
        np.testing.assert_allclose(out["alpha"], out["foreground"][..., 0], atol=1e-6)
        assert (out["alpha"][out["trimap"] == 255] > 0.9).all() and (out["alpha"][out["trimap"] == 0] < 0.1).all()


def test_recipe_is_deterministic_from_the_generator(sample):
    fg, alpha, bg = sample
    aug = AdobeAugment(output_size=32, background_extras=True, foreground_extras=True)
    a = aug(fg, alpha, bg, np.random.default_rng(11))
    b = aug(fg, alpha, bg, np.random.default_rng(11))
    c = aug(fg, alpha, bg, np.random.default_rng(12))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_recipe_accepts_config_lists():
    cfg = OmegaConf.create({"output_size": 64, "seg_blur_sizes": [21, 31], "jitter": [0.1, 0.1, 0.1, 0.0]})
    aug = AdobeAugment(**cfg)
    assert aug.seg_blur_sizes == (21, 31) and isinstance(aug.jitter, tuple)
    with pytest.raises(ValueError, match="output_size"):
        AdobeAugment(output_size=8)


def _batch(n=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    alpha = ((size / 3 - torch.hypot(yy - size / 2, xx - size / 2)) / 3 + 0.5).clamp(0, 1).float()
    alpha = alpha.expand(n, 1, size, size).clone()
    fg, bg = torch.rand(n, 3, size, size, generator=g), torch.rand(n, 3, size, size, generator=g)
    image = composite(alpha, fg, bg)
    return {"image": image, "background": bg.clone(), "background_clean": bg, "foreground": fg, "alpha": alpha,
            "motion": to_gray(image).repeat(1, 4, 1, 1)}


def test_batch_background_perturbation_shadow_only_touches_the_composite():
    batch = _batch()
    pert = BackgroundPerturbation(shadow_p=1.0, noise_p=0, jitter_p=0, misalign_p=0)
    out = pert(batch, torch.Generator().manual_seed(0))
    assert torch.equal(out["background"], batch["background"])  # the capture has no shadow
    assert torch.all(out["background_clean"] <= batch["background_clean"] + 1e-6)
    assert (out["background_clean"] < batch["background_clean"] - 1e-4).any()
    torch.testing.assert_close(out["image"], composite(out["alpha"], out["foreground"], out["background_clean"]))
    assert torch.all(out["motion"] <= batch["motion"] + 1e-6)


def test_batch_background_perturbation_ranges_and_determinism():
    batch = _batch(n=4)
    pert = BackgroundPerturbation(shadow_p=0, noise_p=1.0, jitter_p=1.0, misalign_p=1.0)
    a = pert(batch, torch.Generator().manual_seed(5))
    b = pert(batch, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["background"].shape == batch["background"].shape
    assert a["background"].min() >= 0 and a["background"].max() <= 1
    assert not torch.allclose(a["background"], batch["background"])
    assert torch.equal(a["image"], batch["image"]) and torch.equal(a["background_clean"], batch["background_clean"])
    off = BackgroundPerturbation(shadow_p=0, noise_p=0, jitter_p=0, misalign_p=0)(batch, torch.Generator())
    assert torch.equal(off["background"], batch["background"])


def test_segmentation_corruption_cuts_parts_adds_blobs_and_spreads(rng):
    alpha = disc(96, 30)
    seg = alpha.copy()
    only = dict(missing_p=0.0, extra_p=0.0, halo_p=0.0, shift_p=0.0)
    assert np.array_equal(corrupt_segmentation(seg, alpha, rng, **only), seg)
    missing = corrupt_segmentation(seg, alpha, np.random.default_rng(1), **{**only, "missing_p": 1.0})
    assert missing.sum() < 0.97 * seg.sum() and (missing <= seg + 1e-6).all()  # only removes, on the subject
    extra = corrupt_segmentation(seg, alpha, np.random.default_rng(2), **{**only, "extra_p": 1.0})
    assert (extra >= seg - 1e-6).all() and extra.sum() > seg.sum()  # only adds
    halo = corrupt_segmentation(seg, alpha, np.random.default_rng(3), **{**only, "halo_p": 1.0})
    assert (halo[alpha == 0] > 0.05).sum() > (seg[alpha == 0] > 0.05).sum()  # spreads past the subject
    shifted = corrupt_segmentation(seg, alpha, np.random.default_rng(4), **{**only, "shift_p": 1.0})
    assert not np.allclose(shifted, seg) and abs(shifted.sum() - seg.sum()) < 0.1 * seg.sum()
    for out in (missing, extra, halo, shifted):
        assert out.dtype == np.float32 and 0.0 <= out.min() <= out.max() <= 1.0


def test_recipe_with_corruption_and_scale_range_is_deterministic_and_off_by_default(sample):
    fg, alpha, bg = sample
    plain = AdobeAugment(output_size=48)
    assert plain.scale_range is None and not plain.seg_corruption  # the public code's recipe unless asked
    varied = AdobeAugment(output_size=48, seg_corruption=True, scale_range=(0.5, 1.5))
    a, b = varied(fg, alpha, bg, np.random.default_rng(7)), varied(fg, alpha, bg, np.random.default_rng(7))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    sizes = {varied._sample_resize_size(np.random.default_rng(i)) for i in range(40)}
    n = varied.resolved_resize_size()
    assert min(sizes) < n < max(sizes) and min(sizes) >= 48 and max(sizes) <= round(1.5 * n)
    assert a["image"].shape == (48, 48, 3) and a["segmentation"].shape == (48, 48)


def test_static_motion_share_gives_the_still_images_cues(sample):
    fg, alpha, bg = sample
    assert AdobeAugment().motion_static_p == 0.0  # the paper's moving cues unless asked
    still = AdobeAugment(output_size=48, motion_static_p=1.0)(fg, alpha, bg, np.random.default_rng(3))
    expected = np.repeat(to_gray(still["image"])[:, :, None], 4, axis=2)
    np.testing.assert_allclose(still["motion"], expected, atol=1e-6)
    moving = AdobeAugment(output_size=48)(fg, alpha, bg, np.random.default_rng(3))
    assert np.abs(moving["motion"] - np.repeat(to_gray(moving["image"])[:, :, None], 4, axis=2)).max() > 0.05
