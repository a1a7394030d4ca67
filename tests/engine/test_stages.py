"""Stage objects: loss terms, the GAN gradient path (fixed vs. public-code bug), discriminator cadence."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from bgmatting import losses
from bgmatting.engine.adversarial import fake_backgrounds, horizontal_shifts, shifted_composite
from bgmatting.engine.stages import AdobeStage, Networks, RealStage, SupervisionSchedule
from bgmatting.models import Generator, MattingModel, MultiscaleDiscriminator
from bgmatting.space import to_network

TINY_G = dict(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1, motion_uses_background_feature=False)


def _model() -> MattingModel:
    return MattingModel(Generator(**TINY_G))


def _batch(dataset_cls, n=2, size=32):
    dataset = dataset_cls(length=n, size=size)
    torch.manual_seed(0)
    np.random.seed(0)
    return default_collate([dataset[i] for i in range(n)])


def _real_stage(detach: bool, every: int = 5) -> RealStage:
    torch.manual_seed(0)
    model, teacher = _model(), _model()
    discriminator = MultiscaleDiscriminator(ndf=4, n_layers=2)
    return RealStage(Networks(model, discriminator, teacher), detach_fake_for_generator=detach, discriminator_every=every)


def test_adobe_stage_terms_and_backward(tiny_supervised):
    batch = _batch(tiny_supervised)
    generator = _model()
    stage = AdobeStage(Networks(generator))
    updates = list(stage.updates(batch, step=0, epoch=0))
    assert [u.optimizer for u in updates] == ["generator"]
    terms = updates[0].terms
    assert set(terms) == {"alpha", "alpha_gradient", "foreground", "composite"}
    assert [terms[k].weight for k in ("alpha", "alpha_gradient", "foreground", "composite")] == [1.0, 1.0, 2.0, 1.0]
    total = updates[0].total()
    expected = sum(t.weight * t.value for t in terms.values())
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total.backward()
    grads = [p.grad for p in generator.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert set(stage.visuals()) >= {"image", "captured_background", "segmentation", "motion", "alpha_pred",
                                    "alpha_reference", "foreground_pred", "composite_pred"}


def test_adobe_stage_scores_the_generator_on_network_space_inputs(tiny_supervised):
    """The stage runs the generator through its MattingModel: the same raw outputs as on converted inputs."""
    batch = _batch(tiny_supervised)
    model = _model().eval()  # fixed BatchNorm statistics: both passes see the same network
    terms = next(AdobeStage(Networks(model)).updates(batch, 0, 0)).terms
    with torch.no_grad():
        alpha_raw, fg_raw = model.generator(*(to_network(batch[k]) for k in ("image", "background", "segmentation", "motion")))
    assert torch.equal(terms["alpha"].value.detach(), losses.normalized_l1(alpha_raw, to_network(batch["alpha"])))
    fg_mask = (batch["alpha"] > 0).float()
    expected_fg = losses.normalized_l1(fg_raw, to_network(batch["foreground"]), fg_mask)
    assert torch.equal(terms["foreground"].value.detach(), expected_fg)


def test_adobe_composite_uses_the_clean_background(tiny_supervised):
    """With a perfect prediction of alpha and F the compositional loss is 0 only against background_clean."""
    batch = _batch(tiny_supervised)

    class Oracle(torch.nn.Module):
        def forward(self, image, background, segmentation, motion):
            return batch["alpha"] * 2 - 1, batch["foreground"] * 2 - 1

    stage = AdobeStage(Networks(MattingModel(Oracle())), compose_opaque_alpha=None)
    terms = next(stage.updates(batch, 0, 0)).terms
    assert terms["composite"].value.item() == pytest.approx(0.0, abs=1e-5)
    assert terms["alpha"].value.item() == pytest.approx(0.0, abs=1e-6)
    batch["background_clean"] = batch["background"]  # the perturbed plate: no longer consistent with I
    assert next(stage.updates(batch, 0, 0)).terms["composite"].value.item() > 1e-3


@pytest.mark.parametrize("detach, reaches", [(False, True), (True, False)])
def test_gan_gradient_reaches_the_generator_only_without_the_bug(tiny_real, detach, reaches):
    stage = _real_stage(detach)
    batch = _batch(tiny_real)
    update = next(stage.updates(batch, step=1, epoch=0))
    assert update.optimizer == "generator"
    gan = update.terms["gan"].value
    assert gan.requires_grad is reaches  # with the bug the term is a constant for the generator
    if reaches:
        gan.backward()
        grads = [p.grad for p in stage.trained["generator"].parameters() if p.requires_grad]
        total = sum(float(g.abs().sum()) for g in grads if g is not None)
        assert total > 0
    else:  # the full objective still trains the generator through the teacher terms
        update.total().backward()
    assert sum(1 for p in stage.trained["generator"].parameters() if p.grad is not None) > 0
    # the generator's objective never builds discriminator weight gradients
    assert all(p.grad is None for p in stage.trained["discriminator"].parameters())
    assert all(p.requires_grad for p in stage.trained["discriminator"].parameters())


def test_real_stage_weights_follow_the_supervision_schedule(tiny_real):
    stage = _real_stage(detach=False)
    batch = _batch(tiny_real)
    terms = next(stage.updates(batch, step=1, epoch=2)).terms  # one halving at epoch 2
    lam = 0.05 / 2
    assert terms["gan"].weight == 1.0
    assert terms["alpha"].weight == pytest.approx(2 * lam)
    assert terms["alpha_gradient"].weight == pytest.approx(4 * lam)
    assert terms["foreground"].weight == pytest.approx(lam)
    assert terms["composite"].weight == pytest.approx(lam)


def test_supervision_schedule_paper_and_public_code():
    paper = SupervisionSchedule(0.05, every=2, first_halving=2)
    assert [paper(e) for e in range(6)] == pytest.approx([0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125])
    public = SupervisionSchedule(0.05, every=2, first_halving=1)  # train_real_fixed.py halves after epochs 0, 2, 4
    assert [public(e) for e in range(5)] == pytest.approx([0.05, 0.025, 0.025, 0.0125, 0.0125])


def test_discriminator_updates_every_k_steps(tiny_real):
    stage = _real_stage(detach=False, every=3)
    batch = _batch(tiny_real)
    kinds = {step: [u.optimizer for u in stage.updates(batch, step, 0)] for step in range(6)}
    assert kinds[0] == kinds[3] == ["generator", "discriminator"]
    assert kinds[1] == kinds[2] == kinds[4] == ["generator"]
    d_update = list(stage.updates(batch, 0, 0))[1]
    extra = d_update.extra
    assert d_update.terms["discriminator"].value.item() == pytest.approx(
        0.5 * (extra["discriminator_real"] + extra["discriminator_fake"]), rel=1e-5)
    d_update.total().backward()
    assert all(p.grad is not None for p in stage.trained["discriminator"].parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in stage.trained["generator"].parameters())


def test_real_stage_public_code_masks_change_the_terms(tiny_real):
    batch = _batch(tiny_real)
    paper = _real_stage(False)
    public = _real_stage(False)
    public.foreground_mask_alpha, public.composite_mask_segmentation = 0.01, 0.95
    t_paper = next(paper.updates(batch, 1, 0)).terms
    t_public = next(public.updates(batch, 1, 0)).terms
    assert t_paper["alpha"].value.item() == pytest.approx(t_public["alpha"].value.item(), rel=1e-6)
    assert t_paper["composite"].value.item() != pytest.approx(t_public["composite"].value.item(), rel=1e-3)


def test_unknown_loss_term_is_rejected():
    with pytest.raises(ValueError, match="unknown loss term"):
        AdobeStage(Networks(_model()), losses={"alpha": 1.0, "alpah_gradient": 1.0})


def test_horizontal_shifts_keep_the_subject_in_frame():
    seg = torch.zeros(3, 1, 8, 40)
    seg[0, :, :, 15:25] = 1  # subject columns 15..24 -> offsets in [-5, 6)
    seg[1, :, :, 0:40] = 1  # too wide -> 0
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):
        shifts = horizontal_shifts(seg, rng, margin=10, threshold=0.1)
        assert -5 <= shifts[0] < 6 and shifts[1] == 0 and shifts[2] == 0


def test_shifted_composite_rolls_alpha_and_foreground():
    alpha = -torch.ones(1, 1, 2, 6)
    alpha[..., 1] = 1  # opaque column 1
    fg = torch.full((1, 3, 2, 6), 0.5)
    bg = torch.full((1, 3, 2, 6), -0.5)
    out = shifted_composite(alpha, fg, bg, [3])
    assert torch.allclose(out[0, :, :, 4], torch.full((3, 2), 0.5))
    assert torch.allclose(out[0, :, :, 1], torch.full((3, 2), -0.5))


def test_fake_backgrounds_pick_targets_or_other_captures():
    captured = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    targets = torch.full((4, 3, 2, 2), 100.0)
    rng = torch.Generator().manual_seed(1)
    out = fake_backgrounds(captured, targets, rng, target_probability=0.5)
    for i in range(4):
        v = out[i, 0, 0, 0].item()
        assert v == 100.0 or (v != i and v in (0.0, 1.0, 2.0, 3.0))
    only_targets = fake_backgrounds(captured, targets, rng, target_probability=1.0)
    assert torch.equal(only_targets, targets)


def test_supervision_schedule_in_steps_ignores_epochs():
    by_step = SupervisionSchedule(0.05, every=100, first_halving=100, unit="step")
    assert [by_step(epoch=9, step=s) for s in (0, 99, 100, 199, 200)] == pytest.approx(
        [0.05, 0.05, 0.025, 0.025, 0.0125])
    assert SupervisionSchedule(0.05, every=0, unit="step")(epoch=3, step=10_000) == 0.05  # constant
    with pytest.raises(ValueError, match="unit"):
        SupervisionSchedule(unit="minute")
