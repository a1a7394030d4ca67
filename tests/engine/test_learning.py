"""Training moves the networks the right way, through the real loop and stages on a fixed batch: the supervised
loss goes down, the discriminator learns to tell real from fake, and the generator's GAN term moves D(fake)
toward "real". (Finite losses and existing gradients alone would not notice a flipped sign or swapped labels.)"""
from __future__ import annotations

import pytest
import torch

from bgmatting.engine.distributed import unwrap
from bgmatting.losses import score_maps

from engine_helpers import first_batch, make_trainer


def test_a_few_steps_lower_the_supervised_loss_on_a_fixed_batch(tmp_path, tiny_cfg, tiny_supervised):
    trainer = make_trainer(tiny_cfg("optim=adam", "optim.generator.lr=3e-3", "trainer.validate_every=0"),
                           tmp_path / "run", tiny_supervised(8, 32))
    batch = first_batch(trainer)
    totals = [trainer.train_step(batch)["loss/generator_total"] for _ in range(12)]
    assert totals[0] > 0 and totals[-1] < 0.7 * totals[0], totals  # each value: the loss before that step's update


def _real_trainer(tmp_path, tiny_cfg, tiny_real, teacher, *overrides):
    cfg = tiny_cfg("stage=real", f"teacher={teacher}", "optim=adam", "trainer.validate_every=0", *overrides)
    trainer = make_trainer(cfg, tmp_path / "real", tiny_real(8, 32))
    return trainer, first_batch(trainer)


def _scores(trainer, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """D's score maps of the real images and of their fakes (all scales, flattened), the fakes drawn with the
    stage's generator in a fixed state (the same shifts and backgrounds every call)."""
    stage = trainer.stage
    state = stage.rng.get_state()
    with torch.no_grad():
        raw = stage._raw_matte(stage.trained["generator"], batch)
        fake = stage._fake_images(batch["segmentation"], raw.image, raw.alpha, raw.foreground,
                                  *raw.truth(batch["background"], batch["target_background"]))
        discriminator = unwrap(stage.trained["discriminator"])
        real_scores, fake_scores = (torch.cat([m.flatten() for m in score_maps(discriminator(x))])
                                    for x in (raw.image, fake))
    stage.rng.set_state(state)
    return real_scores, fake_scores


def _train_discriminator(trainer, batch, steps: int) -> None:
    """The loop's optimisation of the stage's discriminator update, ``steps`` times on one (real, fake) pair."""
    stage = trainer.stage
    state = stage.rng.get_state()
    with torch.no_grad():
        raw = stage._raw_matte(stage.trained["generator"], batch)
        fake = stage._fake_images(batch["segmentation"], raw.image, raw.alpha, raw.foreground,
                                  *raw.truth(batch["background"], batch["target_background"]))
    stage.rng.set_state(state)
    with pytest.MonkeyPatch.context() as patch:  # a step of only the discriminator's update, through the loop
        patch.setattr(stage, "updates", lambda *args: iter([stage._discriminator_update(raw.image, fake)]))
        for _ in range(steps):
            assert "loss/discriminator" in trainer.train_step(batch)


def test_discriminator_updates_separate_real_from_fake_on_a_fixed_pair(tmp_path, tiny_cfg, tiny_real, adobe_teacher):
    trainer, batch = _real_trainer(tmp_path, tiny_cfg, tiny_real, adobe_teacher["checkpoint"],
                                   "optim.discriminator.lr=1e-2")
    real_before, fake_before = (s.mean() for s in _scores(trainer, batch))
    _train_discriminator(trainer, batch, 15)
    real_after, fake_after = (s.mean() for s in _scores(trainer, batch))
    assert real_after - fake_after > (real_before - fake_before) + 0.2
    assert real_after > real_before and fake_after < fake_before  # LSGAN targets: real 1, fake 0


def test_the_generators_gan_term_moves_d_of_fake_toward_real(tmp_path, tiny_cfg, tiny_real, adobe_teacher):
    """With a discriminator that tells the fakes apart (trained first, then frozen), the GAN term alone must make
    the generator's fakes score higher."""
    trainer, batch = _real_trainer(tmp_path, tiny_cfg, tiny_real, adobe_teacher["checkpoint"],
                                   "optim.discriminator.lr=1e-2", "optim.generator.lr=3e-3",
                                   "stage.discriminator_every=1000", "stage.losses.alpha=0",
                                   "stage.losses.alpha_gradient=0", "stage.losses.foreground=0",
                                   "stage.losses.composite=0")
    _train_discriminator(trainer, batch, 15)
    trainer.state.step = 1  # the discriminator only steps at multiples of discriminator_every (and at 0)
    discriminator_before = {k: v.clone() for k, v in unwrap(trainer.stage.trained["discriminator"]).state_dict().items()}
    before = _scores(trainer, batch)[1]
    for _ in range(8):
        scalars = trainer.train_step(batch)
        assert set(scalars) >= {"loss/gan"} and "loss/discriminator" not in scalars
    after = _scores(trainer, batch)[1]
    assert after.mean() > before.mean() + 0.1, (before.mean(), after.mean())
    assert ((after - 1) ** 2).mean() < ((before - 1) ** 2).mean()  # closer to the "real" label 1
    for key, value in unwrap(trainer.stage.trained["discriminator"]).state_dict().items():
        assert torch.equal(value, discriminator_before[key]), key  # only the generator moved
