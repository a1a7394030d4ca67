"""Training in the other numeric modes and with data workers, on the CPU: bf16 autocast, the loop's gradient-scaler
path (torch's CPU GradScaler standing in for CUDA fp16, which a CPU cannot run), and num_workers > 0.

Not runnable on a CPU: fp16 autocast (``resolve_precision`` refuses fp16 without CUDA) and CUDA's GradScaler
kernels; the scaler logic of the loop (scaled backward, unscale before clipping, skipped overflow steps, scale
updates) is the same code and is what runs here."""
from __future__ import annotations

import json

import pytest
import torch

from bgmatting.engine.training import run_training

from engine_helpers import assert_same_state, first_batch, make_trainer, training_state


def test_bf16_autocast_training_on_the_cpu_learns_with_fp32_weights(tmp_path, tiny_cfg, tiny_supervised):
    trainer = make_trainer(tiny_cfg("precision=bf16", "optim=adam", "optim.generator.lr=3e-3",
                                    "trainer.validate_every=0"), tmp_path / "bf16", tiny_supervised(8, 32))
    assert trainer.place.precision.dtype == torch.bfloat16
    seen = []
    stem = trainer.model.generator.image_encoder.stem.conv
    handle = stem.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    batch = first_batch(trainer)
    totals = [trainer.train_step(batch)["loss/generator_total"] for _ in range(8)]
    handle.remove()
    assert set(seen) == {torch.bfloat16}  # the forward ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32
    assert totals[-1] < 0.8 * totals[0], totals


def _scaled(trainer, init_scale: float = 2.0 ** 10):
    trainer.scalers = {name: torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1)
                       for name in trainer.optimizers}
    return trainer


def test_the_loops_gradient_scaler_path_equals_unscaled_training(tmp_path, tiny_cfg, tiny_supervised):
    """Loss scaling by a power of two is exact: the scaled path (scaled backward, unscale, clip, step, update)
    takes the same step as plain fp32."""
    overrides = ("optim=adam", "trainer.validate_every=0", "trainer.grad_clip_norm=0.5")
    plain = make_trainer(tiny_cfg(*overrides), tmp_path / "plain", tiny_supervised(8, 32))
    scaled = _scaled(make_trainer(tiny_cfg(*overrides), tmp_path / "scaled", tiny_supervised(8, 32)))
    batch = first_batch(plain)
    for _ in range(2):
        a, b = plain.train_step(batch), scaled.train_step(batch)
        assert b["grad_norm/generator"] == pytest.approx(a["grad_norm/generator"], rel=1e-5)  # unscaled before clipping
    for (name, x), (_, y) in zip(plain.model.named_parameters(), scaled.model.named_parameters()):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-7, msg=name)
    assert scaled.scalers["generator"].get_scale() == 2.0 ** 12  # grew after each good step (growth_interval 1)


def test_an_overflow_under_the_scaler_skips_the_optimiser_step_and_lowers_the_scale(tmp_path, tiny_cfg,
                                                                                     tiny_supervised):
    trainer = _scaled(make_trainer(tiny_cfg("optim=adam", "trainer.validate_every=0", "trainer.grad_clip_norm=1.0"),
                                   tmp_path / "run", tiny_supervised(8, 32)))
    batch = first_batch(trainer)
    trainer.train_step(batch)
    before = training_state(trainer)["networks"]["generator"]
    stem = trainer.model.generator.image_encoder.stem.conv.weight
    handle = stem.register_hook(lambda grad: grad * float("inf"))
    scalars = trainer.train_step(batch)
    handle.remove()
    assert scalars is not None  # AMP's own business, not a skipped step of the loop
    after = training_state(trainer)["networks"]["generator"]
    parameters = {name for name, _ in trainer.model.named_parameters()}
    assert_same_state({k: v for k, v in before.items() if k in parameters},
                      {k: v for k, v in after.items() if k in parameters})  # the optimiser did not step
    assert trainer.scalers["generator"].get_scale() == 2.0 ** 11 / 2  # grew once, then halved


def test_data_workers_give_the_same_run_as_the_main_process(tmp_path, tiny_cfg, tiny_supervised):
    """Samples are seeded per (seed, epoch, index), so worker processes (the paper presets use 4) change nothing."""
    rows = {}
    for workers in (0, 2):
        run_dir = tmp_path / f"workers{workers}"
        run_training(tiny_cfg("trainer.epochs=2", "trainer.validate_every=0", f"trainer.num_workers={workers}"),
                     run_dir, train_dataset=tiny_supervised(8, 32))
        rows[workers] = [{k: v for k, v in json.loads(line).items() if k.startswith("loss/")}
                         for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows[0]) == 8 and rows[2] == rows[0]
