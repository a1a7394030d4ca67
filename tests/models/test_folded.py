"""The inference fast path of the generator: BatchNorm folded into the convolutions, fused convolutions and
depthwise output heads compute what the generator computes in eval mode (within float rounding), and the
generator itself (state dict, training, eval outputs) is untouched."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bgmatting.models import Generator
from bgmatting.models.blocks import fold_batchnorm, fused_conv
from bgmatting.models.folded import DepthwiseSum, FoldedConv, FoldedGenerator, can_fold, folded_generator

ATOL = 5e-5


def _assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal within float rounding: 5e-5 of the output's scale (raw outputs are unbounded)."""
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL * max(1.0, float(expected.abs().max())))


def _with_statistics(generator: Generator, seed: int = 0) -> Generator:
    """Non-trivial running statistics and affine parameters, so that folding has something to fold."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=g) * 0.3)
                module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=g) * 0.2)
    return generator.eval()


@pytest.mark.parametrize("motion_is_background", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_forward_equals_the_generator_in_eval_mode(tiny_config, make_inputs, motion_is_background,
                                                         channels_last):
    generator = _with_statistics(Generator(**tiny_config, motion_uses_background_feature=motion_is_background,
                                           refine_head=True, refine_hidden=5))
    inputs = make_inputs(2, 20, 28)
    if channels_last:
        generator.to(memory_format=torch.channels_last)
        inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
    folded = FoldedGenerator(generator)
    with torch.inference_mode():
        expected, got = generator.forward_with_error(*inputs), folded.forward_with_error(*inputs)
        plain_expected, plain_got = generator(*inputs), folded.forward(*inputs)
    for name in expected._fields:
        _assert_close(getattr(got, name), getattr(expected, name))
    for a, b in zip(plain_got, plain_expected):
        _assert_close(a, b)


def test_folding_leaves_the_generator_untouched_and_follows_its_weights(tiny_config, make_inputs):
    generator = _with_statistics(Generator(**tiny_config))
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    inputs = make_inputs(1, 16, 16)
    first = folded_generator(generator)
    assert folded_generator(generator) is first  # kept while the weights stay as they are
    assert generator.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in generator.state_dict().items())
    with torch.no_grad():
        generator.alpha_decoder.head.conv.bias.add_(0.5)  # an in-place change (as an optimiser step makes)
    second = folded_generator(generator)
    assert second is not first
    with torch.inference_mode():
        torch.testing.assert_close(second.forward(*inputs)[0], generator(*inputs)[0], rtol=0, atol=ATOL)


def test_instance_norm_generators_are_not_folded(tiny_config):
    assert can_fold(Generator(**tiny_config))
    assert not can_fold(Generator(**tiny_config, norm="instance"))
    assert not can_fold(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="BatchNorm"):
        FoldedGenerator(Generator(**tiny_config, norm="instance"))


def test_fold_batchnorm_equals_conv_then_norm():
    g = torch.Generator().manual_seed(1)
    conv, norm = nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6)
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(6, generator=g))
        norm.running_var.copy_(torch.rand(6, generator=g) + 0.1)
        norm.weight.copy_(torch.randn(6, generator=g))
    norm.train()  # folding always uses the running statistics
    x = torch.randn(2, 4, 9, 11, generator=g)
    weight, bias = fold_batchnorm(conv, norm)
    with torch.no_grad():
        torch.testing.assert_close(nn.functional.conv2d(x, weight, bias, padding=1), norm.eval()(conv(x)),
                                   rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match="InstanceNorm2d"):
        fold_batchnorm(conv, nn.InstanceNorm2d(6))


def test_fused_conv_equals_the_separate_ops_and_keeps_nan():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 8, 10, 12, generator=g).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(8, 8, 3, 3, generator=g), torch.randn(8, generator=g)
    residual = torch.randn(1, 8, 10, 12, generator=g)
    with torch.inference_mode():
        conv = nn.functional.conv2d(x, weight, bias, padding=1)
        torch.testing.assert_close(fused_conv(x, weight, bias, padding=1, relu=True), conv.relu(), rtol=0, atol=ATOL)
        torch.testing.assert_close(fused_conv(x, weight, bias, padding=1, residual=residual), conv + residual,
                                   rtol=0, atol=ATOL)
        x[0, :, 4, 5] = float("nan")
        assert torch.isnan(fused_conv(x, weight, bias, padding=1, relu=True)).any()  # NaN is not hidden by ReLU
    with pytest.raises(ValueError, match="cannot be combined"):
        fused_conv(x, weight, bias, relu=True, residual=residual)


@pytest.mark.parametrize("outputs", [1, 3])
def test_depthwise_heads_equal_the_dense_convolution(outputs):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 15, 17, generator=g).contiguous(memory_format=torch.channels_last)
    conv = FoldedConv(torch.randn(outputs, 8, 7, 7, generator=g), torch.randn(outputs, generator=g))
    with torch.inference_mode():
        torch.testing.assert_close(DepthwiseSum.of(conv)(x), conv(x), rtol=0, atol=1e-4)


def test_plate_features_are_reused_only_while_the_plate_is_the_same(tiny_config, make_inputs):
    generator = _with_statistics(Generator(**tiny_config))
    folded = FoldedGenerator(generator)
    first, second = make_inputs(1, 16, 20, seed=1), make_inputs(1, 16, 20, seed=2)
    second[1] = first[1].clone()  # the same plate for the next frame
    calls = []
    encode = folded._encode
    folded._encode = lambda name, x: calls.append(name) or encode(name, x)
    with torch.inference_mode():
        for inputs in (first, second, make_inputs(1, 16, 20, seed=3)):  # the third frame has another plate
            _assert_close(folded.forward(*inputs)[0], generator(*inputs)[0])
    assert calls.count("background") == 2
