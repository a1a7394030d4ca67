"""Training a refining model (base + refiner) in both stages: loss terms, gradients, init=PATH, resume, DDP."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from bgmatting import losses
from bgmatting.engine import distributed
from bgmatting.engine.run_checkpoints import load_checkpoint
from bgmatting.engine.model_start import initialize_from, load_matching_weights, student_of
from bgmatting.engine.recipe import build_matting_model, to_plain
from bgmatting.engine.stages import AdobeStage, Networks, RealStage
from bgmatting.engine.training import run_training
from bgmatting.models import CheckpointError, MultiscaleDiscriminator, load_matting_model, to_base_resolution
from bgmatting.space import to_network

from test_loop import losses_of, read_metrics  # tests/engine is on sys.path (pytest rootdir-relative import)

REFINE = ["model=tiny_refine"]
FULL_TERMS = ("alpha", "alpha_gradient", "foreground", "composite")
COARSE_TERMS = ("coarse_alpha", "coarse_alpha_gradient", "coarse_foreground", "coarse_composite", "error")


def _batch(dataset, n: int = 2) -> dict:
    torch.manual_seed(0)
    np.random.seed(0)
    return default_collate([dataset[i] for i in range(n)])


@pytest.fixture
def refine_model(tiny_cfg):
    """``refine_model(*overrides)``: the MattingModel of the composed model=tiny_refine config."""

    def make(*overrides: str):
        torch.manual_seed(0)
        return build_matting_model(to_plain(tiny_cfg(*REFINE, *overrides).model))

    return make


def test_the_refine_configs_build_base_and_refiner(compose_config):
    for name, hidden, mode, pixels in (("quickstart_refine", 16, "full", 4096), ("paper_refine", 32, "sampling", 80_000)):
        model_cfg = to_plain(compose_config("train", [f"model={name}"]).model)
        with torch.device("meta"):
            model = build_matting_model(model_cfg)
        assert model.generator.has_refine_head and model.refiner.hidden_channels == hidden == model.generator.refine_hidden
        assert model.refine_options["refine_mode"] == mode and model.refine_options["refine_pixels"] == pixels
        assert model.refine_options["downsample_ratio"] == 0.5
    plain = to_plain(compose_config("train", ["model=quickstart"]).model)
    assert build_matting_model(plain).refiner is None and "refine_head" not in plain["generator"]


def test_adobe_stage_scores_refined_and_coarse_outputs(tiny_supervised, refine_model):
    batch = _batch(tiny_supervised(2, 32))
    model = refine_model()
    stage = AdobeStage(Networks(model))
    terms = next(stage.updates(batch, 0, 0)).terms
    assert tuple(terms) == FULL_TERMS + COARSE_TERMS
    assert [terms[t].weight for t in COARSE_TERMS] == [1.0, 1.0, 2.0, 1.0, 1.0]

    model.eval()  # fixed BatchNorm statistics: the same network as the stage's second pass
    terms = next(stage.updates(batch, 0, 0)).terms
    with torch.no_grad():
        raw = model(*(batch[k] for k in ("image", "background", "segmentation", "motion")), raw=True)
    assert raw.alpha.shape[-2:] == (32, 32) and raw.coarse_alpha.shape[-2:] == (16, 16)  # downsample_ratio 0.5
    small_alpha = to_network(to_base_resolution(batch["alpha"], (16, 16)))
    assert torch.equal(terms["alpha"].value.detach(), losses.normalized_l1(raw.alpha, to_network(batch["alpha"])))
    assert torch.equal(terms["coarse_alpha"].value.detach(), losses.normalized_l1(raw.coarse_alpha, small_alpha))
    expected_error = ((raw.error - (raw.coarse_alpha - small_alpha).abs() / 2) ** 2).mean()
    torch.testing.assert_close(terms["error"].value.detach(), expected_error)
    assert "error_pred" in stage.visuals() and stage.visuals()["error_pred"].shape[-2:] == (32, 32)


def test_gradient_reaches_base_and_refiner(tiny_supervised, refine_model):
    batch = _batch(tiny_supervised(2, 32))
    model = refine_model()
    stage = AdobeStage(Networks(model))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(2):  # the refiner's last conv starts at zero: its inner layers get gradient from step 2 on
        optimizer.zero_grad()
        next(stage.updates(batch, step, 0)).total().backward()
        if step == 0:
            optimizer.step()
    for name, module in (("generator", model.generator), ("refiner", model.refiner)):
        for key, parameter in module.named_parameters():
            if parameter.requires_grad:
                assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{name}.{key}"
    assert model.generator.error_head.conv.weight.grad[:1].abs().sum() > 0  # the error map's own channel


@pytest.mark.parametrize("teacher_refines", [False, True])
def test_real_stage_with_a_refining_student(tiny_real, refine_model, teacher_refines, tiny_cfg):
    batch = _batch(tiny_real(2, 32))
    teacher = refine_model() if teacher_refines else build_matting_model(to_plain(tiny_cfg().model))
    student = refine_model()
    stage = RealStage(Networks(student, MultiscaleDiscriminator(ndf=4, n_layers=2), teacher), discriminator_every=1)
    generator_update, discriminator_update = stage.updates(batch, 0, 2)
    terms = generator_update.terms
    assert set(terms) == {"gan", *FULL_TERMS, *COARSE_TERMS}
    assert terms["coarse_alpha_gradient"].weight == pytest.approx(4 * 0.025)  # lambda halved at epoch 2
    assert terms["error"].weight == pytest.approx(0.025)
    assert stage.visuals()["composite_pred"].shape[-2:] == (32, 32)  # D sees full-resolution fakes
    generator_update.total().backward()
    assert student.refiner.fine_stage[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert torch.isfinite(discriminator_update.total())


def test_a_few_steps_of_both_stages_with_a_refining_model(tmp_path, tiny_cfg, tiny_supervised, tiny_real):
    adobe_dir = tmp_path / "outputs" / "adobe" / "run"
    summary = run_training(tiny_cfg(*REFINE, "trainer.max_steps=3"), adobe_dir, train_dataset=tiny_supervised(6, 32),
                           val_dataset=tiny_supervised(2, 32))
    rows = read_metrics(adobe_dir)
    assert all(f"loss/{t}" in rows[3] and np.isfinite(rows[3][f"loss/{t}"]) for t in FULL_TERMS + COARSE_TERMS)
    assert "val/val/sad" in rows[3] and "val/relative_sad" in rows[3]
    checkpoint = load_checkpoint(summary["checkpoint"])
    assert checkpoint["refine_options"]["downsample_ratio"] == 0.5 and "refiner" in checkpoint
    assert load_matting_model(summary["checkpoint"]).refiner is not None

    real_dir = tmp_path / "outputs" / "real" / "run"
    summary = run_training(tiny_cfg("stage=real", *REFINE, "trainer.max_steps=2", "stage.discriminator_every=1",
                                    "trainer.validate_every=0"), real_dir, train_dataset=tiny_real(4, 32))
    rows = read_metrics(real_dir)
    assert all(f"loss/{t}" in rows[2] for t in ("gan", "discriminator", *COARSE_TERMS))
    student = load_checkpoint(summary["checkpoint"])
    assert student["refiner_config"] == checkpoint["refiner_config"]  # the student took its refining teacher's


def test_init_from_a_plain_checkpoint_loads_the_base_and_reports_the_new_parts(tmp_path, tiny_cfg, tiny_supervised,
                                                                                caplog):
    plain = run_training(tiny_cfg("trainer.max_steps=1", "trainer.validate_every=0"), tmp_path / "plain",
                         train_dataset=tiny_supervised(2, 32))
    cfg = tiny_cfg(*REFINE, "trainer.max_steps=1", "optim.generator.lr=0", "trainer.validate_every=0",
                   f"init={plain['checkpoint']}")
    with caplog.at_level(logging.INFO, logger="bgmatting.engine.recipe"):
        summary = run_training(cfg, tmp_path / "refine", train_dataset=tiny_supervised(2, 32))
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("init from"))
    base = load_checkpoint(plain["checkpoint"])["generator"]
    assert f"loaded generator {len(base)}/{len(base) + 2}, refiner 0/8 tensors" in line
    assert "new: generator.error_head (2), refiner.coarse_stage (4), refiner.fine_stage (4); unused: none" in line
    trained = load_checkpoint(summary["checkpoint"])["generator"]
    weight = "image_encoder.stem.conv.weight"
    assert torch.equal(trained[weight], base[weight])  # lr 0: still the plain run's weights

    with pytest.raises(CheckpointError, match="shape mismatch"):
        initialize_from(build_matting_model(to_plain(tiny_cfg("model=quickstart").model)), plain["checkpoint"])
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        initialize_from(build_matting_model(to_plain(tiny_cfg().model)), tmp_path / "missing.pt")


def test_a_refining_teacher_loads_fully_into_its_student_and_a_plain_one_into_the_base(refine_model, tiny_cfg):
    refining = refine_model()
    student = student_of(refining, to_plain(tiny_cfg().model))  # a plain config: the teacher's architecture wins
    report = load_matching_weights(student, refining.checkpoint_state(), "teacher")
    assert student.refiner is not None and not report.new and not report.unused
    plain = build_matting_model(to_plain(tiny_cfg().model))
    student = student_of(plain, to_plain(tiny_cfg(*REFINE).model))
    report = load_matching_weights(student, plain.checkpoint_state(), "teacher")
    assert student.refine_options == refining.refine_options and {k.split(".")[0] for k in report.new} == {
        "generator", "refiner"}


def test_resumed_refine_run_matches_the_uninterrupted_run(tmp_path, tiny_cfg, tiny_supervised, crash_after):
    common = [*REFINE, "trainer.epochs=2", "checkpoint.every_n_steps=3", "trainer.validate_every=0"]
    reference_dir, crashed_dir = tmp_path / "reference", tmp_path / "crashed"
    run_training(tiny_cfg(*common), reference_dir, train_dataset=tiny_supervised(8, 32))
    with pytest.raises(RuntimeError, match="simulated failure after step 7"), crash_after(7):
        run_training(tiny_cfg(*common), crashed_dir, train_dataset=tiny_supervised(8, 32))
    summary = run_training(tiny_cfg(*common, "resume=auto"), crashed_dir, train_dataset=tiny_supervised(8, 32))
    assert summary["steps"] == 8 and summary["steps_this_run"] == 2
    reference, resumed = losses_of(read_metrics(reference_dir)), losses_of(read_metrics(crashed_dir))
    assert sorted(resumed) == sorted(reference) == list(range(1, 9))
    for step in range(1, 9):
        assert resumed[step].keys() == reference[step].keys() and "loss/error" in reference[step]
        for name, value in reference[step].items():
            assert resumed[step][name] == pytest.approx(value, rel=1e-5, abs=1e-7), (step, name)
    final_a = load_checkpoint(reference_dir / "checkpoints" / "step_00000008.pt")
    final_b = load_checkpoint(crashed_dir / "checkpoints" / "step_00000008.pt")
    for network in ("generator", "refiner"):
        for key, value in final_a[network].items():
            torch.testing.assert_close(final_b[network][key], value, rtol=1e-5, atol=1e-6)


def test_ddp_around_the_whole_model_trains_steps_that_refine_no_patch(tmp_path, refine_model, tiny_supervised):
    """One-process gloo DDP (no find_unused_parameters) around the whole MattingModel. In mode thresholding above
    every error no patch is refined; the refiner still runs, on an empty batch of windows, so its weights get a
    zero gradient rather than none and DDP's reduction completes (an unused parameter fails the second step)."""
    batch = _batch(tiny_supervised(2, 32))
    model = refine_model("model.refine.refine_mode=thresholding", "model.refine.refine_threshold=1.0")
    with torch.no_grad():
        assert model(*(batch[k] for k in ("image", "background", "segmentation", "motion")), raw=True).refined.sum() == 0
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ctx = distributed.DistContext(rank=0, world_size=2)  # makes wrap_module wrap (the group itself has 1 rank)
        wrapped = distributed.wrap_module(model, ctx, torch.device("cpu"))
        assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel) and wrapped.module is model
        stage = AdobeStage(Networks(wrapped))
        for step in range(3):
            update = next(stage.updates(batch, step, 0))
            assert torch.isfinite(update.total())
            update.total().backward()
        assert model.refiner.fine_stage[-1].weight.grad is not None
        assert model.refiner.fine_stage[-1].weight.grad.abs().sum() == 0
    finally:
        torch.distributed.destroy_process_group()
