"""Checkpoint formats and the mapping to the public code's names.

Fixtures (see fixtures/README.md): ``original_state_dict_shapes.json`` lists the public code's state-dict keys and
shapes for the paper's networks; ``original_outputs_tiny.pt`` holds a tiny original-format generator and
discriminator with inputs and the outputs the public code computed from them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from bgmatting.models import (
    CheckpointError,
    Generator,
    MultiscaleDiscriminator,
    load_discriminator,
    load_generator,
    load_matting_model,
    original_to_ours,
    ours_to_original,
)
from bgmatting.models.checkpoints import infer_generator_config

FIXTURES = Path(__file__).parent / "fixtures"
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def original_shapes() -> dict:
    return json.loads((FIXTURES / "original_state_dict_shapes.json").read_text())


@pytest.fixture(scope="module")
def original_outputs() -> dict:
    return torch.load(FIXTURES / "original_outputs_tiny.pt", map_location="cpu", weights_only=True)


def _shapes(state: dict) -> dict:
    return {k: list(v.shape) for k, v in state.items()}


def _random_state(shapes: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randint(0, 100, s, generator=g) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g)
        for k, s in shapes.items()
    }


# ----------------------------------------------------------------------------------------------------- mapping


def test_default_generator_has_the_original_keys_shapes_and_size(original_shapes):
    generator = Generator()
    mapped = ours_to_original(generator.state_dict())
    assert _shapes(mapped) == original_shapes["generator"]
    assert len(mapped) == 322
    n_params = sum(p.numel() for p in generator.parameters())
    assert n_params == 17_908_420  # "17.9 M"
    original_params = sum(
        torch.Size(s).numel() for k, s in original_shapes["generator"].items() if not k.endswith(BUFFER_SUFFIXES)
    )
    assert original_params == n_params


def test_default_discriminator_has_the_original_keys(original_shapes):
    mapped = ours_to_original(MultiscaleDiscriminator().state_dict())
    assert _shapes(mapped) == original_shapes["discriminator"]
    assert sorted(mapped) == sorted(f"layer0.{i}.{p}" for i in (0, 2, 5, 8, 11) for p in ("weight", "bias"))


def test_original_state_dict_loads_into_default_generator_and_round_trips(original_shapes):
    original = _random_state(original_shapes["generator"])
    generator = Generator()
    generator.load_state_dict(original_to_ours(original), strict=True)
    back = ours_to_original(generator.state_dict())
    assert back.keys() == original.keys()
    assert all(torch.equal(back[k], original[k]) for k in original)


@pytest.mark.parametrize(
    "config",
    [
        dict(ngf=8, nf_part=8, n_blocks1=1, n_blocks2=1),
        dict(ngf=4, nf_part=6, n_blocks1=3, n_blocks2=2, motion_frames=2),
        dict(ngf=4, nf_part=4, n_blocks1=0, n_blocks2=0, norm="instance"),
    ],
)
def test_ours_original_ours_round_trip(config):
    state = Generator(**config).state_dict()
    original = ours_to_original(state)
    assert len(original) == len(state)
    back = original_to_ours(original)
    assert back.keys() == state.keys()
    assert all(back[k].shape == state[k].shape and torch.equal(back[k], state[k]) for k in state)


def test_discriminator_round_trip_and_scale_order():
    discriminator = MultiscaleDiscriminator(ndf=4, n_layers=2, num_d=3, norm="batch")
    state = discriminator.state_dict()
    original = ours_to_original(state)
    # the public code runs layer{num_D-1} on the full-resolution input
    assert torch.equal(original["layer2.0.weight"], state["scales.0.stages.0.conv.weight"])
    assert torch.equal(original["layer0.8.weight"], state["scales.2.stages.3.conv.weight"])
    assert torch.equal(original["layer1.3.running_var"], state["scales.1.stages.1.norm.running_var"])
    back = original_to_ours(original)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_unknown_keys_are_reported():
    original = ours_to_original(Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1).state_dict())
    original["model_enc1.9.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"no counterpart.*model_enc1\.9\.weight"):
        original_to_ours(original)
    with pytest.raises(CheckpointError, match="not a Background Matting state dict"):
        original_to_ours({"conv.weight": torch.zeros(1)})


# ----------------------------------------------------------------------------------------------------- numbers


def test_tiny_original_generator_reproduces_the_public_codes_outputs(original_outputs, tmp_path):
    path = tmp_path / "netG_epoch_12.pth"
    torch.save(original_outputs["generator_state_dict"], path)  # "module."-prefixed, as the released models
    generator = load_generator(path)
    assert not generator.training
    assert generator.config["ngf"] == 4 and generator.config["n_blocks1"] == 1
    with torch.no_grad():
        alpha_raw, foreground_raw = generator(*original_outputs["generator_inputs"])
    torch.testing.assert_close(alpha_raw, original_outputs["alpha_raw"], rtol=0, atol=1e-5)
    torch.testing.assert_close(foreground_raw, original_outputs["foreground_raw"], rtol=0, atol=1e-5)


def test_tiny_original_discriminator_reproduces_the_public_codes_outputs(original_outputs):
    discriminator = load_discriminator(original_outputs["discriminator_state_dict"])
    assert discriminator.config["num_d"] == 2 and discriminator.config["n_layers"] == 2
    with torch.no_grad():
        outputs = discriminator(original_outputs["discriminator_input"])
    assert len(outputs) == 2
    for got, expected in zip(outputs, original_outputs["discriminator_outputs"]):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("prefix", ["", "module."])
def test_original_format_loading(tmp_path, make_inputs, prefix):
    reference = Generator(ngf=4, nf_part=4, n_blocks1=2, n_blocks2=1).eval()
    path = tmp_path / "original.pth"
    torch.save({prefix + k: v for k, v in ours_to_original(reference.state_dict()).items()}, path)
    loaded = load_generator(path)
    assert loaded.config == reference.config
    inputs = make_inputs(1, 16, 16)
    with torch.no_grad():
        for a, b in zip(loaded(*inputs), reference(*inputs)):
            assert torch.equal(a, b)


def test_our_checkpoint_format(tmp_path, make_inputs):
    reference = Generator(ngf=4, nf_part=6, n_blocks1=1, n_blocks2=2, motion_frames=2, motion_uses_background_feature=False)
    reference.eval()
    checkpoint = {
        "generator": reference.state_dict(),
        "model_config": reference.config,
        "optimizer": {"state": {}, "param_groups": []},
        "step": 12,
    }
    path = tmp_path / "last.ckpt"
    torch.save(checkpoint, path)
    loaded = load_generator(path)
    assert loaded.config == reference.config and loaded.motion_uses_background_feature is False
    inputs = make_inputs(1, 16, 12, motion_frames=2)
    with torch.no_grad():
        for a, b in zip(loaded(*inputs), reference(*inputs)):
            assert torch.equal(a, b)
    assert load_generator(checkpoint, motion_uses_background_feature=True).motion_uses_background_feature


def test_bare_state_dict_of_ours_infers_the_config(tmp_path):
    reference = Generator(ngf=4, nf_part=6, n_blocks1=2, n_blocks2=3, motion_frames=2)
    path = tmp_path / "bare.pth"
    torch.save({"module." + k: v for k, v in reference.state_dict().items()}, path)
    assert load_generator(path).config == reference.config
    assert infer_generator_config(Generator(ngf=4, nf_part=4, n_blocks1=0, n_blocks2=1, norm="instance").state_dict()) == dict(
        ngf=4, nf_part=4, n_blocks1=0, n_blocks2=1, motion_frames=4, norm="instance", motion_uses_background_feature=True
    )
    fixed = load_generator(path, motion_uses_background_feature=False)
    assert fixed.motion_uses_background_feature is False


def test_discriminator_formats(tmp_path):
    reference = MultiscaleDiscriminator(in_channels=3, ndf=4, n_layers=2, num_d=2)
    x = torch.randn(1, 3, 32, 32)
    expected = reference(x)
    flat = {"module." + k: v for k, v in ours_to_original(reference.state_dict()).items()}
    features_naming = {  # the public code's names with getIntermFeat=True
        f"scale{1 - s}_layer{j}.{0 if kind == 'conv' else 1}.{p}": v
        for k, v in reference.state_dict().items()
        for s, j, kind, p in [(int(k.split(".")[1]), int(k.split(".")[3]), k.split(".")[4], k.split(".")[5])]
    }
    ours = {"discriminator": reference.state_dict(), "discriminator_config": reference.config, "generator": {}}
    for source in (flat, features_naming, ours, reference.state_dict()):
        path = tmp_path / "d.pth"
        torch.save(source, path)
        loaded = load_discriminator(path)
        for a, b in zip(loaded(x), expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------- errors


def test_missing_and_mismatched_keys_are_named(tmp_path):
    state = Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1).state_dict()
    config = dict(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1)
    broken = dict(state)
    del broken["alpha_decoder.head.conv.bias"]
    broken["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save({"generator": broken, "model_config": config}, path)
    with pytest.raises(CheckpointError) as error:
        load_generator(path)
    message = str(error.value)
    assert str(path) in message
    assert "1 missing: alpha_decoder.head.conv.bias" in message and "1 unexpected: extra.weight" in message

    torch.save({"generator": state, "model_config": config}, path)
    with pytest.raises(CheckpointError, match=r"shape mismatch: image_encoder\.stem\.conv\.weight"):
        load_generator(path, ngf=8)


def test_wrong_files_give_clear_errors(tmp_path):
    not_a_model = tmp_path / "weights.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, not_a_model)
    with pytest.raises(CheckpointError, match=r"weights\.pth: not a generator checkpoint"):
        load_generator(not_a_model)

    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.pth: cannot be read"):
        load_generator(text)

    pickled = tmp_path / "whole_model.pth"
    torch.save(nn.Linear(2, 2), pickled)  # loading it would need to run pickled code
    with pytest.raises(CheckpointError, match="weights-only"):
        load_generator(pickled)

    other = tmp_path / "generator.pth"
    torch.save(ours_to_original(Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1).state_dict()), other)
    with pytest.raises(CheckpointError, match="not a discriminator checkpoint"):
        load_discriminator(other)

    tiny = Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1).state_dict()
    with pytest.raises(CheckpointError, match="bad Generator configuration"):
        load_generator({"generator": tiny, "model_config": {"ngf": 4, "width": 3}})

    with pytest.raises(CheckpointError, match=r"missing\.pth: checkpoint not found"):
        load_generator(tmp_path / "missing.pth")


class _Pickled:
    def __reduce__(self):
        return (print, ("pickled code ran",))


@pytest.mark.parametrize("content, reason", [
    (bytes(range(256)) * 4, "not a PyTorch file, or a damaged one"),
    (b"", "empty or truncated"),
    ("pickled", r"holds pickled code or objects \(print\), which are refused, never run"),
    ("truncated", r"damaged one \(PytorchStreamReader failed reading zip archive"),
])
def test_unreadable_files_are_explained_without_torchs_advice_to_run_their_code(tmp_path, capsys, content, reason):
    path = tmp_path / "file.pt"
    if content == "pickled":
        torch.save({"x": _Pickled()}, path)
    elif content == "truncated":
        torch.save(Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1).state_dict(), path)
        path.write_bytes(path.read_bytes()[:2000])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        load_generator(path)
    message = str(error.value)
    assert message.startswith(f"{path}: cannot be read as a weights-only PyTorch checkpoint: ")
    assert re.search(reason, message), message
    assert "weights_only" not in message and "likely succeed" not in message and "\n" not in message
    assert "pickled code ran" not in capsys.readouterr().out


def test_nonfinite_weights_are_refused_at_load_naming_the_file_and_the_tensors(tmp_path):
    generator = Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1)
    state = generator.state_dict()
    state["alpha_decoder.head.conv.weight"][0, 0, 0, 0] = float("nan")
    state["image_encoder.stem.norm.running_var"][1] = float("inf")
    path = tmp_path / "nan.pt"
    torch.save({"generator": state, "model_config": generator.config}, path)
    expected = (r"nan\.pt: 2 tensor\(s\) hold NaN or infinite values, e\.g\. "
                r"image_encoder\.stem\.norm\.running_var, alpha_decoder\.head\.conv\.weight")
    with pytest.raises(CheckpointError, match=expected):
        load_generator(path)
    with pytest.raises(CheckpointError, match=expected):
        load_matting_model(path)
    bare = tmp_path / "original.pth"
    torch.save(ours_to_original(state), bare)  # the original release's names: named in ours after the mapping
    with pytest.raises(CheckpointError, match=r"original\.pth: 2 tensor\(s\) hold NaN"):
        load_generator(bare)
    discriminator = MultiscaleDiscriminator(ndf=4, n_layers=1).state_dict()
    discriminator["scales.0.stages.0.conv.bias"][0] = -float("inf")
    with pytest.raises(CheckpointError, match=r"scales\.0\.stages\.0\.conv\.bias"):
        load_discriminator({"discriminator": discriminator})


# ----------------------------------------------------------------------------------------------------- refine head


def test_tiny_original_weights_in_a_refine_head_generator_give_the_public_codes_outputs(original_outputs):
    """The refine head only adds modules: the released weights load into the rest and reproduce the original."""
    state = original_to_ours(original_outputs["generator_state_dict"])
    config = infer_generator_config(state)
    generator = Generator(**config, refine_head=True, refine_hidden=4).eval()
    missing, unexpected = generator.load_state_dict(state, strict=False)
    assert sorted(missing) == ["error_head.conv.bias", "error_head.conv.weight"] and not unexpected
    with torch.no_grad():
        out = generator.forward_with_error(*original_outputs["generator_inputs"])
    torch.testing.assert_close(out.alpha_raw, original_outputs["alpha_raw"], rtol=0, atol=1e-5)
    torch.testing.assert_close(out.foreground_raw, original_outputs["foreground_raw"], rtol=0, atol=1e-5)


def test_refine_head_checkpoints(tmp_path):
    reference = Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1, refine_head=True, refine_hidden=6)
    path = tmp_path / "bare.pth"
    torch.save(reference.state_dict(), path)
    loaded = load_generator(path)  # config inferred from the shapes, head included
    assert loaded.config == reference.config and loaded.refine_hidden == 6
    with pytest.raises(CheckpointError, match=r"no counterpart.*error_head"):
        ours_to_original(reference.state_dict())  # the original network has no such head
