"""The training loop end to end on tiny data: both stages, exact resumption, NaN and bad-sample handling."""
from __future__ import annotations

import json

import pytest
import torch

from bgmatting.engine.training import run_training
from bgmatting.engine.run_checkpoints import load_checkpoint
from bgmatting.engine.nonfinite import NonFiniteLossError
from bgmatting.engine.sampling import SampleError
from bgmatting.models import load_generator


def read_metrics(run_dir) -> dict[int, dict]:
    """step -> logged row (a resumed run's rows replace the crashed run's rows of the same step)."""
    rows = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row["step"], {}).update(row)
    return rows


def losses_of(rows: dict[int, dict]) -> dict[int, dict[str, float]]:
    return {step: {k: v for k, v in row.items() if k.startswith("loss/")} for step, row in rows.items()}


def test_adobe_stage_few_steps_logs_validates_and_checkpoints(tmp_path, tiny_cfg, tiny_supervised):
    cfg = tiny_cfg("trainer.epochs=2", "logging.tensorboard=true", "logging.image_every=2")
    run_dir = tmp_path / "run"
    summary = run_training(cfg, run_dir, train_dataset=tiny_supervised(8, 32), val_dataset=tiny_supervised(2, 32))
    assert summary["steps"] == 8 and summary["epochs_completed"] == 2
    rows = read_metrics(run_dir)
    for term in ("alpha", "alpha_gradient", "foreground", "composite", "generator_total"):
        assert all(torch.isfinite(torch.tensor(rows[s][f"loss/{term}"])) for s in range(1, 9))
    assert {"lr/generator", "perf/samples_per_s", "perf/data_wait_s"} <= set(rows[8])
    assert {"val/val/sad", "val/val/mse", "val/val/images", "val/relative_sad"} <= set(rows[4]) and "val/val/sad" in rows[8]
    assert {"val/val/segmentation/sad", "val/val/background_difference/sad"} <= set(rows[4])
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "step_00000008.pt")
    assert {"generator", "model_config", "optimizers", "rng", "config", "grad_scalers"} <= set(checkpoint)
    assert checkpoint["epoch"] == 2 and checkpoint["config"]["stage"]["name"] == "adobe"
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    generator = load_generator(run_dir / "checkpoints" / "step_00000008.pt")
    assert generator.config["ngf"] == 4
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 8


def test_real_stage_few_steps_with_teacher_found_automatically(tmp_path, tiny_cfg, tiny_real, adobe_teacher):
    cfg = tiny_cfg("stage=real", "trainer.max_steps=6", "stage.discriminator_every=2")
    run_dir = tmp_path / "outputs" / "real" / "run"
    summary = run_training(cfg, run_dir, train_dataset=tiny_real(12, 32))
    assert summary["steps"] == 6
    rows = read_metrics(run_dir)
    assert all(f"loss/{t}" in rows[s] for s in range(1, 7) for t in ("gan", "alpha", "composite", "generator_total"))
    assert [s for s in range(1, 7) if "loss/discriminator" in rows[s]] == [1, 3, 5]  # steps 0, 2, 4 (0-based)
    assert rows[1]["stage/supervision_weight"] == pytest.approx(0.5)  # the real quickstart's lambda at its first step
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "step_00000006.pt")
    assert "discriminator" in checkpoint["modules"]
    assert checkpoint["config"]["teacher"].endswith(".pt")


def test_student_starts_from_the_teacher_unless_asked_for_scratch(tmp_path, tiny_cfg, tiny_real, adobe_teacher):
    teacher = load_checkpoint(adobe_teacher["checkpoint"])["generator"]
    for init, same in (("teacher", True), ("scratch", False)):
        cfg = tiny_cfg("stage=real", f"init={init}", "trainer.max_steps=1",
                       "optim.generator.lr=0", "trainer.validate_every=0")
        summary = run_training(cfg, tmp_path / f"real_{init}", train_dataset=tiny_real(4, 32))
        student = load_checkpoint(summary["checkpoint"])["generator"]
        weight = "image_encoder.stem.1.weight" if "image_encoder.stem.1.weight" in student else next(
            k for k in student if k.endswith("weight") and student[k].dim() == 4)
        assert torch.equal(student[weight], teacher[weight]) is same


