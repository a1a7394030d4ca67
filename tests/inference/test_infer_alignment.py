"""``python -m bgmatting.infer`` with default flags on hand-held captures (plates from another pose with another
exposure), the original release's folder layout, two files of one stem, and greyscale images."""
from __future__ import annotations

import json

import numpy as np
import pytest
from infer_helpers import disc_alpha, handheld_capture, paste_subject, photo

from bgmatting import infer
from bgmatting.io import read_alpha, write_image
from bgmatting.inference.sinks import SUMMARY_NAME
from bgmatting.preprocess.misalignment import tolerance_px


def _run(capsys, *args) -> tuple[int, str]:
    code = infer.main([str(a) for a in args] + ["--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _away_from(alpha: np.ndarray, margin: float = 0.4) -> np.ndarray:
    """Bool H x W: farther than ``margin`` x the subject's size from its bounding box."""
    rows, cols = np.nonzero(alpha > 0.05)
    m = int(margin * max(np.ptp(rows), np.ptp(cols)))
    away = np.ones(alpha.shape, bool)
    away[max(rows.min() - m, 0):rows.max() + m, max(cols.min() - m, 0):cols.max() + m] = False
    return away


def test_default_flags_align_a_handheld_photo(tmp_path, capsys, tiny_checkpoint):
    truth = handheld_capture(tmp_path)[0]
    common = ["--input", tmp_path / "frames" / "000.png", "--background", tmp_path / "plate.png",
              "--checkpoint", tiny_checkpoint, "--size", 64]
    code, log = _run(capsys, *common, "--output", tmp_path / "default")
    assert code == 0, log
    assert "frame 000: aligned (off by" in log and "exposure corrected" in log
    summary = json.loads((tmp_path / "default" / SUMMARY_NAME).read_text())
    record = summary["plates"][0]
    assert summary["alignment"] == "auto" and record["action"] == "aligned"
    assert record["misalignment_px"] > 5 * tolerance_px(truth.shape) and record["residual_px"] < 0.5
    assert record["exposure"]["residual_after"] < record["exposure"]["residual_before"]
    alpha = read_alpha(tmp_path / "default" / "alpha" / "000.png")
    away = _away_from(truth)
    assert alpha[away].max() == 0.0  # nothing away from the subject

    code, log = _run(capsys, *common, "--output", tmp_path / "handheld", "--handheld")
    assert code == 0, log
    np.testing.assert_array_equal(read_alpha(tmp_path / "handheld" / "alpha" / "000.png"), alpha)
    code, log = _run(capsys, *common, "--output", tmp_path / "unaligned", "--no-align")
    assert code == 0, log
    assert (read_alpha(tmp_path / "unaligned" / "alpha" / "000.png")[away] > 0.05).mean() > 0.5  # the misaligned plate


@pytest.mark.parametrize("camera_moves, actions", [(False, ["aligned", "reused", "reused"]),
                                                   (True, ["aligned", "aligned", "aligned"])])
def test_default_flags_align_a_clip_as_often_as_the_camera_moves(tmp_path, capsys, tiny_checkpoint,
                                                                 camera_moves, actions):
    handheld_capture(tmp_path, frames=3, camera_moves=camera_moves)
    code, log = _run(capsys, "--input", tmp_path / "frames", "--sequence", "--background", tmp_path / "plate.png",
                     "--checkpoint", tiny_checkpoint, "--size", 32, "--output", tmp_path / "out")
    assert code == 0, log
    summary = json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())
    assert [r["action"] for r in summary["plates"]] == actions
    assert [r["frame"] for r in summary["plates"]] == ["000", "001", "002"]
    assert summary["plate_summary"]["actions"]["aligned"] == actions.count("aligned")


def test_original_release_folder_layout(tmp_path, capsys, tiny_checkpoint):
    height, width = 96, 128
    for k, name in enumerate(["coffee", "chelsea"]):
        plate = photo(name, height, width)
        alpha = disc_alpha(height, width, (48.0, 50.0 + 10 * k), 20.0)
        write_image(tmp_path / "input" / f"{k + 1:04d}_img.png", paste_subject(plate, alpha))
        write_image(tmp_path / "input" / f"{k + 1:04d}_back.png", plate)
        write_image(tmp_path / "input" / f"{k + 1:04d}_masksDL.png", (alpha > 0.5).astype(np.float32))
    code, log = _run(capsys, "--input", tmp_path / "input", "--checkpoint", tiny_checkpoint, "--size", 32,
                     "--output", tmp_path / "out")  # no --background: the *_back files
    assert code == 0, log
    assert "the *_back files" in log and "the *_masksDL files" in log
    written = sorted(p.name for p in (tmp_path / "out" / "alpha").iterdir())
    assert written == ["0001_img.png", "0002_img.png"]  # plates and masks are never matted
    assert json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())["frames"] == 2


def test_two_files_of_one_stem_are_both_written(tmp_path, capsys, tiny_checkpoint):
    plate = photo("coffee", 48, 64)
    write_image(tmp_path / "in" / "a.png", paste_subject(plate, disc_alpha(48, 64, (24, 20), 10)))
    write_image(tmp_path / "in" / "a.jpg", paste_subject(plate, disc_alpha(48, 64, (24, 44), 10)))
    write_image(tmp_path / "plates" / "a.png", plate)
    code, log = _run(capsys, "--input", tmp_path / "in", "--background", tmp_path / "plates", "--no-align",
                     "--checkpoint", tiny_checkpoint, "--size", 32, "--output", tmp_path / "out")
    assert code == 0, log
    assert sorted(p.name for p in (tmp_path / "out" / "alpha").iterdir()) == ["a_jpg.png", "a_png.png"]


def test_greyscale_photo_with_a_colour_plate(tmp_path, capsys, tiny_checkpoint):
    plate = photo("coffee", 48, 64)
    image = paste_subject(plate, disc_alpha(48, 64, (24, 30), 12))
    gray = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)
    write_image(tmp_path / "gray.png", gray[:, :, 0])
    write_image(tmp_path / "plate.png", plate)
    with pytest.warns(UserWarning, match="the frames are greyscale and the plate is colour"):
        code, log = _run(capsys, "--input", tmp_path / "gray.png", "--background", tmp_path / "plate.png",
                         "--checkpoint", tiny_checkpoint, "--size", 32, "--output", tmp_path / "out", "--no-align")
    assert code == 0, log
    write_image(tmp_path / "colour.png", image)
    write_image(tmp_path / "gray_plate.png", plate.mean(axis=2))
    code, log = _run(capsys, "--input", tmp_path / "colour.png", "--background", tmp_path / "gray_plate.png",
                     "--checkpoint", tiny_checkpoint, "--size", 32, "--output", tmp_path / "out2")
    assert code == 2 and "gray_plate.png: the plate is greyscale but the frames are colour" in log
    assert not (tmp_path / "out2" / SUMMARY_NAME).exists()
