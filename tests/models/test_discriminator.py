from __future__ import annotations

import pytest
import torch
from torch import nn

from bgmatting.models import MultiscaleDiscriminator


def _patch_size(n: int, n_layers: int) -> int:
    """pix2pixHD arithmetic: Conv4 pad 2 gives floor(n/2)+1 at stride 2 and n+1 at stride 1."""
    for _ in range(n_layers):
        n = n // 2 + 1
    return n + 2


def test_paper_setting_gives_67x67_on_512():
    discriminator = MultiscaleDiscriminator(ndf=8)  # width does not change the map size; keeps the test fast
    with torch.no_grad():
        (patch,) = discriminator(torch.rand(1, 3, 512, 512) * 2 - 1)
    assert patch.shape == (1, 1, 67, 67)


@pytest.mark.parametrize("height,width,n_layers", [(64, 64, 3), (48, 80, 3), (64, 40, 2)])
def test_patch_sizes(height, width, n_layers):
    discriminator = MultiscaleDiscriminator(ndf=4, n_layers=n_layers)
    with torch.no_grad():
        (patch,) = discriminator(torch.randn(2, 3, height, width))
    assert patch.shape == (2, 1, _patch_size(height, n_layers), _patch_size(width, n_layers))


def test_two_scales_and_pooling():
    discriminator = MultiscaleDiscriminator(ndf=4, num_d=2)
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        full, half = discriminator(x)
        # the second scale sees the 3x3 / stride 2 average (padding not counted)
        pooled = nn.functional.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        torch.testing.assert_close(half, discriminator.scales[1](pooled)[-1])
    assert full.shape == (1, 1, _patch_size(64, 3), _patch_size(48, 3))
    assert half.shape == (1, 1, _patch_size(32, 3), _patch_size(24, 3))


def test_features_for_feature_matching():
    discriminator = MultiscaleDiscriminator(ndf=4, n_layers=3, num_d=2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        patches = discriminator(x)
        features = discriminator(x, return_features=True)
    assert len(features) == 2 and all(len(f) == 3 + 2 for f in features)
    assert [f.shape[1] for f in features[0]] == [4, 8, 16, 32, 1]
    for scale_features, patch in zip(features, patches):
        torch.testing.assert_close(scale_features[-1], patch)
    always = MultiscaleDiscriminator(ndf=4, return_features=True)
    assert isinstance(always(x)[0], list)


def test_layout_no_sigmoid_and_instance_norm_without_parameters():
    discriminator = MultiscaleDiscriminator()
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0], c.padding[0]) for c in convs] == [
        (3, 64, 2, 2), (64, 128, 2, 2), (128, 256, 2, 2), (256, 512, 1, 2), (512, 1, 1, 2)
    ]
    norms = [m for m in discriminator.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 3 and not any(n.affine or n.track_running_stats for n in norms)
    assert not any(isinstance(m, nn.Sigmoid) for m in discriminator.modules())
    assert len(discriminator.state_dict()) == 10
    with torch.no_grad():
        (patch,) = MultiscaleDiscriminator(ndf=4)(torch.randn(1, 3, 32, 32))
    assert patch.min() < 0 or patch.max() > 1  # raw scores, not probabilities


def test_channel_cap_and_gradients():
    discriminator = MultiscaleDiscriminator(in_channels=4, ndf=256, n_layers=2)
    assert max(m.out_channels for m in discriminator.modules() if isinstance(m, nn.Conv2d)) == 512
    small = MultiscaleDiscriminator(in_channels=4, ndf=4, num_d=2)
    sum(p.mean() for p in small(torch.randn(2, 4, 32, 32))).backward()
    for name, p in small.named_parameters():
        assert p.grad is not None, name
        # a conv bias right before InstanceNorm is cancelled by the normalisation
        cancelled = name.endswith("bias") and not name.split(".stages.")[1].startswith(("0.", "4."))
        if not cancelled:
            assert p.grad.abs().sum() > 0, name


def test_invalid_arguments():
    with pytest.raises(ValueError, match="num_d"):
        MultiscaleDiscriminator(num_d=0)