@pytest.mark.parametrize("stage", ["adobe", "real"])
def test_resumed_run_matches_uninterrupted_run_step_for_step(tmp_path, tiny_cfg, tiny_supervised, tiny_real, stage, adobe_teacher,
                                                             crash_after):
    # 2 epochs x 4 steps; checkpoints at steps 3, 4 (epoch end), 6, 8; the crash after step 7 resumes from
    # step 6, in the middle of epoch 2, so data order, RNG streams, optimiser state and BN statistics must all resume.
    common = ["trainer.epochs=2", "checkpoint.every_n_steps=3", "trainer.validate_every=0"]
    if stage == "real":
        common += ["stage=real", "stage.discriminator_every=2", f"teacher={adobe_teacher['checkpoint']}"]
    data = (lambda: tiny_supervised(8, 32)) if stage == "adobe" else (lambda: tiny_real(8, 32))

    reference_dir = tmp_path / "reference"
    run_training(tiny_cfg(*common), reference_dir, train_dataset=data())

    crashed_dir = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated failure after step 7"), crash_after(7):
        run_training(tiny_cfg(*common), crashed_dir, train_dataset=data())
    assert sorted(p.name for p in (crashed_dir / "checkpoints").glob("step_*.pt"))[-1] == "step_00000006.pt"
    summary = run_training(tiny_cfg(*common, "resume=auto"), crashed_dir, train_dataset=data())
    assert summary["steps"] == 8 and summary["steps_this_run"] == 2

    reference, resumed = losses_of(read_metrics(reference_dir)), losses_of(read_metrics(crashed_dir))
    assert sorted(resumed) == sorted(reference) == list(range(1, 9))
    for step in range(1, 9):
        assert reference[step].keys() == resumed[step].keys()
        for name, value in reference[step].items():
            assert resumed[step][name] == pytest.approx(value, rel=1e-5, abs=1e-7), (step, name)
    final_a = load_checkpoint(reference_dir / "checkpoints" / "step_00000008.pt")["generator"]
    final_b = load_checkpoint(crashed_dir / "checkpoints" / "step_00000008.pt")["generator"]
    for key in final_a:
        torch.testing.assert_close(final_b[key], final_a[key], rtol=1e-5, atol=1e-6)


def test_nan_loss_stops_naming_step_and_term_and_keeps_last_good_checkpoint(tmp_path, tiny_cfg, tiny_supervised):
    # batch size 1, no shuffling surprises: find the step that draws the NaN sample from the sampler order
    cfg = tiny_cfg("trainer.batch_size=1", "checkpoint.every_n_steps=1", "trainer.validate_every=0")
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step (\d+) .*term '(alpha|composite|foreground|alpha_gradient)'") as info:
        run_training(cfg, run_dir, train_dataset=tiny_supervised(6, 32, nan_at=2))
    bad_step = int(info.value.args[0].split("step ")[1].split(" ")[0])
    kept = sorted(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*.pt"))
    assert kept[-1] == bad_step - 1 if bad_step > 1 else kept == []
    if kept:
        state = load_checkpoint(run_dir / "checkpoints" / f"step_{kept[-1]:08d}.pt")
        assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())

    summary = run_training(tiny_cfg("trainer.batch_size=1", "trainer.nonfinite=skip", "trainer.validate_every=0"),
                           tmp_path / "skip", train_dataset=tiny_supervised(6, 32, nan_at=2))
    assert summary["steps"] == 6 and summary["skipped_steps"] == 1


def test_corrupt_sample_is_reported_with_its_path_or_skipped(tmp_path, tiny_cfg, tiny_supervised):
    with pytest.raises(SampleError, match=r"fg_003\.png: truncated"):
        run_training(tiny_cfg("trainer.validate_every=0"), tmp_path / "a", train_dataset=tiny_supervised(6, 32, broken_at=3))
    summary = run_training(tiny_cfg("trainer.validate_every=0", "trainer.data_errors=skip"), tmp_path / "b",
                           train_dataset=tiny_supervised(6, 32, broken_at=3))
    assert summary["steps"] == 3
