"""What a checkpoint asks to build is checked before anything is built: constructor arguments of the generator,
refiner and discriminator, the refine options, the network's size, and the stored tensors' dtypes. Each refusal
is one CheckpointError line naming the file."""
from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable

import pytest
import torch

from bgmatting.models import (CheckpointError, Generator, MattingModel, MultiscaleDiscriminator, Refiner,
                              load_discriminator, load_matting_model)
from bgmatting.models.config_check import (DEFAULT_MAX_PARAMETERS, MAX_PARAMETERS_VARIABLE, NETWORK_FIELDS,
                                           REFINE_OPTION_FIELDS, network_size)

TINY = dict(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1)


def _refining_checkpoint() -> dict:
    generator = Generator(**TINY, refine_head=True, refine_hidden=4, rng=torch.Generator().manual_seed(0))
    refiner = Refiner(4, channels=(6, 5, 4), rng=torch.Generator().manual_seed(1))
    return MattingModel(generator, refiner, downsample_ratio=0.5).checkpoint_state()


def _with(entry: str, **changes) -> Callable[[dict], None]:
    """A change of the checkpoint's ``entry`` (a config dict): its keys set to ``changes``."""
    return lambda checkpoint: checkpoint[entry].update(changes)


def _tensor(entry: str, key: str, convert) -> Callable[[dict], None]:
    return lambda checkpoint: checkpoint[entry].__setitem__(key, convert(checkpoint[entry][key]))


STEM = "image_encoder.stem.conv.weight"
BAD_CHECKPOINTS = [  # (case, change to a good refining checkpoint, expected message after "<file>: ")
    ("ngf of 100000", _with("model_config", ngf=100000), r"bad Generator configuration: ngf must be in \[1, 4096\], "
                                                         r"got 100000$"),
    ("negative ngf", _with("model_config", ngf=-1), r"ngf must be in \[1, 4096\], got -1$"),
    ("unknown norm", _with("model_config", norm="evil"),
     r"norm must be one of batch, instance, sync_batch, got 'evil'$"),
    ("tensor as a size", _with("model_config", ngf=torch.tensor(4)), r"ngf must be an integer, got tensor\(4\)$"),
    ("float as a size", _with("model_config", n_blocks1=1.5), r"n_blocks1 must be an integer, got 1\.5$"),
    ("bool as a size", _with("model_config", nf_part=True), r"nf_part must be an integer, got True$"),
    ("string as a flag", _with("model_config", refine_head="yes"), r"refine_head must be true or false, got 'yes'$"),
    ("unknown generator key", _with("model_config", width=3), r"bad Generator configuration: unknown key\(s\) width "
                                                              r"\(known: ngf, nf_part, .*refine_hidden\)$"),
    ("too large as a whole", _with("model_config", ngf=1024, nf_part=1024),
     r"its Generator configuration asks for [\d,]+ values \([\d,.]+ GiB as float32\), above the limit of 500,000,000 "
     rf"\(raise it with {MAX_PARAMETERS_VARIABLE}=N\)$"),
    ("refiner widths", _with("refiner_config", channels=[6, -5, 4]), r"bad Refiner configuration: channels\[1\] must "
                                                                     r"be in \[1, 4096\], got -5$"),
    ("refiner widths not a list", _with("refiner_config", channels="wide"),
     r"channels must be a list of 3 integers, got 'wide'$"),
    ("refiner hidden", _with("refiner_config", hidden_channels=10**6), r"hidden_channels must be in \[0, 1024\]"),
    ("refine mode", _with("refine_options", refine_mode=5), r"bad refine_options: refine_mode must be one of full, "
                                                            r"sampling, thresholding, got 5$"),
    ("ratio zero", _with("refine_options", downsample_ratio=0.0), r"downsample_ratio must be in \(0, 1\], got 0\.0$"),
    ("threshold NaN", _with("refine_options", refine_threshold=float("nan")),
     r"refine_threshold must be a finite number, got nan$"),
    ("unknown option", _with("refine_options", turbo=True), r"bad refine_options: unknown key\(s\) turbo"),
    ("options not a dict", lambda c: c.__setitem__("refine_options", [1, 2]), r"'refine_options' must be a dict, "
                                                                              r"got list$"),
    ("integer weights", _tensor("generator", STEM, lambda t: t.to(torch.int64)),
     rf"{STEM} is a int64 tensor, expected floating-point"),
    ("boolean weights", _tensor("refiner", "coarse_stage.0.weight", lambda t: t > 0),
     r"coarse_stage\.0\.weight is a bool tensor, expected floating-point"),
    ("complex weights", _tensor("generator", STEM, lambda t: t.to(torch.complex64)), r"is a complex64 tensor"),
    ("float counter", _tensor("generator", "image_encoder.stem.norm.num_batches_tracked", lambda t: t.float()),
     r"num_batches_tracked is a float32 tensor, expected integer"),
    ("list instead of a tensor", _tensor("generator", STEM, lambda t: t.tolist()), rf"{STEM} is a list, not a tensor$"),
]


