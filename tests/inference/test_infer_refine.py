"""Refine mode: the base + refiner model on whole frames at their native resolution, in Matter and the command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from infer_helpers import TINY, disc_alpha, paste_subject, photo, refining_model

from bgmatting import infer
from bgmatting.io import read_alpha
from bgmatting.inference import Matter
from bgmatting.models import Generator


def _frame(height: int, width: int):
    plate = photo("coffee", height, width)
    alpha = disc_alpha(height, width, (height / 2, width / 2), height / 3)
    return paste_subject(plate, alpha), plate, (alpha > 0.5).astype(np.float32)


def test_refine_mode_mattes_the_native_frame_with_base_and_refiner():
    model = refining_model(refine_mode="full")
    seen = {}
    model.refiner.register_forward_hook(lambda module, args, out: seen.update(image=args[0].shape, base=args[2].alpha_raw.shape))
    result = Matter(model, mode="refine", precision="fp32", device="cpu").matte(*_frame(50, 75))
    assert seen == {"image": (1, 3, 52, 76), "base": (1, 1, 28, 40)}  # padded native frame; base at ratio 0.5
    assert result.alpha.shape == (50, 75) and result.foreground.shape == (50, 75, 3)
    assert np.all(result.foreground[result.alpha <= 0.01] == 0)  # the same clean-up as the other modes

    frame = _frame(48, 64)  # a multiple of 4: full mode at native size runs the same model on the same input
    refined = Matter(model, mode="refine", precision="fp32", device="cpu").matte(*frame)
    full = Matter(model, mode="full", size=0, precision="fp32", device="cpu").matte(*frame)
    np.testing.assert_array_equal(refined.alpha, full.alpha)
    np.testing.assert_array_equal(refined.foreground, full.foreground)


def test_refine_mode_needs_a_refiner():
    with pytest.raises(ValueError, match="refine mode needs a model with a refiner"):
        Matter(Generator(**TINY), mode="refine", precision="fp32", device="cpu")


def _run(capsys, *args) -> tuple[int, str]:
    code = infer.main([str(a) for a in args] + ["--no-progress", "--device", "cpu"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_infer_refine_mode_with_its_options(tmp_path, capsys, photo_folder, tiny_checkpoint):
    checkpoint = tmp_path / "refine.pt"
    torch.save(refining_model().checkpoint_state(), checkpoint)
    common = ["--input", photo_folder["images"], "--background", photo_folder["plates"], "--checkpoint", checkpoint,
              "--segmentation", photo_folder["masks"], "--no-align", "--mode", "refine"]
    outputs = {}
    for name, options in (("sampled", ["--refine-pixels", "512", "--downsample-ratio", "0.25"]),
                          ("none", ["--refine-pixels", "0", "--downsample-ratio", "0.25"]),
                          ("auto", ["--refine-mode", "full"])):
        code, log = _run(capsys, *common, "--output", tmp_path / name, *options)
        assert code == 0, log
        assert "3 frames" in log and "refine mode" in log
        outputs[name] = [read_alpha(tmp_path / name / "alpha" / f"{n}.png") for n in photo_folder["names"]]
        assert all(a.shape == photo_folder["size"] for a in outputs[name])
    assert any(np.abs(a - b).max() > 0 for a, b in zip(outputs["sampled"], outputs["none"]))  # the refiner ran

    code, log = _run(capsys, *common, "--output", tmp_path / "plain", "--checkpoint", tiny_checkpoint)
    assert code == 2 and f"{tiny_checkpoint}: --mode refine needs a checkpoint with a refiner" in log
    assert "Traceback" not in log and not (tmp_path / "plain" / "alpha").exists()
    for flag, value in (("--downsample-ratio", "1.5"), ("--downsample-ratio", "half"), ("--refine-pixels", "-4")):
        with pytest.raises(SystemExit) as exit_info:
            infer.main([*map(str, common), "--output", str(tmp_path / "bad"), flag, value])
        assert exit_info.value.code == 2
    assert "downsample ratio must be a number in (0, 1]" in capsys.readouterr().err


def test_without_a_mode_infer_picks_refine_for_a_refining_checkpoint_and_original_otherwise(tmp_path, capsys,
                                                                                          photo_folder,
                                                                                          tiny_checkpoint):
    refining = tmp_path / "refine.pt"
    torch.save(refining_model().checkpoint_state(), refining)
    common = ["--input", photo_folder["images"], "--background", photo_folder["plates"], "--segmentation",
              photo_folder["masks"], "--no-align", "--size", "64"]
    for checkpoint, expected in ((refining, "refine"), (tiny_checkpoint, "original")):
        out = tmp_path / expected
        code, log = _run(capsys, *common, "--checkpoint", checkpoint, "--output", out)
        assert code == 0, log
        summary = json.loads((out / "summary.json").read_text())
        assert summary["mode"] == expected, summary
        assert f"mode: {expected} (the default for a checkpoint" in log
    explicit = tmp_path / "explicit"
    code, log = _run(capsys, *common, "--checkpoint", refining, "--output", explicit, "--mode", "original")
    assert code == 0 and json.loads((explicit / "summary.json").read_text())["mode"] == "original", log
