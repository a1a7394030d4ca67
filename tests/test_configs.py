"""Every training preset composes (Hydra compose API) and builds its stage, networks and optimisers."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, get_method
from omegaconf import OmegaConf

from bgmatting.engine.build import build_discriminator, build_generator, build_optimizer, build_stage, to_plain
from bgmatting.models import Generator

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # = tests/conftest.py's CONFIG_DIR

PRESETS = {
    "quickstart_adobe": [],
    "quickstart_real": ["stage=real"],
    "paper_adobe": ["experiment=paper_adobe", "data.root=/data"],
    "paper_real": ["experiment=paper_real", "data.manifest=/d/m.json", "data.val_manifest=/d/v.csv"],
    "public_code_real": ["experiment=public_code_real", "data.manifest=/d/m.json", "data.val_manifest=/d/v.csv"],
}


def compose_train(overrides, hydra_config: bool = False):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="test_configs"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=hydra_config)


def _locate(target: str):
    try:
        return get_class(target)
    except Exception:  # noqa: BLE001 - factories are functions or classmethods
        return get_method(target)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_resolves_and_builds(name):
    cfg = compose_train(PRESETS[name])
    plain = to_plain(cfg)  # every interpolation resolves
    assert plain["stage"]["name"] in ("adobe", "real")
    for split in ("train", "val"):
        node = plain["data"].get(split)
        if node is not None:
            assert callable(_locate(node["_target_"])), f"{name}: data.{split}._target_ does not import"
    with torch.device("meta"):  # shapes only: paper-size networks without the cost of initialising them
        generator = build_generator(plain["model"]["generator"])
        networks = {"generator": generator}
        teacher = discriminator = None
        if plain["stage"]["name"] == "real":
            discriminator = build_discriminator(plain["model"]["discriminator"])
            teacher = Generator(**plain["model"]["generator"])
            networks["discriminator"] = discriminator
    stage = build_stage(plain["stage"], generator, None, discriminator, teacher)
    assert set(stage.networks) == set(networks)
    for net_name, module in networks.items():
        optimizer = build_optimizer(module, plain["optim"][net_name])
        assert optimizer.param_groups[0]["lr"] == plain["optim"][net_name]["lr"]


def test_paper_numbers_are_the_defaults():
    adobe = compose_train(PRESETS["paper_adobe"])
    assert dict(adobe.stage.losses) == {"alpha": 1.0, "alpha_gradient": 1.0, "foreground": 2.0, "composite": 1.0}
    assert adobe.trainer.epochs == 60 and adobe.trainer.batch_size == 4
    assert adobe.trainer.max_steps is None and adobe.trainer.time_limit_minutes is None  # no quickstart caps
    assert adobe.model.generator.ngf == 64 and adobe.model.generator.n_blocks1 == 7 and adobe.model.generator.n_blocks2 == 3
    assert adobe.optim.generator.lr == pytest.approx(1e-4) and list(adobe.optim.generator.betas) == [0.9, 0.999]

    real = compose_train(PRESETS["paper_real"])
    assert dict(real.stage.losses) == {"gan": 1.0, "alpha": 2.0, "alpha_gradient": 4.0, "foreground": 1.0, "composite": 1.0}
    assert real.stage.supervision.weight == pytest.approx(0.05) and real.stage.supervision.every == 2
    assert real.stage.discriminator_every == 5
    assert real.optim.discriminator.lr == pytest.approx(1e-5)
    assert real.stage.student_init == "teacher" and real.stage.detach_fake_for_generator is False
    assert real.trainer.epochs == 15

    public = compose_train(PRESETS["public_code_real"])
    assert public.stage.losses.alpha == 1.0 and public.stage.losses.alpha_gradient == 0.5
    assert public.stage.foreground_mask_alpha == pytest.approx(0.01)
    assert public.stage.composite_mask_segmentation == pytest.approx(0.95)
    assert public.stage.supervision.first_halving == 1


def test_stage_selects_its_data_and_command_line_wins():
    choices = lambda overrides: compose_train(overrides, hydra_config=True).hydra.runtime.choices  # noqa: E731
    assert choices([])["data"] == "synthetic"
    assert choices(["stage=real"])["data"] == "synthetic_real"
    assert choices(["stage=real"])["optim"] == "quickstart_real"
    assert choices(["experiment=paper_real"])["optim"] == "adam"
    assert choices(["experiment=paper_real"])["data"] == "real"
    assert choices(["stage=real", "data=real"])["data"] == "real"


def test_run_dir_is_per_stage_and_shared_by_ranks(monkeypatch):
    monkeypatch.setenv("BGM_RUN_STAMP", "2030-01-01_00-00-00")
    cfg = compose_train(["stage=real"], hydra_config=True)
    assert OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"] == "outputs/real/2030-01-01_00-00-00"


def test_evaluate_defaults_score_the_quickstart_held_out_set():
    """`python -m bgmatting.evaluate dataset.synthetic=true` re-scores exactly the set the quickstart evaluates on."""
    train = compose_train([])
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="test_configs"):
        evaluate = compose(config_name="evaluate")
    quickstart_val = OmegaConf.to_container(train.data.val, resolve=True)
    for key, value in OmegaConf.to_container(evaluate.dataset.synthetic_options).items():
        assert quickstart_val[key] == value, key
