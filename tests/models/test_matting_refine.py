"""MattingModel with a refiner: base size rule, refine options, coarse outputs, checkpoint entries with and without a refiner."""
from __future__ import annotations

import pytest
import torch

from bgmatting.models import (
    CheckpointError,
    Generator,
    MattingModel,
    Refiner,
    load_matting_model,
    load_refiner,
    matte_from_raw,
    pad_to_multiple,
    to_base_resolution,
)
from bgmatting.runtime import resolve_precision
from bgmatting.space import to_network


def _image_inputs(batch: int, height: int, width: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, c, height, width, generator=g) for c in (3, 3, 1, 4)]


def _refining_model(tiny_config, **options) -> MattingModel:
    refiner = Refiner(4, channels=(6, 5, 4))
    with torch.no_grad():
        refiner.fine_stage[-1].weight.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(0))
    return MattingModel(Generator(**tiny_config, refine_head=True, refine_hidden=4), refiner, **options)


def test_without_refiner_the_model_is_the_padded_generator(tiny_generator):
    model = MattingModel(tiny_generator).eval()
    inputs = _image_inputs(2, 18, 13)
    with torch.no_grad():
        alpha, foreground = model(*inputs)
        raw = model(*inputs, raw=True)
        alpha_raw, foreground_raw = tiny_generator(*(to_network(pad_to_multiple(x)) for x in inputs))
    assert torch.equal(raw.alpha, alpha_raw[..., :18, :13])
    assert torch.equal(raw.foreground, foreground_raw[..., :18, :13])
    assert raw.coarse_alpha is None and raw.error is None and raw.refined is None
    expected = matte_from_raw(raw.alpha, raw.foreground, raw.image)
    assert torch.equal(alpha, expected[0]) and torch.equal(foreground, expected[1])
    assert model.config == {"generator": tiny_generator.config}
    assert set(model.checkpoint_state()) == {"generator", "model_config"}


def test_base_size_rule(tiny_config):
    model = _refining_model(tiny_config)
    assert model.base_size(1080, 1920) == (288, 512)  # automatic: long side 512
    assert model.base_size(2160, 3840) == (288, 512)
    assert model.base_size(256, 192) == (256, 192)  # frames up to 512 run the base at full resolution
    model.set_refine_options(base_long_side=128)
    assert model.base_size(256, 192) == (128, 96)
    model.set_refine_options(downsample_ratio=0.25)
    assert model.base_size(1080, 1920) == (272, 480) and model.base_size(8, 12) == (4, 4)
    assert model.refine_options == dict(
        downsample_ratio=0.25, base_long_side=512, refine_mode="sampling", refine_pixels=80_000, refine_threshold=0.1
    )


def test_refine_options_are_checked(tiny_config, tiny_generator):
    model = _refining_model(tiny_config)
    for bad, match in (
        (dict(downsample_ratio=1.5), "downsample_ratio"),
        (dict(refine_mode="top"), "refine_mode"),
        (dict(refine_threshold=2.0), "refine_threshold"),
        (dict(base_long_side=2), "base_long_side"),
    ):
        with pytest.raises(ValueError, match=match):
            model.set_refine_options(**bad)
    with pytest.raises(ValueError, match="needs a refiner"):
        MattingModel(tiny_generator, downsample_ratio=0.5)


def test_coarse_image_is_the_base_resolution_of_the_image(tiny_config):
    model = _refining_model(tiny_config, downsample_ratio=0.5).eval()
    inputs = _image_inputs(1, 29, 38)
    with torch.no_grad():
        raw = model(*inputs, raw=True)
    expected = to_network(to_base_resolution(inputs[0], raw.coarse_alpha.shape[-2:]))
    torch.testing.assert_close(raw.coarse_image, expected, rtol=0, atol=1e-6)


