"""The Hydra configs: every recipe composes to its effective values and builds its stage, networks and optimisers;
each group holds one concern; the configs are the package resource ``bgmatting.configs`` the commands load."""
from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import get_class, get_method
from omegaconf import OmegaConf

from bgmatting.engine.recipe import build_matting_model, build_optimizer, build_stage, to_plain
from bgmatting.engine.stages import Networks, RealStage, SupervisionSchedule

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

REAL_DATA = ["data.manifest=/d/m.json", "data.val_manifest=/d/v.csv"]
PRESETS = {  # name -> command-line overrides
    "bare": [],
    "quickstart_adobe": ["stage=adobe"],
    "quickstart_real": ["stage=real"],
    "paper_adobe": ["experiment=paper_adobe", "data.root=/data"],
    "paper_real": ["experiment=paper_real", *REAL_DATA],
    "public_code_real": ["experiment=public_code_real", *REAL_DATA],
}
# a refining model's terms (unused with a plain model): coarse outputs weighed as the refined ones, error map 1
ADOBE_REFINE_LOSSES = {"coarse_alpha": 1.0, "coarse_alpha_gradient": 1.0, "coarse_foreground": 2.0,
                       "coarse_composite": 1.0, "error": 1.0}
REAL_REFINE_LOSSES = {"coarse_alpha": 2.0, "coarse_alpha_gradient": 4.0, "coarse_foreground": 1.0,
                      "coarse_composite": 1.0, "error": 1.0}
PAPER_ADOBE_LOSSES = {"alpha": 1.0, "alpha_gradient": 1.0, "foreground": 2.0, "composite": 1.0, "alpha_unknown": 0.0,
                      "alpha_laplacian": 0.0,
                      **ADOBE_REFINE_LOSSES}
QUICKSTART_ADOBE_LOSSES = {**PAPER_ADOBE_LOSSES, "alpha_unknown": 2.0}  # + the unknown band's alpha L1
PAPER_REAL_LOSSES = {"gan": 1.0, "alpha": 2.0, "alpha_gradient": 4.0, "foreground": 1.0, "composite": 1.0,
                     **REAL_REFINE_LOSSES}
PUBLIC_REAL_LOSSES = {"gan": 1.0, "alpha": 1.0, "alpha_gradient": 0.5, "foreground": 1.0, "composite": 1.0,
                      **REAL_REFINE_LOSSES}
# name -> (experiment, data, optim, model), stage losses, (G lr, D lr, schedule), (epochs, max_steps, batch size)
EXPECTED = {
    "bare": (("quickstart_adobe", "synthetic", "quickstart", "quickstart_refine"), QUICKSTART_ADOBE_LOSSES,
             (2e-3, 2e-4, "cosine"), (20, 2400, 4)),
    "quickstart_adobe": (("quickstart_adobe", "synthetic", "quickstart", "quickstart_refine"), QUICKSTART_ADOBE_LOSSES,
                         (2e-3, 2e-4, "cosine"), (20, 2400, 4)),
    "quickstart_real": (("quickstart_real", "synthetic_real", "quickstart_real", "quickstart_refine"), PAPER_REAL_LOSSES,
                        (1e-4, 1e-4, "cosine"), (20, 300, 8)),
    "paper_adobe": (("paper_adobe", "adobe", "adam", "paper"), PAPER_ADOBE_LOSSES, (1e-4, 1e-5, "constant"),
                    (60, None, 4)),
    "paper_real": (("paper_real", "real", "adam", "paper"), PAPER_REAL_LOSSES, (1e-4, 1e-5, "constant"),
                   (15, None, 4)),
    "public_code_real": (("public_code_real", "real", "adam", "paper"), PUBLIC_REAL_LOSSES, (1e-4, 1e-5, "constant"),
                         (15, None, 4)),
}


def _locate(target: str):
    try:
        return get_class(target)
    except Exception:  # noqa: BLE001 - factories are functions or classmethods
        return get_method(target)


@pytest.mark.parametrize("name", PRESETS)
def test_recipe_composes_to_its_effective_values(name, compose_config):
    cfg = compose_config("train", PRESETS[name], hydra_config=True)
    choices, losses, (g_lr, d_lr, schedule), (epochs, max_steps, batch_size) = EXPECTED[name]
    picked = cfg.hydra.runtime.choices
    assert (picked.experiment, picked.data, picked.optim, picked.model) == choices
    assert picked.stage == cfg.stage.name and dict(cfg.stage.losses) == losses
    assert (cfg.optim.generator.lr, cfg.optim.discriminator.lr, cfg.optim.schedule._target_) == (
        g_lr, d_lr, f"bgmatting.engine.schedules.{schedule}")
    assert (cfg.trainer.epochs, cfg.trainer.max_steps, cfg.trainer.batch_size) == (epochs, max_steps, batch_size)
    quickstart = choices[0].startswith("quickstart")
    assert cfg.trainer.time_limit_minutes is None  # fixed schedules: the same steps on every machine
    assert cfg.trainer.val_limit == (8 if quickstart else None)


