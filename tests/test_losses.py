"""Loss terms against values computed by hand on tiny tensors."""
from __future__ import annotations

import pytest
import torch

from bgmatting import losses
from bgmatting.data.compositing import composite
from bgmatting.space import from_network


def test_normalized_l1_masked_mean_over_mask_area_and_batch():
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[5.0, 5.0], [5.0, 5.0]]]])  # 2 x 1 x 2 x 2
    b = torch.zeros_like(a)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    # sample 0: (|1| + |4|) / 2 = 2.5 ; sample 1: empty mask -> 0 ; batch mean over 2 samples -> 1.25
    assert losses.normalized_l1(a, b, mask).item() == pytest.approx(1.25, rel=1e-5)


def test_normalized_l1_counts_a_one_channel_mask_once_per_pixel():
    a = torch.ones(1, 3, 2, 2)
    # 12 unit errors over 4 mask pixels = 3 (the public code's normalisation of 3-channel terms)
    assert losses.normalized_l1(a, torch.zeros_like(a)).item() == pytest.approx(3.0, rel=1e-5)
    full_mask = torch.ones(1, 3, 2, 2)
    assert losses.normalized_l1(a, torch.zeros_like(a), full_mask).item() == pytest.approx(1.0, rel=1e-5)


def test_normalized_l1_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        losses.normalized_l1(torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 2, 2))


def test_sobel_on_a_horizontal_ramp():
    ramp = torch.tensor([0.0, 1.0, 2.0]).repeat(3, 1).view(1, 1, 3, 3)  # x[i, j] = j
    gx, gy = losses.sobel_gradients(ramp)
    # cross-correlation with [[1,0,-1],[2,0,-2],[1,0,-1]], zero padding: row weights 3 (edge rows) / 4 (middle)
    expected_gx = torch.tensor([[-3.0, -6.0, 3.0], [-4.0, -8.0, 4.0], [-3.0, -6.0, 3.0]])
    expected_gy = torch.tensor([[-1.0, -4.0, -5.0], [0.0, 0.0, 0.0], [1.0, 4.0, 5.0]])
    torch.testing.assert_close(gx[0, 0], expected_gx)
    torch.testing.assert_close(gy[0, 0], expected_gy)


def test_alpha_gradient_l1_hand_value():
    ramp = torch.tensor([0.0, 1.0, 2.0]).repeat(3, 1).view(1, 1, 3, 3)
    # sum|gx| = 40, sum|gy| = 20, each normalised by 9 pixels
    value = losses.alpha_gradient_l1(ramp, torch.zeros_like(ramp))
    assert value.item() == pytest.approx(60.0 / 9.0, rel=1e-5)
    assert losses.alpha_gradient_l1(ramp, ramp).item() == 0.0
    # zero padding: a constant offset still shows at the border (as in the public code)
    assert losses.alpha_gradient_l1(ramp, ramp + 0.5).item() > 0


def test_compose_l1_brings_network_space_alpha_to_0_1():
    fg = torch.full((1, 3, 1, 3), 0.8)
    bg = torch.full((1, 3, 1, 3), -0.6)
    alpha = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3)  # 0, 0.5, 1 in [0, 1]
    image = torch.tensor([-0.6, 0.1, 0.8]).view(1, 1, 1, 3).expand(1, 3, 1, 3)  # alpha F + (1 - alpha) B
    assert losses.compose_l1(image, alpha, fg, bg).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.compose_l1(image, torch.zeros_like(alpha), fg, bg).item() > 0.1  # raw 0 means alpha 0.5


def test_compose_l1_blends_as_f_times_a_plus_1_minus_a_times_b_bit_for_bit():
    torch.manual_seed(1)
    fg, bg, image = (torch.rand(2, 3, 5, 5) * 2 - 1 for _ in range(3))
    alpha, mask = torch.rand(2, 1, 5, 5) * 2 - 1, (torch.rand(2, 1, 5, 5) > 0.3).float()
    a = (alpha + 1) / 2
    expected = losses.normalized_l1(fg * a + (1 - a) * bg, image, mask)
    assert torch.equal(losses.compose_l1(image, alpha, fg, bg, mask), expected)


