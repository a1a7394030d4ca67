"""The quickstart's recipe learns: a short run of the real ``stage=adobe`` config (model, levers, losses, optimiser
and schedule as shipped; only the data, the crop and the step count shrunk) beats the alpha = S baseline on fixed
held-out photo composites it never saw, and improves on its own first validation; the recipe's full output (the
starter weights) beats every baseline on phone-like captures it never saw."""
from __future__ import annotations

import json

from bgmatting.engine.training import run_training
from bgmatting.evaluate import run as run_evaluate

SHORT_RUN = ["stage=adobe", "logging=quiet", "cpu_threads=2", "trainer.max_steps=150", "trainer.epochs=20",
             "trainer.val_limit=4", "data.generation.n_fg=6", "data.generation.n_bg=8", "data.generation.size=64",
             "data.generation.n_test_fg=2", "data.generation.n_test_bg=2", "data.train.samples_per_fg=8",
             "data.train.augment.output_size=64", "evaluation.sets.photo_96.size=48",
             "evaluation.sets.photo_96.n_scenes=4",
             "~evaluation.sets.photo_128", "~evaluation.sets.photo_192", "~evaluation.sets.photo_256",
             "~evaluation.sets.captures_256", "~evaluation.sets.captures_512"]


# ~15 s on 2 cores: the one test that trains for real
def test_a_short_quickstart_run_beats_alpha_equals_s_on_unseen_photo_composites(tmp_path, compose_config):
    cfg = compose_config("train", [*SHORT_RUN, f"outputs_root={tmp_path / 'outputs'}",
                                   f"data.cache_dir={tmp_path / 'cache'}"])
    assert cfg.model.refiner is not None  # the shipped quickstart model, not a test-only one
    summary = run_training(cfg, tmp_path / "outputs" / "adobe" / "run")
    scores = summary["evaluation"]["photo_96"]["summaries"]
    model, alpha_is_s = scores["model"], scores["baseline: segmentation"]
    assert model["images"] == alpha_is_s["images"] == 4
    assert model["sad"] < 0.9 * alpha_is_s["sad"] and model["mse"] < alpha_is_s["mse"], (model, alpha_is_s)
    rows = [json.loads(line) for line in (tmp_path / "outputs" / "adobe" / "run" / "metrics.jsonl").open()]
    curve = [r["val/photo_96/sad"] for r in rows if "val/photo_96/sad" in r]
    assert len(curve) >= 2 and curve[-1] < curve[0], curve  # it learned here, it did not start there


# ~12 s on 2 cores. The recipe's full run takes minutes (too long for the suite); its output ships as the starter
# weights, built by scripts/build_starter_weights.py from the quickstart configs as they are. A short run of 300
# steps at 64 px does not reach the baselines on captures (measured: frame SAD 0.55x of the best baseline), so the
# learning claim is checked on the recipe's real output, on captures none of its training saw.
def test_the_quickstarts_output_beats_every_baseline_on_unseen_captures(tmp_path, compose_config):
    """Phone-like captures (plate from another pose, exposure, shadow, noise, JPEG), matted end to end as infer
    does: the starter weights beat alpha = S, the background-difference matte and the careful classical matte on
    whole-frame SAD and MSE, and on band MSE and Grad."""
    cfg = compose_config("evaluate", ["checkpoint=starter", "dataset.captures=true", "dataset.capture_sizes=[256]",
                                      "dataset.capture_clips=0", f"data.cache_dir={tmp_path / 'cache'}",
                                      f"output_dir={tmp_path / 'report'}", "progress=false", "device=cpu"])
    scores = run_evaluate(cfg)["captures_256"]["summaries"]
    model = scores.pop("model")
    assert model["images"] == 24 and set(scores) == {f"baseline: {name}" for name in
                                                     ("segmentation", "background_difference", "careful")}
    for name, baseline in scores.items():
        for metric in ("sad_frame", "mse_frame", "mse", "grad"):
            assert model[metric] < baseline[metric], (metric, name, model, baseline)