@pytest.mark.parametrize("name", PRESETS)
def test_recipe_resolves_and_builds_its_stage_networks_and_optimisers(name, compose_config):
    plain = to_plain(compose_config("train", PRESETS[name]))  # every interpolation resolves
    for split in ("train", "val"):
        assert callable(_locate(plain["data"][split]["_target_"])), f"{name}: data.{split}._target_ does not import"
    with torch.device("meta"):  # shapes only: paper-size networks without the cost of initialising them
        model = build_matting_model(plain["model"])
        networks = {"generator": model}
        teacher = discriminator = None
        if plain["stage"]["name"] == "real":
            networks["discriminator"] = discriminator = _locate(plain["model"]["discriminator"]["_target_"])(
                **{k: v for k, v in plain["model"]["discriminator"].items() if k != "_target_"})
            teacher = build_matting_model(plain["model"])
    stage = build_stage(plain["stage"], Networks(model, discriminator, teacher))
    assert stage.name == plain["stage"]["name"] and stage.weights == plain["stage"]["losses"]
    assert set(stage.trained) == set(networks)
    if isinstance(stage, RealStage):
        options = plain["stage"]
        assert stage.supervision == SupervisionSchedule(**{k: v for k, v in options["supervision"].items()
                                                           if k != "_target_"})
        assert stage.discriminator_every == options["discriminator_every"]
        assert (stage.foreground_mask_alpha, stage.composite_mask_segmentation) == (
            options["foreground_mask_alpha"], options["composite_mask_segmentation"])
    for net_name, module in networks.items():
        optimizer = build_optimizer(module, plain["optim"][net_name], net_name)
        assert optimizer.param_groups[0]["lr"] == plain["optim"][net_name]["lr"]


QUICKSTART_CROP = {"adobe": 128, "real": 128}


@pytest.mark.parametrize("stage", ["adobe", "real"])
def test_the_tiny_test_run_keeps_the_quickstart_recipe(stage, cfg_train, compose_config, tmp_path):
    """The tiny runs of the tests shrink model and data, not the stage's losses or optimiser."""
    tiny, quickstart = cfg_train(stage), compose_config("train", [f"stage={stage}"])
    assert to_plain(tiny.stage) == to_plain(quickstart.stage) and to_plain(tiny.optim) == to_plain(quickstart.optim)
    crop = "data.train.augment.output_size" if stage == "adobe" else "data.train.size"
    assert (OmegaConf.select(tiny, crop), OmegaConf.select(quickstart, crop)) == (32, QUICKSTART_CROP[stage])
    assert (tiny.model.generator.ngf, quickstart.model.generator.ngf) == (4, 16)
    assert tiny.outputs_root == str(tmp_path / "outputs") and tiny.data.cache_dir == str(tmp_path / "cache")


def test_paper_numbers_and_public_code_options(compose_config):
    adobe = compose_config("train", PRESETS["paper_adobe"])
    assert adobe.model.generator.ngf == 64 and adobe.model.generator.n_blocks1 == 7 and adobe.model.generator.n_blocks2 == 3
    assert list(adobe.optim.generator.betas) == [0.9, 0.999] and adobe.optim.schedule.warmup_steps == 0
    real = compose_config("train", PRESETS["paper_real"])
    assert real.stage.supervision.weight == pytest.approx(0.05) and real.stage.supervision.every == 2
    assert real.stage.supervision.first_halving == 2 and real.stage.discriminator_every == 5
    assert real.init == "teacher" and real.stage.detach_fake_for_generator is False
    assert compose_config("train", PRESETS["paper_adobe"]).init == "scratch"
    public = compose_config("train", PRESETS["public_code_real"])
    assert public.stage.foreground_mask_alpha == pytest.approx(0.01)
    assert public.stage.composite_mask_segmentation == pytest.approx(0.95)
    assert public.stage.supervision.first_halving == 1


