"""Non-finite losses and gradients: a skipped step leaves the model exactly as it was, no checkpoint ever holds
NaN or infinity, gradient clipping of a non-finite norm, and the limit on consecutive skips."""
from __future__ import annotations

import math

import pytest
import torch

from bgmatting.engine.training import run_training
from bgmatting.engine.run_checkpoints import CheckpointError, CheckpointManager, load_checkpoint
from bgmatting.engine.nonfinite import NonFiniteLossError
from bgmatting.engine.stages import LossTerm
from engine_helpers import assert_same_state, first_batch, make_trainer, nonfinite_names, training_state


def poisoned(batch: dict) -> dict:
    """The batch with one NaN pixel in the first image (its forward pass still updates BatchNorm statistics)."""
    batch = {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()}
    batch["image"][0, :, 3, 3] = float("nan")
    return batch


def test_a_skipped_step_leaves_weights_batchnorm_statistics_and_optimiser_exactly_as_before(
        tmp_path, tiny_cfg, tiny_supervised):
    trainer = make_trainer(tiny_cfg("trainer.nonfinite=skip", "trainer.validate_every=0"), tmp_path / "run",
                           tiny_supervised(8, 32))
    batch = first_batch(trainer)
    assert trainer.train_step(batch) is not None  # a good step first: the optimiser has state to keep
    before = training_state(trainer)
    assert trainer.train_step(poisoned(batch)) is None
    assert_same_state(before, training_state(trainer))
    assert trainer.train_step(batch) is not None  # and training goes on from there


def test_real_stage_skip_after_the_generator_stepped_restores_the_generator(
        tmp_path, tiny_cfg, tiny_real, adobe_teacher):
    """The generator's update succeeds and steps; the discriminator's is non-finite: the whole step is undone."""
    cfg = tiny_cfg("stage=real", "stage.discriminator_every=1", "trainer.nonfinite=skip", "trainer.validate_every=0",
                   f"teacher={adobe_teacher['checkpoint']}")
    trainer = make_trainer(cfg, tmp_path / "real", tiny_real(8, 32))
    batch = first_batch(trainer)
    assert "loss/discriminator" in trainer.train_step(batch)
    before = training_state(trainer)
    stage, original = trainer.stage, trainer.stage._discriminator_update

    def nan_discriminator_update(image, fake):
        update = original(image, fake)
        update.terms["discriminator"] = LossTerm(update.terms["discriminator"].value * float("nan"))
        return update

    stage._discriminator_update = nan_discriminator_update
    assert trainer.train_step(batch) is None
    assert_same_state(before, training_state(trainer))


def test_skip_mode_run_validates_and_checkpoints_finite_weights(tmp_path, tiny_cfg, tiny_supervised):
    """The sample with NaNs is skipped; BatchNorm statistics stay finite, so validation (eval mode) and every
    checkpoint are finite, and no later step or sample is blamed."""
    cfg = tiny_cfg("trainer.batch_size=1", "trainer.nonfinite=skip", "checkpoint.every_n_steps=1",
                   "checkpoint.keep_last=10")
    run_dir = tmp_path / "skip"
    summary = run_training(cfg, run_dir, train_dataset=tiny_supervised(6, 32, nan_at=2),
                           val_dataset=tiny_supervised(2, 32))
    assert summary["steps"] == 6 and summary["skipped_steps"] == 1
    checked = ("val/val/sad", "val/val/mse", "val/relative_sad")
    assert all(math.isfinite(summary["validation"][k]) for k in checked)
    files = sorted((run_dir / "checkpoints").glob("*.pt"))
    assert len(files) == 7  # steps 1..6 and best.pt
    for path in files:
        assert nonfinite_names(load_checkpoint(path)) == [], path


def test_no_checkpoint_is_written_with_a_nonfinite_value(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints")
    manager.save({"generator": {"w": torch.ones(2)}}, 1)
    state = {"generator": {"w": torch.ones(2), "bn.running_var": torch.tensor([1.0, float("nan")])},
             "optimizers": {"generator": {"state": {0: {"exp_avg": torch.tensor([float("inf")])}}}}}
    with pytest.raises(CheckpointError, match=r"step_00000002\.pt: 2 tensor\(s\) hold NaN or infinite values, "
                                              r"e\.g\. generator\.bn\.running_var, optimizers\.generator\.state\.0\."
                                              r"exp_avg.*step_00000001\.pt is kept"):
        manager.save(state, 2, is_best=True)
    assert sorted(p.name for p in manager.directory.iterdir()) == ["step_00000001.pt"]


def test_nonfinite_gradient_norm_with_clipping_stops_or_skips(tmp_path, tiny_cfg, tiny_supervised):
    """A finite loss whose gradient overflows: clipping cannot rescue an infinite norm; the step is refused."""
    trainer = make_trainer(tiny_cfg("trainer.grad_clip_norm=0.01", "trainer.validate_every=0"), tmp_path / "a",
                           tiny_supervised(8, 32))
    batch = first_batch(trainer)
    scalars = trainer.train_step(batch)
    assert 0.01 < scalars["grad_norm/generator"] < math.inf  # the norm before clipping is logged
    after_one = training_state(trainer)
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in trainer.model.parameters() if p.grad is not None))
    assert float(total) == pytest.approx(0.01, rel=1e-4)  # the step used gradients clipped to the limit

    with torch.no_grad():  # a weight of 1e38 makes the gradients overflow to inf while the loss stays finite
        stem = trainer.model.generator.image_encoder.stem.conv.weight
        saved = stem.clone()
    for mode, expected in (("skip", None), ("stop", NonFiniteLossError)):
        trainer.options.nonfinite = mode
        with torch.no_grad():
            stem.copy_(saved)
        hook = stem.register_hook(lambda grad: grad * float("inf"))
        try:
            if expected is not None:
                with pytest.raises(expected, match=r"non-finite gradient norm at step \d+ .*optimiser 'generator'"):
                    trainer.train_step(batch)
            else:
                assert trainer.train_step(batch) is None
                assert_same_state(after_one, training_state(trainer))
        finally:
            hook.remove()


def test_too_many_consecutive_skipped_steps_end_the_run(tmp_path, tiny_cfg, tiny_supervised):
    cfg = tiny_cfg("trainer.batch_size=1", "trainer.nonfinite=skip", "trainer.max_skipped_steps=2",
                   "trainer.validate_every=0")

    class AllNaN(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, index):
            sample = tiny_supervised(6, 32)[index]
            sample["image"] = sample["image"] * float("nan") if index != 0 else sample["image"]
            return sample

    with pytest.raises(NonFiniteLossError, match=r"3 consecutive non-finite steps; last: non-finite loss at step"):
        run_training(cfg, tmp_path / "many", train_dataset=AllNaN())
    assert not list((tmp_path / "many" / "checkpoints").glob("step_*.pt"))  # nothing after the first NaN step
