"""Resuming: logs equal an uninterrupted run's, best.pt holds the weights it scores, partial checkpoints are
cleaned, config changes are applied or refused, a refused resume writes nothing, a checkpoint outside a run folder
continues in the launch's folder, another world size continues from rank 0's state."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from bad_input import files_under
from bgmatting.engine.run_checkpoints import CheckpointError, atomic_save, load_checkpoint
from bgmatting.engine.settings import ConfigError
from bgmatting.engine.training import run_training
from bgmatting.evaluation import SuiteValidation
from bgmatting.models import load_matting_model


def fixed(dataset) -> list[dict]:
    """The samples of ``dataset`` drawn once (TinySupervised draws anew on every access)."""
    return [dataset[i] for i in range(len(dataset))]


def jsonl_rows(run_dir) -> list[dict]:
    """metrics.jsonl as written, in order, without the timing columns (which differ between any two runs)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in rows]


def tensorboard_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"] if not tag.startswith("perf/")}


def assert_rows_equal(reference: list[dict], resumed: list[dict]) -> None:
    assert [(r["step"], sorted(r)) for r in resumed] == [(r["step"], sorted(r)) for r in reference]
    for a, b in zip(reference, resumed):
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (a["step"], key)


#: The device-side batch augmentation with every perturbation drawn for every sample: its random stream must resume.
BATCH_AUGMENT = ("data.batch_augment={_target_:bgmatting.data.batch_augment.BackgroundPerturbation,shadow_p:1.0,"
                 "noise_p:1.0,noise_image:true,jitter_p:1.0,misalign_p:1.0,reference_size:32}")


@pytest.mark.parametrize("batch_augment", [False, True], ids=["plain", "batch_augment"])
def test_resumed_run_logs_equal_an_uninterrupted_runs(tmp_path, tiny_cfg, tiny_supervised, crash_after, batch_augment):
    # 3 epochs x 4 steps, checkpoints at the epoch ends (4, 8, 12), scalars every 3 steps, validation per epoch.
    # The crash after step 7 resumes from step 4: the interrupted run had logged steps 3, 4 (validation) and 6;
    # the resumed run must drop row 6, keep step 4's, and log step 6's mean over steps 4..6 like the reference.
    common = ["trainer.epochs=3", "logging.log_every=3", "logging.tensorboard=true", "evaluation.enabled=false",
              *([BATCH_AUGMENT] if batch_augment else [])]
    data, val = (lambda: tiny_supervised(8, 32)), fixed(tiny_supervised(2, 32))
    run_training(tiny_cfg(*common), tmp_path / "reference", train_dataset=data(), val_dataset=val)
    with pytest.raises(RuntimeError, match="simulated failure after step 7"), crash_after(7):
        run_training(tiny_cfg(*common), tmp_path / "crashed", train_dataset=data(), val_dataset=val)
    assert [r["step"] for r in jsonl_rows(tmp_path / "crashed")] == [3, 4, 6]
    run_training(tiny_cfg(*common), tmp_path / "crashed", train_dataset=data(), val_dataset=val)

    reference, resumed = jsonl_rows(tmp_path / "reference"), jsonl_rows(tmp_path / "crashed")
    assert [r["step"] for r in reference] == [3, 4, 6, 8, 9, 12, 12]
    assert_rows_equal(reference, resumed)
    reference_tb, resumed_tb = tensorboard_scalars(tmp_path / "reference"), tensorboard_scalars(tmp_path / "crashed")
    assert sorted(resumed_tb) == sorted(reference_tb) and "val/val/sad" in reference_tb
    for tag, points in reference_tb.items():
        assert [s for s, _ in resumed_tb[tag]] == [s for s, _ in points], tag
        assert [v for _, v in resumed_tb[tag]] == pytest.approx([v for _, v in points], rel=1e-5, abs=1e-7), tag


def test_best_checkpoint_holds_exactly_the_weights_whose_score_it_records(tmp_path, tiny_cfg, tiny_supervised):
    # 4 steps per epoch and a checkpoint every 2 steps: every epoch end is also a periodic checkpoint step
    # trained under bf16 autocast (what "auto" picks on CPUs with native bf16), scored as evaluate scores: fp32
    cfg = tiny_cfg("trainer.epochs=3", "checkpoint.every_n_steps=2", "checkpoint.keep_last=20",
                   "optim.generator.lr=3e-3", "precision=bf16")
    val = fixed(tiny_supervised(2, 32))
    run_dir = tmp_path / "run"
    run_training(cfg, run_dir, train_dataset=tiny_supervised(8, 32), val_dataset=val)
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert best["step"] in (4, 8, 12) and best["metrics"]["val/relative_sad"] == best["best"]
    rescored = SuiteValidation({"val": val}, None, batch_size=2)(load_matting_model(run_dir / "checkpoints" / "best.pt"))
    assert rescored["val/relative_sad"] == pytest.approx(best["best"], rel=1e-6)
    same_step = load_checkpoint(run_dir / "checkpoints" / f"step_{best['step']:08d}.pt")
    for key, value in best["generator"].items():
        assert torch.equal(value, same_step["generator"][key]), key