def test_quickstart_optimisers_differ_from_adam_only_where_they_say(compose_config):
    adam = to_plain(compose_config("train", ["optim=adam"]).optim)
    for name, changed in {"quickstart": {("generator", "lr"): 2e-3, ("discriminator", "lr"): 2e-4,
                                         ("schedule", "_target_"): "bgmatting.engine.schedules.cosine", ("schedule", "warmup_steps"): 20,
                                         ("schedule", "final_factor"): 0.05},
                          "quickstart_real": {("discriminator", "lr"): 1e-4, ("schedule", "_target_"): "bgmatting.engine.schedules.cosine",
                                              ("schedule", "final_factor"): 0.1}}.items():
        optim = to_plain(compose_config("train", [f"optim={name}"]).optim)
        expected = {part: dict(values) for part, values in adam.items()}
        for (part, key), value in changed.items():
            expected[part][key] = value
        assert optim == expected, name


def test_command_line_choices_win_over_the_recipe(compose_config):
    choices = lambda overrides: compose_config("train", overrides, hydra_config=True).hydra.runtime.choices  # noqa: E731
    assert choices(["stage=real", "data=real"]).data == "real"
    assert choices(["stage=real", "model=tiny"]).model == "tiny"
    assert choices(["experiment=paper_adobe", "optim=quickstart"]).optim == "quickstart"
    assert choices(["experiment=paper_adobe", "stage=real"]).stage == "real"


def test_groups_hold_one_concern():
    """Only experiment/ configs are global and override other groups; the others stay in their package."""
    for group in ("stage", "data", "model", "optim", "logging"):
        for path in (CONFIGS / group).glob("*.yaml"):
            text = path.read_text()
            assert "@package" not in text, f"{path.name}: a {group} config must stay in package {group}"
            defaults = yaml.safe_load(text).get("defaults", [])
            foreign = [d for d in defaults if d != "_self_" and (not isinstance(d, str) or "/" in d)]
            assert not foreign, f"configs/{group}/{path.name} picks other groups: {foreign}"


def test_run_dir_is_per_stage_and_shared_by_ranks(monkeypatch, compose_config):
    monkeypatch.setenv("BGM_RUN_STAMP", "2030-01-01_00-00-00")
    cfg = compose_config("train", ["stage=real"], hydra_config=True)
    assert to_plain(cfg.hydra.run)["dir"] == "outputs/real/2030-01-01_00-00-00"


def test_launches_in_the_same_second_get_their_own_run_folders(monkeypatch, compose_config):
    monkeypatch.delenv("BGM_RUN_STAMP", raising=False)
    first, second = (to_plain(compose_config("train", ["stage=adobe"], hydra_config=True).hydra.run)["dir"]
                     for _ in range(2))
    assert re.fullmatch(r"outputs/adobe/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{6}", first), first
    assert first != second  # a second's stamp alone made them one folder: the later run wrote into the earlier


def test_evaluate_scores_the_data_group_held_out_set(compose_config):
    """`python -m bgmatting.evaluate dataset.synthetic=true` re-scores exactly the set the quickstart evaluates on."""
    train = compose_config("train")
    evaluate = compose_config("evaluate", ["dataset.synthetic=true"])
    sets = to_plain(train.evaluation.sets)
    assert to_plain(evaluate.data.val) == to_plain(train.data.val) == sets["held_out"]
    assert [sets[f"photo_{s}"]["size"] for s in (96, 128, 192, 256)] == [96, 128, 192, 256]
    captures = compose_config("evaluate", ["data=synthetic_real"])
    assert to_plain(captures.data.val) == to_plain(compose_config("train", ["stage=real"]).data.val)


def test_configs_are_the_package_resource_the_wheel_ships():
    """bgmatting.configs (what the commands load) is the repository's configs/, and pyproject's package data
    takes every config file into the wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    package = importlib.resources.files("bgmatting.configs")
    files = {path.relative_to(CONFIGS).as_posix() for path in CONFIGS.rglob("*.yaml")}
    assert {"train.yaml", "evaluate.yaml", "stage/real.yaml", "hydra/help/train.yaml"} <= files
    assert all((package / name).read_text() == (CONFIGS / name).read_text() for name in files)
    pyproject = tomllib.loads((CONFIGS.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["bgmatting.configs"]
    shipped = {path.relative_to(CONFIGS).as_posix() for pattern in patterns for path in CONFIGS.glob(pattern)}
    assert files <= shipped, f"not in the wheel: {sorted(files - shipped)}"


def test_evaluate_help_is_a_short_page(tmp_path, run_module):
    page = run_module("bgmatting.evaluate", ["--help"], tmp_path).stdout
    assert len(page.splitlines()) < 60
    assert "dataset.synthetic=true" in page and "pred_dir=DIR gt_dir=DIR" in page
