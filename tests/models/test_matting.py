"""MattingModel: the image-space wrapper equals the generator path it replaced, bit for bit."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bgmatting.models import Generator, MattingModel, RawMatte, load_matting_model, matte_from_raw, pad_to_multiple
from bgmatting.runtime import resolve_precision
from bgmatting.space import to_network

KEYS = ("image", "background", "segmentation", "motion")


def _image_inputs(batch: int, height: int, width: int, seed: int = 0) -> list[torch.Tensor]:
    """(image, background, segmentation, motion) in image space [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, c, height, width, generator=g) for c in (3, 3, 1, 4)]


def _old_path(generator: Generator, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """What stages, evaluation, inference and export each wrote by hand: [0,1] -> [-1,1] -> generator -> matte."""
    net = [to_network(x) for x in inputs]
    alpha_raw, foreground_raw = generator(*net)
    return matte_from_raw(alpha_raw, foreground_raw, net[0])


@pytest.mark.parametrize("uses_motion", [False, True])
def test_forward_equals_the_generator_on_converted_inputs_bit_for_bit(tiny_config, uses_motion):
    generator = Generator(**tiny_config, motion_uses_background_feature=not uses_motion).eval()
    model = MattingModel(generator)
    inputs = _image_inputs(2, 16, 24)
    with torch.no_grad():
        alpha, foreground = model(*inputs)
        expected_alpha, expected_foreground = _old_path(generator, inputs)
        raw = model(*inputs, raw=True)
        alpha_raw, foreground_raw = generator(*(to_network(x) for x in inputs))
    assert torch.equal(alpha, expected_alpha) and torch.equal(foreground, expected_foreground)
    assert isinstance(raw, RawMatte)
    assert torch.equal(raw.alpha, alpha_raw) and torch.equal(raw.foreground, foreground_raw)
    assert torch.equal(raw.image, to_network(inputs[0]))
    assert model.uses_motion is uses_motion and model.motion_frames == 4


def test_training_forward_gives_the_same_losses_and_gradients(tiny_config):
    """Train mode (batch statistics) with raw outputs: the same values and weight gradients as the generator."""
    torch.manual_seed(0)
    generator = Generator(**tiny_config, motion_uses_background_feature=False)
    reference = Generator(**tiny_config, motion_uses_background_feature=False)
    reference.load_state_dict(generator.state_dict())
    inputs = _image_inputs(2, 16, 16, seed=3)
    raw = MattingModel(generator)(*inputs, raw=True)
    alpha_raw, foreground_raw = reference(*(to_network(x) for x in inputs))
    assert torch.equal(raw.alpha, alpha_raw) and torch.equal(raw.foreground, foreground_raw)
    (raw.alpha.abs().mean() + raw.foreground.square().mean()).backward()
    (alpha_raw.abs().mean() + foreground_raw.square().mean()).backward()
    for (name, p), q in zip(generator.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), name


def test_any_size_is_padded_to_a_multiple_of_four_and_cropped_back(tiny_generator):
    model = MattingModel(tiny_generator.eval())
    inputs = _image_inputs(1, 18, 22, seed=1)
    with torch.no_grad():
        alpha, foreground = model(*inputs)
        padded = [F.pad(x, (0, 2, 0, 2), mode="replicate") for x in inputs]
        reference_alpha, reference_foreground = model(*padded)
        raw = model(*inputs, raw=True)
    assert alpha.shape == (1, 1, 18, 22) and foreground.shape == (1, 3, 18, 22)
    assert torch.equal(alpha, reference_alpha[..., :18, :22])
    assert torch.equal(foreground, reference_foreground[..., :18, :22])
    assert raw.alpha.shape == (1, 1, 18, 22) and raw.image.shape == (1, 3, 18, 22)
    assert 0.0 <= float(alpha.min()) and float(alpha.max()) <= 1.0
    same = torch.zeros(1, 1, 8, 12)
    assert pad_to_multiple(same) is same and pad_to_multiple(torch.zeros(1, 1, 9, 13)).shape == (1, 1, 12, 16)


def test_foreground_is_the_image_where_alpha_is_opaque(tiny_generator):
    model = MattingModel(tiny_generator.eval())
    inputs = _image_inputs(2, 16, 16, seed=2)
    with torch.no_grad():
        raw = model(*inputs, raw=True)
        alpha, foreground = model(*inputs)
    opaque = (raw.alpha > 0.95).expand_as(foreground)  # 0.975 in [0, 1]
    assert torch.equal(foreground[opaque], inputs[0][opaque])
    assert torch.equal(alpha, ((raw.alpha + 1) * 0.5).clamp(0, 1))


def test_predict_runs_in_eval_mode_and_restores_train_mode(tiny_generator):
    model = MattingModel(tiny_generator).train()
    inputs = _image_inputs(2, 16, 16, seed=4)
    batch = dict(zip(KEYS, inputs), alpha=torch.zeros(2, 1, 16, 16))
    running_mean = tiny_generator.image_encoder.stem.norm.running_mean.clone()
    alpha, foreground = model.predict(batch)
    assert model.training and tiny_generator.training
    assert torch.equal(tiny_generator.image_encoder.stem.norm.running_mean, running_mean)  # eval: stats untouched
    model.eval()
    with torch.no_grad():
        expected = model(*inputs)
    assert torch.equal(alpha, expected[0]) and torch.equal(foreground, expected[1])
    assert not alpha.requires_grad and alpha.dtype == torch.float32


def test_channels_last_precision_matches_fp32(tiny_config):
    generator = Generator(**tiny_config).eval()
    inputs = _image_inputs(1, 16, 20, seed=5)
    with torch.no_grad():
        reference = MattingModel(generator)(*inputs)
        channels_last = MattingModel(Generator(**tiny_config).eval())
        channels_last.load_checkpoint_state(MattingModel(generator).checkpoint_state())
        channels_last.set_precision(resolve_precision("cpu", "fp32_cl"))
        output = channels_last(*inputs)
    assert next(channels_last.parameters()).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(output[0], reference[0], rtol=0, atol=1e-5)


def test_checkpoint_entries_are_the_generator_format(tmp_path, tiny_config):
    """``generator`` (no wrapper prefix) and ``model_config``: what load_generator and old checkpoints use."""
    model = MattingModel(Generator(**tiny_config))
    state = model.checkpoint_state()
    assert set(state) == {"generator", "model_config"}
    assert list(state["generator"]) == list(model.generator.state_dict())
    assert state["model_config"] == model.generator.config
    torch.save(state, tmp_path / "ckpt.pt")
    loaded = load_matting_model(tmp_path / "ckpt.pt")
    assert not loaded.training
    for key, value in model.generator.state_dict().items():
        assert torch.equal(loaded.generator.state_dict()[key], value), key