@pytest.mark.parametrize("case, change, expected", BAD_CHECKPOINTS, ids=[c[0] for c in BAD_CHECKPOINTS])
def test_bad_model_configs_and_tensors_are_one_line_naming_the_file(tmp_path, case, change, expected):
    checkpoint = _refining_checkpoint()
    change(checkpoint)
    path = tmp_path / "hostile.pt"
    torch.save(checkpoint, path)
    tick = time.perf_counter()
    with pytest.raises(CheckpointError) as error:
        load_matting_model(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert time.perf_counter() - tick < 5  # refused before anything large is built
    assert re.search(expected, message[len(f"{path}: "):]), message


def test_a_good_refining_checkpoint_still_loads(tmp_path):
    path = tmp_path / "good.pt"
    torch.save(_refining_checkpoint(), path)
    model = load_matting_model(path)
    assert model.refiner is not None and model.refine_options["downsample_ratio"] == 0.5


def test_discriminator_configs_are_checked(tmp_path):
    discriminator = MultiscaleDiscriminator(ndf=4, n_layers=1)
    for change, expected in (({"num_d": 100}, r"num_d must be in \[1, 8\], got 100"),
                             ({"norm": "evil"}, r"norm must be one of"), ({"ndf": 0}, r"ndf must be in \[1, 4096\]")):
        entry = {"discriminator": discriminator.state_dict(),
                 "discriminator_config": {**discriminator.config, **change}}
        with pytest.raises(CheckpointError, match=rf"^<state dict>: bad MultiscaleDiscriminator configuration: "
                                                  rf"{expected}"):
            load_discriminator(entry)


def test_the_size_limit_counts_without_allocating_and_can_be_raised(tmp_path, monkeypatch):
    assert network_size(Generator, {}) == sum(t.numel() for t in (*Generator().parameters(), *Generator().buffers()))
    assert network_size(Generator, dict(ngf=4096, n_blocks1=64)) > 300 * DEFAULT_MAX_PARAMETERS  # 1.3 TB as float32
    path = tmp_path / "tiny.pt"
    torch.save(_refining_checkpoint(), path)
    monkeypatch.setenv(MAX_PARAMETERS_VARIABLE, "1000")
    with pytest.raises(CheckpointError, match=r"tiny\.pt: its Generator configuration asks for [\d,]+ values .* above "
                                              r"the limit of 1,000 "):
        load_matting_model(path)
    monkeypatch.setenv(MAX_PARAMETERS_VARIABLE, "many")
    with pytest.raises(CheckpointError, match=rf"^{MAX_PARAMETERS_VARIABLE}: the model size limit must be a positive "
                                              r"integer, got 'many'$"):
        load_matting_model(path)


def test_the_checked_keys_are_the_constructors_arguments():
    for cls, fields in NETWORK_FIELDS.items():
        arguments = set(inspect.signature(cls.__init__).parameters) - {"self", "rng"}
        assert set(fields) == arguments, cls.__name__
    assert set(REFINE_OPTION_FIELDS) == set(inspect.signature(MattingModel.set_refine_options).parameters) - {"self"}