def test_compose_l1_is_zero_for_a_consistent_triplet_and_positive_otherwise():
    torch.manual_seed(0)
    fg, bg = torch.rand(2, 3, 4, 4) * 2 - 1, torch.rand(2, 3, 4, 4) * 2 - 1
    alpha = torch.rand(2, 1, 4, 4) * 2 - 1
    image = composite(from_network(alpha), fg, bg)
    assert losses.compose_l1(image, alpha, fg, bg).item() == pytest.approx(0.0, abs=1e-6)
    # alpha = 1 everywhere: composite = fg; error |fg - image| summed over channels / pixels
    ones = torch.ones_like(alpha)
    expected = (fg - image).abs().sum(dim=(1, 2, 3)).div(16).mean()
    assert losses.compose_l1(image, ones, fg, bg).item() == pytest.approx(expected.item(), rel=1e-5)


def test_replace_opaque_foreground_threshold():
    fg = torch.zeros(1, 3, 1, 3)
    image = torch.ones(1, 3, 1, 3)
    alpha = torch.tensor([0.9, 0.95, 0.96]).view(1, 1, 1, 3)
    out = losses.replace_opaque_foreground(fg, image, alpha, threshold=0.95)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.0, 0.0, 1.0]))


def test_lsgan_losses_hand_values():
    maps = [torch.tensor([[0.5, 0.5]])]
    assert losses.lsgan_loss(maps, True).item() == pytest.approx(0.25)
    assert losses.lsgan_loss(maps, False).item() == pytest.approx(0.25)
    real, fake = [torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 1.0])]
    # 0.5 * (MSE(real, 1) = 0.5 + MSE(fake, 0) = 1.0), with both parts
    loss = losses.discriminator_lsgan_loss(real, fake)
    assert (loss.total.item(), loss.real.item(), loss.fake.item()) == pytest.approx((0.75, 0.5, 1.0))
    # two scales average; pix2pixHD feature lists use their last entry
    two_scales = [[torch.zeros(1), torch.tensor([1.0])], [torch.zeros(1), torch.tensor([0.0])]]
    assert losses.lsgan_loss(two_scales, True).item() == pytest.approx(0.5)
    assert losses.lsgan_loss(torch.ones(2, 1, 3, 3), True).item() == pytest.approx(0.0)


def test_losses_are_differentiable_in_the_prediction():
    pred = torch.zeros(1, 1, 4, 4, requires_grad=True)
    target = torch.ones(1, 1, 4, 4)
    (losses.normalized_l1(pred, target) + losses.alpha_gradient_l1(pred, target.roll(1, -1))).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_error_map_mse_regresses_the_detached_alpha_error_in_image_units():
    alpha = torch.tensor([[[[1.0, -1.0], [0.0, 0.5]]]], requires_grad=True)  # network space
    target = torch.tensor([[[[1.0, 1.0], [-1.0, 0.5]]]])
    error = torch.tensor([[[[0.0, 0.5], [0.5, 0.25]]]], requires_grad=True)
    # actual error |alpha - target| / 2 = [0, 1, 0.5, 0]; squared differences [0, 0.25, 0, 0.0625] -> mean 0.078125
    loss = losses.error_map_mse(error, alpha, target)
    assert loss.item() == pytest.approx(0.078125)
    loss.backward()
    assert alpha.grad is None  # the target is detached: the term never moves alpha
    torch.testing.assert_close(error.grad, torch.tensor([[[[0.0, -0.25], [0.0, 0.125]]]]))
    with pytest.raises(ValueError, match="shapes differ"):
        losses.error_map_mse(error, alpha, target[..., :1])


def test_laplacian_pyramid_bands_add_back_up_to_the_input():
    x = torch.rand(2, 1, 32, 24, dtype=torch.float64)
    pyramid = losses.laplacian_pyramid(x, levels=4)
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(32, 24), (16, 12), (8, 6), (4, 3)]
    rebuilt = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        rebuilt = band + torch.nn.functional.interpolate(rebuilt, size=band.shape[-2:], mode="bilinear",
                                                         align_corners=False)
    torch.testing.assert_close(rebuilt, x)
    assert pyramid[0].abs().mean() > 0.05  # the finest band holds the noise's detail


def test_laplacian_l1_hand_values():
    x = torch.rand(1, 1, 64, 64, dtype=torch.float64)
    assert float(losses.laplacian_l1(x, x)) == 0.0
    # a constant offset lives only in the coarsest (low-pass) level, weighted 2**4 over 5 levels
    assert float(losses.laplacian_l1(x + 0.1, x)) == pytest.approx(16 * 0.1 / 5)
    # an edge moved by one pixel shows in the fine bands, where the plain L1 sees only one column
    edge = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    edge[..., 32:] = 1.0
    moved = torch.roll(edge, 1, dims=-1)
    moved[..., 0] = 0.0
    assert float(losses.laplacian_l1(moved, edge)) > 0.0
