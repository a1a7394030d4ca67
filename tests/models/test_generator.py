from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bgmatting.models import Generator, matte_from_raw
from bgmatting.space import from_network, to_network


def _norm_layers(module: nn.Module):
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("batch,height,width", [(1, 16, 16), (2, 32, 24), (1, 20, 44)])
@pytest.mark.parametrize("train", [False, True])
def test_output_shapes_and_ranges(tiny_generator, make_inputs, batch, height, width, train):
    tiny_generator.train(train)
    with torch.no_grad():
        alpha_raw, foreground_raw = tiny_generator(*make_inputs(batch, height, width))
    assert alpha_raw.shape == (batch, 1, height, width)
    assert foreground_raw.shape == (batch, 3, height, width)
    assert alpha_raw.min() >= -1 and alpha_raw.max() <= 1
    assert torch.isfinite(foreground_raw).all()
    assert alpha_raw.std() > 0 and foreground_raw.std() > 0


def test_rejects_bad_inputs(tiny_generator, make_inputs):
    image, background, segmentation, motion = make_inputs(1, 16, 16)
    with pytest.raises(ValueError, match="multiples of 4"):
        tiny_generator(*make_inputs(1, 18, 16))
    with pytest.raises(ValueError, match="motion must be B x 4"):
        tiny_generator(image, background, segmentation, motion[:, :3])
    with pytest.raises(ValueError, match="segmentation must be B x 1"):
        tiny_generator(image, background, background, motion)
    with pytest.raises(ValueError, match="background has shape"):
        tiny_generator(image, background[:, :, :12], segmentation, motion)
    with pytest.raises(ValueError, match="ngf"):
        Generator(ngf=0)


def test_motion_frames_argument(make_inputs):
    generator = Generator(ngf=8, nf_part=8, n_blocks1=1, n_blocks2=1, motion_frames=2).eval()
    assert generator.motion_encoder.stem.conv.in_channels == 2
    with torch.no_grad():
        alpha_raw, _ = generator(*make_inputs(1, 16, 16, motion_frames=2))
    assert alpha_raw.shape == (1, 1, 16, 16)


def test_bug_mode_ignores_motion_and_fixed_mode_uses_it(tiny_config, make_inputs):
    image, background, segmentation, motion = make_inputs(1, 16, 16)
    other_motion = -motion
    for flag, should_change in ((True, False), (False, True)):
        generator = Generator(**tiny_config, motion_uses_background_feature=flag).eval()
        with torch.no_grad():
            a1, f1 = generator(image, background, segmentation, motion)
            a2, f2 = generator(image, background, segmentation, other_motion)
        changed = not (torch.equal(a1, a2) and torch.equal(f1, f2))
        assert changed == should_change, f"motion_uses_background_feature={flag}"


def test_bug_mode_equals_fixed_wiring_fed_the_background(tiny_config, make_inputs):
    """The original's wiring: the motion selector sees the background encoder's features. A fixed-wiring model
    whose motion encoder is a copy of the background encoder, fed M = B', must give exactly the bug-mode output."""
    buggy = Generator(**tiny_config, motion_uses_background_feature=True).eval()
    fixed = Generator(**tiny_config, motion_frames=3, motion_uses_background_feature=False).eval()
    shared = {k: v for k, v in buggy.state_dict().items() if not k.startswith("motion_encoder.")}
    fixed.load_state_dict(shared, strict=False)
    fixed.motion_encoder.load_state_dict(buggy.background_encoder.state_dict())
    image, background, segmentation, motion = make_inputs(1, 16, 20)
    with torch.no_grad():
        expected = buggy(image, background, segmentation, motion)
        got = fixed(image, background, segmentation, background)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-6)


def _learnable_grads(generator: Generator, make_inputs):
    generator.train()
    alpha_raw, foreground_raw = generator(*make_inputs(2, 16, 20))
    (alpha_raw.square().mean() + foreground_raw.square().mean()).backward()
    return {name: p.grad for name, p in generator.named_parameters()}


def test_gradient_flow_bug_mode(tiny_config, make_inputs):
    generator = Generator(**tiny_config, motion_uses_background_feature=True)
    grads = _learnable_grads(generator, make_inputs)
    for name, grad in grads.items():
        if name.startswith("motion_encoder."):
            assert grad is None, name
            continue
        assert grad is not None and torch.isfinite(grad).all(), name
        if not name.endswith("conv.bias") and not name.endswith("conv1.bias") and not name.endswith("conv2.bias"):
            assert grad.abs().sum() > 0, name  # conv biases in front of train-mode BN get ~0 by construction
    assert not any(p.requires_grad for p in generator.motion_encoder.parameters())
    assert all(p.requires_grad for n, p in generator.named_parameters() if not n.startswith("motion_encoder."))