def test_partial_checkpoints_of_killed_writes_are_removed_on_resume(tmp_path, tiny_cfg, tiny_supervised, caplog):
    run_dir = tmp_path / "run"
    run_training(tiny_cfg("trainer.max_steps=2", "trainer.validate_every=0"), run_dir,
                 train_dataset=tiny_supervised(8, 32))
    folder = run_dir / "checkpoints"
    orphans = [folder / ".step_00000003.pt.1a2b3c4d.tmp", folder / ".best.pt.deadbeef.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"PK\x03\x04 partial")
    unrelated = [folder / "notes.txt", folder / ".step_00000003.pt.keep"]
    for path in unrelated:
        path.write_text("mine")
    with caplog.at_level(logging.INFO, logger="bgmatting.engine.recipe"):
        summary = run_training(tiny_cfg("trainer.max_steps=4", "trainer.validate_every=0"), run_dir,
                               train_dataset=tiny_supervised(8, 32))
    assert summary["steps_this_run"] == 2
    assert not any(p.exists() for p in orphans) and all(p.exists() for p in unrelated)
    assert "a partial checkpoint left by an interrupted write" in caplog.text


def test_resume_applies_a_new_learning_rate_and_more_steps(tmp_path, tiny_cfg, tiny_supervised):
    run_dir = tmp_path / "run"
    run_training(tiny_cfg("optim=adam", "trainer.max_steps=2", "trainer.validate_every=0"), run_dir,
                 train_dataset=tiny_supervised(8, 32))
    summary = run_training(tiny_cfg("optim=adam", "trainer.max_steps=4", "trainer.validate_every=0",
                                    "optim.generator.lr=2.5e-5"), run_dir, train_dataset=tiny_supervised(8, 32))
    assert summary["steps"] == 4 and summary["steps_this_run"] == 2
    rows = {r["step"]: r for r in jsonl_rows(run_dir)}
    assert rows[2]["lr/generator"] == pytest.approx(1e-4) and rows[3]["lr/generator"] == pytest.approx(2.5e-5)
    state = load_checkpoint(run_dir / "checkpoints" / "step_00000004.pt")
    assert state["optimizers"]["generator"]["param_groups"][0]["lr"] == pytest.approx(2.5e-5)
    assert state["config"]["optim"]["generator"]["lr"] == pytest.approx(2.5e-5)  # the next resume compares with it


@pytest.mark.parametrize("change, keys", [
    (["trainer.batch_size=4"], r"trainer\.batch_size \(2 -> 4\)"),
    (["model.generator.ngf=8"], r"model\.generator\.ngf \(4 -> 8\)"),
    (["stage.losses.alpha=3.0", "seed=5"], r"seed \(0 -> 5\), stage\.losses\.alpha \(1\.0 -> 3\.0\)"),
])
def test_resume_refuses_changes_that_would_not_continue_the_run(tmp_path, tiny_cfg, tiny_supervised, change, keys):
    from bgmatting.engine.settings import ConfigError

    run_dir = tmp_path / "run"
    run_training(tiny_cfg("trainer.max_steps=1", "trainer.validate_every=0"), run_dir,
                 train_dataset=tiny_supervised(8, 32))
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    with pytest.raises(ConfigError, match=rf"resume from .*step_00000001\.pt: \d setting\(s\) differ .*{keys}.*"
                                          r"resume_allow_changes=\["):
        run_training(tiny_cfg("trainer.max_steps=2", "trainer.validate_every=0", *change), run_dir,
                     train_dataset=tiny_supervised(8, 32))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before


def test_resume_allow_changes_accepts_a_batch_size_and_a_model_change_fails_clearly(tmp_path, tiny_cfg,
                                                                                   tiny_supervised):
    run_dir = tmp_path / "run"
    run_training(tiny_cfg("trainer.max_steps=1", "trainer.validate_every=0"), run_dir,
                 train_dataset=tiny_supervised(8, 32))
    summary = run_training(tiny_cfg("trainer.max_steps=2", "trainer.validate_every=0", "trainer.batch_size=4",
                                    "resume_allow_changes=[trainer.batch_size]"), run_dir,
                           train_dataset=tiny_supervised(8, 32))
    assert summary["steps_this_run"] == 1
    with pytest.raises(CheckpointError, match="networks or optimisers do not fit this run's"):
        run_training(tiny_cfg("trainer.max_steps=3", "trainer.validate_every=0", "trainer.batch_size=4",
                              "model.generator.ngf=8", "resume_allow_changes=[model]"), run_dir,
                     train_dataset=tiny_supervised(8, 32))


def test_a_checkpoint_of_another_world_size_resumes_from_rank_0s_state(tmp_path, tiny_cfg, tiny_supervised, caplog,
                                                                        crash_after):
    """A 2-process checkpoint (per-rank RNG and stage states) continued by one process: rank 0's streams, a warning."""
    common = ["trainer.epochs=2", "trainer.validate_every=0", "checkpoint.every_n_steps=2"]
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated failure"), crash_after(2):
        run_training(tiny_cfg(*common), run_dir, train_dataset=tiny_supervised(8, 32))
    path = run_dir / "checkpoints" / "step_00000002.pt"
    state = load_checkpoint(path)
    torch.manual_seed(123)
    rank1 = {**state["rng"][0], "torch": torch.get_rng_state(), "batch_transform": torch.get_rng_state()}
    state.update(world_size=2, rng=[state["rng"][0], rank1], stage_state=state["stage_state"] * 2)
    atomic_save(state, path)
    with caplog.at_level(logging.WARNING, logger="bgmatting.engine.loop"):
        resumed = run_training(tiny_cfg(*common), run_dir, train_dataset=tiny_supervised(8, 32))
    assert "written by 2 process(es), this run has 1" in caplog.text
    assert resumed["steps"] == 8 and resumed["steps_this_run"] == 6
    reference = run_training(tiny_cfg(*common), tmp_path / "reference", train_dataset=tiny_supervised(8, 32))
    assert resumed["generator_fingerprints"] == reference["generator_fingerprints"]  # rank 0's streams continue


def test_a_refused_resume_writes_nothing_anywhere(tmp_path, tiny_cfg, tiny_supervised):
    """Refused after the checkpoint was read (its network does not fit): the run it points at keeps its logs."""
    other = tmp_path / "other"
    run_training(tiny_cfg("trainer.max_steps=3", "checkpoint.every_n_steps=1", "checkpoint.keep_last=5",
                          "trainer.validate_every=0", "logging.log_every=1"), other, train_dataset=tiny_supervised(8, 32))
    before = files_under(tmp_path)
    with pytest.raises(CheckpointError, match="networks or optimisers do not fit"):
        run_training(tiny_cfg("trainer.max_steps=4", "trainer.validate_every=0", "model.generator.ngf=8",
                              "resume_allow_changes=[model]", f"resume={other}/checkpoints/step_00000001.pt"),
                     tmp_path / "launch", train_dataset=tiny_supervised(8, 32))
    assert files_under(tmp_path) == before  # nothing changed, nothing new: not even the launch's own folder
    assert not (tmp_path / "launch").exists()


def test_a_checkpoint_outside_a_run_folder_resumes_into_the_launchs_folder(tmp_path, tiny_cfg, tiny_supervised):
    run_training(tiny_cfg("trainer.max_steps=2", "trainer.validate_every=0"), tmp_path / "run",
                 train_dataset=tiny_supervised(8, 32))
    loose = tmp_path / "downloads" / "model.pt"
    loose.parent.mkdir()
    loose.write_bytes((tmp_path / "run" / "checkpoints" / "step_00000002.pt").read_bytes())
    summary = run_training(tiny_cfg("trainer.max_steps=3", "trainer.validate_every=0", f"resume={loose}"),
                           tmp_path / "launch", train_dataset=tiny_supervised(8, 32))
    assert summary["steps"] == 3 and summary["steps_this_run"] == 1
    assert sorted(p.name for p in loose.parent.iterdir()) == ["model.pt"]  # nothing written beside it
    assert (tmp_path / "launch" / "checkpoints" / "step_00000003.pt").is_file()
    assert summary["run_dir"] == str(tmp_path / "launch")


def test_an_unknown_best_metric_is_refused_at_launch_or_at_the_first_validation(tmp_path, tiny_cfg, tiny_supervised):
    val = fixed(tiny_supervised(2, 32))
    with pytest.raises(ConfigError, match=r"best_metric=val/nonexistent: validation logs val/relative_sad and "
                                          r"val/<set>/<metric> for the sets val"):
        run_training(tiny_cfg("checkpoint.best_metric=val/nonexistent"), tmp_path / "a",
                     train_dataset=tiny_supervised(8, 32), val_dataset=val)
    assert not (tmp_path / "a").exists()  # refused before anything was written
    with pytest.raises(ConfigError, match=r"best_metric=val/val/sadd: validation logs no such value; e\.g\. .*"
                                          r"val/val/sad"):
        run_training(tiny_cfg("checkpoint.best_metric=val/val/sadd"), tmp_path / "b",
                     train_dataset=tiny_supervised(8, 32), val_dataset=val)
    assert not (tmp_path / "b" / "checkpoints").exists()  # the epoch's checkpoint is not written without its score