def test_checkpoint_round_trip_with_refiner(tiny_config, tmp_path):
    model = _refining_model(tiny_config, downsample_ratio=0.5, refine_mode="thresholding", refine_threshold=0.3).eval()
    state = model.checkpoint_state()
    assert set(state) == {"generator", "model_config", "refiner", "refiner_config", "refine_options"}
    assert model.config == {
        "generator": state["model_config"],
        "refiner": state["refiner_config"],
        "refine_options": state["refine_options"],
    }
    path = tmp_path / "refine.ckpt"
    torch.save({**state, "step": 3}, path)
    loaded = load_matting_model(path)
    assert loaded.config == model.config and not loaded.training
    inputs = _image_inputs(1, 26, 30)
    with torch.no_grad():
        for got, want in zip(loaded(*inputs, raw=True), model(*inputs, raw=True)):
            assert torch.equal(got, want)
    assert load_matting_model(path, refine_options={"refine_mode": "full"}).refine_mode == "full"
    assert load_refiner(path).config == model.refiner.config
    assert load_refiner(state["refiner"]).config == model.refiner.config  # bare state dict: config inferred

    other = _refining_model(tiny_config)
    other.load_checkpoint_state(state)
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))


def test_checkpoint_round_trip_without_refiner(tiny_generator, tmp_path):
    model = MattingModel(tiny_generator).eval()
    path = tmp_path / "plain.ckpt"
    torch.save(model.checkpoint_state(), path)
    loaded = load_matting_model(path)
    assert loaded.refiner is None and loaded.config == model.config
    inputs = _image_inputs(1, 16, 20)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(loaded(*inputs), model(*inputs)))
    with pytest.raises(CheckpointError, match="no refiner"):
        load_matting_model(path, refine_options={"refine_mode": "full"})


def test_checkpoint_entries_must_match_the_model(tiny_config, tiny_generator, tmp_path):
    refining = _refining_model(tiny_config)
    plain = MattingModel(tiny_generator)
    with pytest.raises(ValueError, match="has no refiner entry but the model has a refiner"):
        refining.load_checkpoint_state(plain.checkpoint_state())
    with pytest.raises(ValueError, match="has a refiner entry but the model has none"):
        plain.load_checkpoint_state(refining.checkpoint_state())
    state = refining.checkpoint_state()
    state["refiner_config"] = {"hidden_channels": 5, "channels": [6, 5, 4]}
    path = tmp_path / "mismatch.ckpt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="mismatch.ckpt"):
        load_matting_model(path)


@pytest.mark.parametrize("refine_mode", ["sampling", "full"])
@pytest.mark.parametrize("uses_motion", [True, False])
def test_fast_inference_equals_the_unoptimised_path(tiny_config, refine_mode, uses_motion):
    g = torch.Generator().manual_seed(4)
    generator = Generator(**tiny_config, refine_head=True, refine_hidden=4,
                          motion_uses_background_feature=not uses_motion, rng=g)
    model = _refining_model(tiny_config, refine_mode=refine_mode, refine_pixels=16 * 9, base_long_side=20)
    model.generator = generator
    model.eval()
    model.set_precision(resolve_precision("cpu", "fp32_cl"))
    inputs = [torch.rand(2, c, 38, 53, generator=g) for c in (3, 3, 1, 4)]  # not multiples of 4: padded
    with torch.inference_mode():
        expected = model(*inputs)
        got = model.set_fast_inference(True)(*inputs)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    raw = model(*inputs, raw=True)  # raw outputs and gradients never take the fast path
    assert raw.coarse_alpha is not None and raw.alpha.requires_grad


def test_fast_inference_of_a_plain_and_an_instance_norm_generator(tiny_config):
    g = torch.Generator().manual_seed(5)
    inputs = [torch.rand(1, c, 24, 20, generator=g) for c in (3, 3, 1, 4)]
    for norm in ("batch", "instance"):
        model = MattingModel(Generator(**tiny_config, norm=norm, rng=g)).eval()
        with torch.inference_mode():
            expected = model(*inputs)
            got = model.set_fast_inference(True)(*inputs)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
