"""``python -m bgmatting.train`` end to end on tiny synthetic data: both stages, DDP under torchrun, --help, --cfg."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2

import pytest
import torch
import yaml

from bgmatting.engine.run_checkpoints import load_checkpoint


@pytest.fixture
def run_cli(run_module):
    """``run_cli(args, cwd, torchrun_procs=None)``: ``python -m bgmatting.train args``, under torchrun if asked."""

    def run(args: list[str], cwd: Path, torchrun_procs: int | None = None):
        launcher = ()
        if torchrun_procs:
            launcher = ("-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun_procs}")
        return run_module("bgmatting.train", args, cwd, launcher=launcher)

    return run


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bgm_cache")


def only_run(stage_dir: Path) -> Path:
    runs = [p for p in stage_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_cli_trains_adobe_then_real_with_the_teacher_found_automatically(tmp_path, cache, tiny_train_overrides, run_cli):
    outputs = tmp_path / "outputs"
    adobe = run_cli([*tiny_train_overrides("adobe", outputs, cache), "trainer.max_steps=3",
                     "logging.tensorboard=true", "logging.image_every=1"], tmp_path)
    assert "baseline: segmentation" in adobe.stdout and "baseline: background_difference" in adobe.stdout
    run = only_run(outputs / "adobe")
    assert (run / ".hydra" / "config.yaml").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and set(summary["evaluation"]) == {"held_out", "photo_96", "captures_256"}
    assert set(summary["evaluation"]["photo_96"]["summaries"]) == {
        "model", "baseline: segmentation", "baseline: background_difference"}
    captures = summary["evaluation"]["captures_256"]  # end to end through infer's pipeline, its own baselines
    assert set(captures["summaries"]) == {"model", "baseline: segmentation", "baseline: background_difference",
                                          "baseline: careful"} and "ratio_frame" in captures
    validated = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    validated = [row for row in validated if "val/captures_256/sad_frame" in row]
    assert validated and "val/captures_256/careful/sad" in validated[-1] and "val/relative_sad" in validated[-1]
    assert "| captures_256 | baseline: careful | 2 |" in adobe.stdout
    assert "3 of 3 steps" in adobe.stdout and "| photo_96 | model | 2 |" in adobe.stdout
    assert (run / "eval" / "summary.md").is_file() and (run / "eval" / "photo_96" / "per_image.csv").is_file()
    assert cv2.imread(str(run / "eval" / "photo_96" / "gallery.png")) is not None
    assert cv2.imread(str(run / "learning_curves.png")) is not None

    real = run_cli([*tiny_train_overrides("real", outputs, cache), "trainer.max_steps=2", "stage.discriminator_every=1"],
                   tmp_path)
    assert "baseline: segmentation" in real.stdout and "reference: teacher (adobe stage)" in real.stdout
    real_run = only_run(outputs / "real")
    real_summary = json.loads((real_run / "summary.json").read_text())["evaluation"]["held_out"]["summaries"]
    teacher_row = real_summary["reference: teacher (adobe stage)"]
    assert teacher_row["images"] > 0 and real_summary["model"]["images"] == teacher_row["images"]
    checkpoint = load_checkpoint(real_run / "checkpoints" / "step_00000002.pt")
    assert Path(checkpoint["config"]["teacher"]).parent == run / "checkpoints"
    assert "discriminator" in checkpoint["modules"] and checkpoint["step"] == 2


def test_torchrun_two_processes_train_identical_replicas(tmp_path, cache, tiny_train_overrides, run_cli):
    outputs = tmp_path / "outputs"
    common = ["distributed.backend=gloo", "evaluation.enabled=false"]
    # 6 samples: 1 step per epoch and rank
    run_cli([*tiny_train_overrides("adobe", outputs, cache), *common, "trainer.epochs=2"], tmp_path, torchrun_procs=2)
    run = only_run(outputs / "adobe")  # both ranks share rank 0's run folder
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    fingerprints = summary["generator_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    checkpoint = load_checkpoint(run / "checkpoints" / "step_00000002.pt")
    assert len(checkpoint["rng"]) == 2  # per-rank RNG states for an exact resume

    run_cli([*tiny_train_overrides("real", outputs, cache), *common, "trainer.max_steps=2", "stage.discriminator_every=1",
             "trainer.validate_every=0"], tmp_path, torchrun_procs=2)
    real_summary = json.loads((only_run(outputs / "real") / "summary.json").read_text())
    assert real_summary["world_size"] == 2
    assert real_summary["generator_fingerprints"][0] == real_summary["generator_fingerprints"][1]
    assert torch.isfinite(torch.tensor(real_summary["last_losses"]["loss/discriminator"]))


def test_help_is_a_short_page_and_cfg_job_prints_the_whole_config(tmp_path, run_cli):
    page = run_cli(["--help"], tmp_path).stdout
    assert len(page.splitlines()) < 60
    assert "experiment: paper_adobe, paper_real, public_code_real, quickstart_adobe, quickstart_real" in page
    assert "stage: adobe, real" in page and "python -m bgmatting.train stage=real" in page
    full = yaml.safe_load(run_cli(["stage=real", "--cfg", "job"], tmp_path).stdout)
    assert full["stage"]["_target_"] == "bgmatting.engine.stages.RealStage"
    assert full["trainer"]["max_steps"] == 300 and full["data"]["train"]["size"] == 128
    assert {"seed", "model", "optim", "checkpoint", "evaluation"} <= set(full)


# ----------------------------------------------------------------------------------------------- bad input
TRAIN_BAD_INPUT = [  # (case, overrides after the tiny adobe run's, or the real run's when the first is "real";
    # {tmp}: the test folder, {run}: a finished run; expected last stderr line)
    ("batch size 0", ["trainer.batch_size=0"], r"trainer\.batch_size=0: must be an integer >= 1"),
    ("batch size negative", ["trainer.batch_size=-2"], r"trainer\.batch_size=-2: must be an integer >= 1"),
    ("batch larger than the data", ["trainer.batch_size=1000"],
     r"trainer\.batch_size=1000: larger than the training set's \d+ samples"),
    ("log_every 0", ["logging.log_every=0"], r"logging\.log_every=0: must be an integer >= 1"),
    ("nonfinite unknown", ["trainer.nonfinite=maybe"], r"trainer\.nonfinite='maybe': must be stop or skip"),
    ("missing teacher", ["real", "teacher={tmp}/nope.pt"], r"teacher=.*nope\.pt: checkpoint not found"),
    ("no teacher to find", ["real", "outputs_root={tmp}/elsewhere"], r"stage=real needs a teacher"),
    ("random teacher", ["real", "teacher={tmp}/random.pt"],
     r"teacher: .*random\.pt: cannot be read as a weights-only PyTorch checkpoint"),
    ("foreign teacher", ["real", "teacher={tmp}/discriminator.pt"],
     r"teacher: .*discriminator\.pt: neither a state dict nor a checkpoint with a 'generator' entry"),
    ("nothing to resume", ["resume=true", "outputs_root={tmp}/elsewhere"], r"resume=true: no checkpoint of this stage"),
    ("random resume file", ["resume={tmp}/random.pt"], r"random\.pt: cannot be read as a weights-only"),
    ("foreign resume file", ["resume={tmp}/generator.pt"], r"generator\.pt is not a bgmatting training checkpoint"),
    ("resume with NaN weights", ["resume={tmp}/nan.pt"], r"nan\.pt: 1 tensor\(s\) hold NaN or infinite values.*"
                                                        r"cannot resume from it"),
    ("resume with another model", ["resume={run}", "model.generator.ngf=8"],
     r"setting\(s\) differ from the checkpoint's and cannot change on resume: model\.generator\.ngf \(4 -> 8\)"),
    ("resume with another batch size", ["resume={run}", "trainer.batch_size=3"],
     r"cannot change on resume: trainer\.batch_size \(2 -> 3\).*resume_allow_changes=\[trainer\.batch_size\]"),
    ("outputs root under a file", ["outputs_root={tmp}/notes.txt/outputs"],
     r"cannot write the run folder .*notes\.txt/outputs/adobe/.*: Not a directory$"),
    ("resume with a network that does not fit", ["resume={run}/checkpoints/step_00000001.pt",
                                                  "model.generator.ngf=8", "resume_allow_changes=[model]"],
     r"networks or optimisers do not fit this run's"),
    ("mistyped key", ["trainer.max_stepz=3"],
     r"Could not override 'trainer\.max_stepz': Key 'max_stepz' is not in struct \(python -m bgmatting\.train --help"),
    ("unknown group option", ["model=bogus"], r"Could not find 'model/bogus'; choose one of paper, .*tiny_refine"),
    ("old key init_from", ["init_from={tmp}/generator.pt"], r"init_from=.*generator\.pt: init_from is now init=PATH"),
    ("old key student_init", ["real", "stage.student_init=random"], r"stage\.student_init is now init=teacher"),
    ("init teacher without one", ["init=teacher"], r"init=teacher: only stage real has a teacher"),
    ("init from a missing file", ["init={tmp}/missing.pt"], r"init=.*missing\.pt: no such checkpoint file"),
    ("init from a broken model config", ["init={tmp}/broken.pt"],
     r"broken\.pt: bad Generator configuration: ngf must be in \[1, 4096\], got -1$"),
    ("negative learning rate", ["optim.generator.lr=-0.001"], r"optim\.generator: Invalid learning rate: -0\.001$"),
    ("learning rate nan", ["optim.generator.lr=nan"], r"optim\.generator: Invalid learning rate: nan$"),
    ("crop size 0", ["data.train.augment.output_size=0"], r"data\.train: output_size must be >= 16, got 0$"),
    ("unknown best metric", ["checkpoint.best_metric=val/nonexistent"],
     r"checkpoint\.best_metric=val/nonexistent: validation logs val/relative_sad and val/<set>/<metric>"),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache, tiny_train_overrides):
    """A finished one-step tiny adobe run made by the command (its config is what a resume compares with)."""
    from bgmatting.train import main

    outputs = tmp_path_factory.mktemp("finished") / "outputs"
    argv = [*tiny_train_overrides("adobe", outputs, cache), "trainer.max_steps=1", "evaluation.enabled=false"]
    with pytest.MonkeyPatch.context() as monkeypatch:
        from bad_input import run_hydra_main

        assert run_hydra_main(main, argv, monkeypatch) == 0
    return only_run(outputs / "adobe")


@pytest.mark.parametrize("case, overrides, expected", TRAIN_BAD_INPUT, ids=[c[0] for c in TRAIN_BAD_INPUT])
def test_train_refuses_bad_input_with_one_line(tmp_path, capfd, monkeypatch, cache, tiny_train_overrides,
                                               finished_run, case, overrides, expected):
    import shutil

    from bad_input import assert_refused, files_under, run_hydra_main
    from bgmatting.models import Generator, MultiscaleDiscriminator
    from bgmatting.train import main

    run = tmp_path / "outputs" / "adobe" / finished_run.name
    shutil.copytree(finished_run, run)  # an earlier run, which nothing may change
    state = load_checkpoint(run / "checkpoints" / "step_00000001.pt")
    state["generator"]["image_encoder.stem.conv.bias"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "notes.txt").write_text("not a folder")
    torch.save({"discriminator": MultiscaleDiscriminator(ndf=4, n_layers=1).state_dict()}, tmp_path / "discriminator.pt")
    generator = Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1)
    torch.save({"generator": generator.state_dict(), "model_config": generator.config}, tmp_path / "generator.pt")
    torch.save({"generator": generator.state_dict(), "model_config": {**generator.config, "ngf": -1}},
               tmp_path / "broken.pt")
    stage = "real" if overrides[0] == "real" else "adobe"
    argv = [*tiny_train_overrides(stage, tmp_path / "outputs", cache), "evaluation.enabled=false",
            *(o.format(tmp=tmp_path, run=run) for o in overrides if o != "real")]
    capfd.readouterr()
    before = files_under(tmp_path)
    code = run_hydra_main(main, argv, monkeypatch)
    err = capfd.readouterr().err
    assert_refused(code, err, rf"^train: error: .*{expected}", tmp_path, before)  # no file anywhere: not even
    # the launch's own run folder (Hydra's .hydra/ and log are removed with it)


def test_train_refuses_a_missing_data_root_with_one_line(tmp_path, capfd, monkeypatch):
    from bad_input import assert_refused, files_under, run_hydra_main
    from bgmatting.train import main

    before = files_under(tmp_path)
    code = run_hydra_main(main, ["experiment=paper_adobe", f"data.root={tmp_path}/missing", "logging=quiet",
                                 f"outputs_root={tmp_path}/outputs"], monkeypatch)
    assert_refused(code, capfd.readouterr().err,
                   r"^train: error: .*missing/adobe/train_data_list\.txt: name list does not exist$", tmp_path, before)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_train_refuses_a_read_only_outputs_root(tmp_path, capfd, monkeypatch, cache, tiny_train_overrides):
    from bad_input import run_hydra_main
    from bgmatting.train import main

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        code = run_hydra_main(main, tiny_train_overrides("adobe", read_only / "outputs", cache), monkeypatch)
    finally:
        read_only.chmod(0o755)
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert re.search(r"^train: error: cannot write the run folder .*read_only/outputs/adobe/.*: Permission denied$",
                     err.strip())