def test_gradient_flow_fixed_mode(tiny_config, make_inputs):
    generator = Generator(**tiny_config, motion_uses_background_feature=False)
    grads = _learnable_grads(generator, make_inputs)
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    motion_weights = [n for n in grads if n.startswith("motion_encoder.") and n.endswith("weight")]
    assert motion_weights and all(grads[n].abs().sum() > 0 for n in motion_weights)


def test_train_updates_running_stats_eval_does_not(tiny_generator, make_inputs):
    inputs = make_inputs(2, 16, 16)
    before = {k: v.clone() for k, v in tiny_generator.state_dict().items()}
    tiny_generator.eval()
    with torch.no_grad():
        first = tiny_generator(*inputs)
        second = tiny_generator(*inputs)
    assert all(torch.equal(before[k], v) for k, v in tiny_generator.state_dict().items())
    for a, b in zip(first, second):
        assert torch.equal(a, b)

    tiny_generator.train()
    with torch.no_grad():
        trained = tiny_generator(*inputs)
    after = tiny_generator.state_dict()
    changed = {k for k in after if "running_mean" in k and not torch.equal(before[k], after[k])}
    expected = {k for k in after if "running_mean" in k and not k.startswith("motion_encoder.")}
    assert changed == expected  # the skipped motion encoder keeps its statistics in bug mode
    assert not torch.allclose(trained[1], first[1])  # batch statistics differ from running statistics


def test_default_init_is_the_originals():
    generator = Generator()
    norm_weights = torch.cat([m.weight.detach() for m in _norm_layers(generator)])
    assert norm_weights.numel() > 5000
    assert abs(norm_weights.mean().item() - 1.0) < 0.02
    assert abs(norm_weights.std().item() - 0.2) < 0.02
    for module in generator.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
            bound = math.sqrt(2.0) * math.sqrt(6.0 / (fan_in + fan_out))
            assert module.weight.abs().max() <= bound + 1e-6
            if module.weight.numel() > 10000:
                assert abs(module.weight.std().item() - bound / math.sqrt(3)) < 0.05 * bound
            if module.bias is not None:
                assert torch.count_nonzero(module.bias) == 0
    for module in _norm_layers(generator):
        assert torch.count_nonzero(module.bias) == 0


def test_init_is_seedable(tiny_config):
    a = Generator(**tiny_config, rng=torch.Generator().manual_seed(5)).state_dict()
    b = Generator(**tiny_config, rng=torch.Generator().manual_seed(5)).state_dict()
    c = Generator(**tiny_config, rng=torch.Generator().manual_seed(6)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["combinator.conv.weight"], c["combinator.conv.weight"])
    torch.manual_seed(3)
    d = Generator(**tiny_config).state_dict()
    torch.manual_seed(3)
    e = Generator(**tiny_config).state_dict()
    assert all(torch.equal(d[k], e[k]) for k in d)


def test_config_rebuilds_the_same_architecture(tiny_config):
    generator = Generator(**tiny_config, motion_frames=2, motion_uses_background_feature=False)
    config = generator.config
    assert config["motion_frames"] == 2 and config["motion_uses_background_feature"] is False
    rebuilt = Generator(**config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in generator.state_dict().items()}


def test_norm_options(tiny_config, make_inputs):
    inputs = make_inputs(1, 16, 16)
    instance = Generator(**{**tiny_config, "norm": "instance"})
    assert not any("norm" in k for k in instance.state_dict())
    with torch.no_grad():
        assert torch.isfinite(instance(*inputs)[1]).all()
    sync = Generator(**{**tiny_config, "norm": "sync_batch"}).eval()
    assert isinstance(sync.combinator.norm, nn.SyncBatchNorm)
    with torch.no_grad():
        assert torch.isfinite(sync(*inputs)[1]).all()
    group = Generator(**{**tiny_config, "norm": lambda channels: nn.GroupNorm(4, channels)})
    assert isinstance(group.shared_blocks[0].norm1, nn.GroupNorm)
    assert group.shared_blocks[0].norm1.weight.std() > 0  # original init applies to affine norms
    with pytest.raises(ValueError, match="unknown norm"):
        Generator(**{**tiny_config, "norm": "layer"})


def test_channels_last_matches_nchw(tiny_generator, make_inputs):
    inputs = make_inputs(1, 24, 20)
    tiny_generator.eval()
    with torch.no_grad():
        reference = tiny_generator(*inputs)
        tiny_generator.to(memory_format=torch.channels_last)
        channels_last = tiny_generator(*(x.contiguous(memory_format=torch.channels_last) for x in inputs))
    for r, c in zip(reference, channels_last):
        torch.testing.assert_close(c, r, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_channels_last_matches_fp32(tiny_generator, make_inputs):
    """bf16 keeps 8 mantissa bits. Tolerance: alpha (in [0, 1]) within 0.04 of fp32 everywhere and 0.01 on
    average; foreground within 4 % of its largest magnitude (measured here: ~0.016 and ~2 %). The raw outputs
    are compared: after the alpha > 0.975 rule a pixel near the threshold may legitimately flip between F and I."""
    inputs = make_inputs(1, 16, 16)
    tiny_generator.eval()
    with torch.no_grad():
        alpha32, fg32 = tiny_generator(*inputs)
        tiny_generator.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            alpha16, fg16 = tiny_generator(*(x.contiguous(memory_format=torch.channels_last) for x in inputs))
    assert alpha16.dtype == torch.bfloat16
    alpha_difference = (from_network(alpha16.float()) - from_network(alpha32)).abs()
    assert alpha_difference.max() < 0.04 and alpha_difference.mean() < 0.01
    assert (fg16.float() - fg32).abs().max() < 0.04 * fg32.abs().max()


def test_matte_from_raw_applies_the_opaque_rule():
    alpha_raw = torch.tensor([-1.0, 0.0, 0.94, 0.95, 0.96, 1.0]).view(1, 1, 1, 6)
    foreground_raw = torch.full((1, 3, 1, 6), -0.5)
    foreground_raw[0, 0, 0, 1] = 3.0  # out of range: must be clamped
    image = to_network(torch.full((1, 3, 1, 6), 0.9))
    alpha, foreground = matte_from_raw(alpha_raw, foreground_raw, image)
    torch.testing.assert_close(alpha.flatten(), torch.tensor([0.0, 0.5, 0.97, 0.975, 0.98, 1.0]))
    # alpha > 0.975 (raw > 0.95, strictly: raw 0.95 keeps its prediction): F is the image; elsewhere the
    # prediction mapped to [0, 1] and clamped
    torch.testing.assert_close(foreground[0, 1, 0], torch.tensor([0.25, 0.25, 0.25, 0.25, 0.9, 0.9]))
    assert foreground[0, 0, 0, 1] == 1.0
    assert alpha.shape == (1, 1, 1, 6) and foreground.shape == (1, 3, 1, 6)


# ----------------------------------------------------------------------------------------------- refine head


def test_refine_head_off_is_the_original_network(tiny_config):
    plain = Generator(**tiny_config, rng=torch.Generator().manual_seed(1))
    off = Generator(**tiny_config, refine_head=False, refine_hidden=8, rng=torch.Generator().manual_seed(1))
    assert off.config == plain.config and "refine_head" not in off.config
    assert off.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(off.state_dict()[k], v) for k, v in plain.state_dict().items())  # same init draws
    assert off.error_head is None and not off.has_refine_head
    with pytest.raises(ValueError, match="refine_head=True"):
        off.forward_with_error(*[torch.zeros(1, c, 8, 8) for c in (3, 3, 1, 4)])


def test_refine_head_adds_error_and_hidden_without_changing_alpha_and_foreground(tiny_config, make_inputs):
    plain = Generator(**tiny_config).eval()
    headed = Generator(**tiny_config, refine_head=True, refine_hidden=5).eval()
    extra = {k for k in headed.state_dict() if k not in plain.state_dict()}
    assert extra == {"error_head.conv.weight", "error_head.conv.bias"}
    assert headed.config == {**plain.config, "refine_head": True, "refine_hidden": 5}
    headed.load_state_dict(plain.state_dict(), strict=False)
    inputs = make_inputs(2, 16, 20)
    with torch.no_grad():
        alpha_raw, foreground_raw = plain(*inputs)
        out = headed.forward_with_error(*inputs)
        assert all(torch.equal(a, b) for a, b in zip(headed(*inputs), (alpha_raw, foreground_raw)))
    assert torch.equal(out.alpha_raw, alpha_raw) and torch.equal(out.foreground_raw, foreground_raw)
    assert out.error.shape == (2, 1, 16, 20) and out.hidden.shape == (2, 5, 16, 20)
    assert out.error.min() >= 0 and out.error.max() <= 1 and out.hidden.min() >= 0 and out.hidden.max() > 0


def test_refine_head_gets_gradients(tiny_config, make_inputs):
    generator = Generator(**tiny_config, refine_head=True, refine_hidden=3).train()
    out = generator.forward_with_error(*make_inputs(2, 16, 16))
    (out.error.mean() + out.hidden.mean()).backward()
    assert generator.error_head.conv.weight.grad.abs().sum() > 0
    assert generator.shared_blocks[0].conv1.weight.grad.abs().sum() > 0
