"""``python -m bgmatting.infer`` end to end: a synthetic video clip and real photos with synthetic subjects.

Checks: every output exists with the frame's size, the composite PNG equals a*F + (1-a)*B computed from the
written alpha / foreground PNGs (within uint8 rounding), the encoded video holds every frame, the original
mode leaves alpha zero outside the documented crop box, and bad input fails with the file named and without
leaving a complete-looking output.
"""
from __future__ import annotations

import inspect
import json

import cv2
import numpy as np
import pytest
from infer_helpers import photo

from bgmatting import infer, prepare_real
from bgmatting.data.clip_preparation import prepare_clip
from bgmatting.io import read_alpha, read_image, read_rgba, write_image
from bgmatting.inference.crop import subject_box
from bgmatting.inference.sinks import SUMMARY_NAME
from bgmatting.inference.sources import GREEN_SCREEN, resize_to
from bgmatting.preprocess.capture import DEFAULT_ALIGNMENT

ROUNDING = 2.0 / 255 + 1e-6  # alpha, F and the composite are each rounded to uint8


def _run(capsys, *args) -> tuple[int, str]:
    code = infer.main([str(a) for a in args] + ["--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _check_frame(out, name, target, shape):
    alpha = read_alpha(out / "alpha" / f"{name}.png")
    rgba = read_rgba(out / "foreground" / f"{name}.png")
    composite = read_image(out / "composite" / f"{name}.png")
    assert alpha.shape == shape and rgba.shape == shape + (4,) and composite.shape == shape + (3,)
    np.testing.assert_array_equal(rgba[..., 3], alpha)
    assert np.all(rgba[..., :3][alpha <= 0.01] == 0)  # F = 0 where alpha <= 0.01
    expected = alpha[..., None] * rgba[..., :3] + (1 - alpha[..., None]) * target
    assert np.abs(composite - expected).max() <= ROUNDING
    return alpha


def _read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255)
    capture.release()
    return frames


def test_video_clip_end_to_end(tmp_path, capsys, synthetic_clip, tiny_checkpoint):
    out = tmp_path / "out"
    code, log = _run(
        capsys, "--input", synthetic_clip["video"], "--background", synthetic_clip["plate"],
        "--checkpoint", tiny_checkpoint, "--output", out, "--size", 64, "--batch-size", 3, "--png-sequences",
        "--no-align",  # the tiny synthetic clip has too few features to align; its plate is registered
    )
    assert code == 0, log
    assert "8 frames" in log and "frames/s" in log
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["frames"] == 8 and summary["frames_per_second"] > 0 and summary["mode"] == "original"
    height, width = synthetic_clip["size"]
    green = np.asarray(GREEN_SCREEN, np.float32) / 255
    for i in range(8):
        _check_frame(out, f"{i:05d}", green, (height, width))
    video = _read_video(out / "clip_composite.mp4")
    assert len(video) == 8 and video[0].shape == (height, width, 3)
    for i in (0, 7):
        png = read_image(out / "composite" / f"{i:05d}.png")
        assert np.abs(video[i] - png).mean() < 0.05  # lossy codec, same picture
    assert len(_read_video(out / "clip_alpha.mp4")) == 8
    assert not list(out.rglob(".*"))  # no partial files
    assert summary["video_frames"] == {"declared": 8, "decoded": 8} and summary["warnings"] == []
    assert "warning:" not in log


def test_a_video_that_decodes_fewer_frames_than_it_declares_says_so(tmp_path, capsys, synthetic_clip,
                                                                     tiny_checkpoint):
    """A clip cut short (the tail of the file lost): its container still declares 8 frames."""
    video = tmp_path / "cut.avi"
    data = synthetic_clip["video"].read_bytes()
    video.write_bytes(data[: int(len(data) * 0.6)])
    decodable = len(_read_video(video))
    assert 0 < decodable < 8
    out = tmp_path / "out"
    code = infer.main([str(a) for a in ("--input", video, "--background", synthetic_clip["plate"], "--checkpoint",
                                        tiny_checkpoint, "--output", out, "--size", 32, "--no-align",
                                        "--no-progress")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    message = (f"{video}: the video declares 8 frames but only {decodable} could be decoded (a truncated or damaged "
               f"file?); the outputs hold those {decodable}")
    assert [line for line in captured.err.splitlines() if "warning" in line.lower()] == [f"warning: {message}"]
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["frames"] == decodable and len(_read_video(out / "cut_composite.mp4")) == decodable
    assert summary["video_frames"] == {"declared": 8, "decoded": decodable} and summary["warnings"] == [message]


def test_clip_with_motion_cues_full_mode_and_a_target_image(tmp_path, capsys, synthetic_clip, tiny_motion_checkpoint):
    target = photo("coffee", 30, 50)  # another size: stretched to the frame as in the original
    write_image(tmp_path / "target.png", target)
    out = tmp_path / "out"
    code, log = _run(
        capsys, "--input", synthetic_clip["video"], "--background", synthetic_clip["plate"],
        "--checkpoint", tiny_motion_checkpoint, "--output", out, "--mode", "full", "--size", 0,
        "--target-background", tmp_path / "target.png", "--png-sequences", "--motion-offsets=-2,-1,1,2",
        "--video-extension", ".avi", "--video-codec", "MJPG", "--no-align",
    )
    assert code == 0, log
    height, width = synthetic_clip["size"]
    written_target = resize_to(read_image(tmp_path / "target.png"), height, width)
    for i in range(8):
        _check_frame(out, f"{i:05d}", written_target, (height, width))
    assert len(_read_video(out / "clip_composite.avi")) == 8


def test_photos_end_to_end_original_mode_respects_the_crop_box(tmp_path, capsys, photo_folder, tiny_checkpoint):
    out = tmp_path / "out"
    code, log = _run(
        capsys, "--input", photo_folder["images"], "--background", photo_folder["plates"],
        "--segmentation", photo_folder["masks"], "--checkpoint", tiny_checkpoint, "--output", out,
        "--size", 64, "--target-color", "0,0,255", "--batch-size", 2, "--no-align",  # registered plates
    )
    assert code == 0, log
    blue = np.array([0, 0, 1], np.float32)
    for name in photo_folder["names"]:
        alpha = _check_frame(out, name, blue, photo_folder["size"])
        box = subject_box(read_alpha(photo_folder["masks"] / f"{name}.png"), 0.2)
        rows, cols = box.slices
        outside = np.ones(alpha.shape, bool)
        outside[rows, cols] = False
        assert np.all(alpha[outside] == 0)
    assert json.loads((out / SUMMARY_NAME).read_text())["frames"] == 3
    assert not list(out.glob("*.mp4"))  # stills: no video


@pytest.mark.filterwarnings("ignore::bgmatting.preprocess.align.AlignmentWarning")  # 128 x 96: too few features
def test_photos_with_the_default_segmenter_and_handheld_alignment(tmp_path, capsys, photo_folder, tiny_checkpoint):
    image = photo_folder["images"] / "coffee.png"
    big_plate = resize_to(read_image(photo_folder["plates"] / "coffee.png"), 120, 160)
    write_image(tmp_path / "big_plate.png", big_plate)
    out = tmp_path / "out"
    code, log = _run(  # the plate is aligned at its own size
        capsys, "--input", image, "--background", tmp_path / "big_plate.png", "--checkpoint", tiny_checkpoint,
        "--output", out, "--size", 64, "--handheld",
    )
    assert code == 0, log
    _check_frame(out, "coffee", np.asarray(GREEN_SCREEN, np.float32) / 255, photo_folder["size"])
    assert json.loads((out / SUMMARY_NAME).read_text())["alignment"] == "per_frame"
    with pytest.warns(UserWarning, match="big_plate.png: captured background is 160x120 but the frames are 128x96"):
        code, log = _run(
            capsys, "--input", image, "--background", tmp_path / "big_plate.png", "--checkpoint", tiny_checkpoint,
            "--output", tmp_path / "unaligned", "--size", 64, "--no-align",
        )
    assert code == 0, log
    assert json.loads((tmp_path / "unaligned" / SUMMARY_NAME).read_text())["alignment"] == "none"


@pytest.mark.filterwarnings("ignore::bgmatting.preprocess.align.AlignmentWarning")  # 128 x 96: too few features
def test_the_default_alignment_is_the_one_of_real_capture_preparation(tmp_path, capsys, photo_folder, tiny_checkpoint):
    code, log = _run(capsys, "--input", photo_folder["images"] / "chelsea.png", "--background",
                     photo_folder["plates"], "--segmentation", photo_folder["masks"], "--checkpoint", tiny_checkpoint,
                     "--output", tmp_path / "out", "--size", 32)
    assert code == 0, log
    assert json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())["alignment"] == DEFAULT_ALIGNMENT == "auto"
    assert prepare_real.build_parser().get_default("no_align") is False  # prepare_real also aligns by default
    assert inspect.signature(prepare_clip).parameters["alignment"].default == DEFAULT_ALIGNMENT


def test_bad_input_errors_name_the_file(tmp_path, capsys, photo_folder, synthetic_clip, tiny_checkpoint):
    common = ["--checkpoint", tiny_checkpoint, "--size", 64]
    code, log = _run(capsys, "--input", synthetic_clip["video"], "--background", tmp_path / "no_plate.png",
                     "--output", tmp_path / "a", *common)
    assert code == 2 and "no_plate.png: captured background does not exist" in log
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x01" * 500)
    code, log = _run(capsys, "--input", tmp_path / "broken.mp4", "--background", synthetic_clip["plate"],
                     "--output", tmp_path / "b", *common)
    assert code == 2 and "broken.mp4" in log
    code, log = _run(capsys, "--input", synthetic_clip["video"], "--background", synthetic_clip["plate"],
                     "--output", tmp_path / "c", "--checkpoint", tmp_path / "none.pt", "--size", 64)
    assert code == 2 and "none.pt: checkpoint does not exist" in log


def test_a_failure_mid_run_leaves_no_complete_looking_output(tmp_path, capsys, photo_folder, tiny_checkpoint):
    (photo_folder["masks"] / "rocket.png").unlink()  # the last image (sorted: chelsea, coffee, rocket)
    out = tmp_path / "out"
    code, log = _run(
        capsys, "--input", photo_folder["images"], "--background", photo_folder["plates"],
        "--segmentation", photo_folder["masks"], "--checkpoint", tiny_checkpoint, "--output", out, "--size", 64,
        "--no-align",
    )
    assert code == 2 and "no segmentation for frame 'rocket'" in log
    assert not (out / SUMMARY_NAME).exists()
    assert not list(out.rglob("*.png"))  # the failed run's frames stayed in its staging folder, now deleted
    assert not list(out.rglob(".*"))


def test_folder_of_frames_as_a_sequence_with_segmentations_in_order(tmp_path, capsys, synthetic_clip, tiny_checkpoint):
    capture = cv2.VideoCapture(str(synthetic_clip["video"]))
    for i, alpha in enumerate(synthetic_clip["alphas"]):
        ok, bgr = capture.read()
        assert ok
        write_image(tmp_path / "frames" / f"f{i:03d}.png", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        write_image(tmp_path / "masks" / f"m{i:03d}.png", (alpha > 0.5).astype(np.float32))  # other names: by order
    capture.release()
    out = tmp_path / "out"
    code, log = _run(
        capsys, "--input", tmp_path / "frames", "--sequence", "--fps", 5, "--background", synthetic_clip["plate"],
        "--segmentation", tmp_path / "masks", "--checkpoint", tiny_checkpoint, "--output", out, "--size", 32,
        "--no-align",
    )
    assert code == 0, log
    assert len(_read_video(out / "frames_composite.mp4")) == 8
    assert not (out / "alpha").exists()  # PNG sequences only on request


def test_unavailable_deeplab_weights_are_a_clear_error(tmp_path, capsys, photo_folder, tiny_checkpoint):
    from bgmatting.preprocess.segment import deeplab_cache_path

    if deeplab_cache_path().exists():
        pytest.skip("DeepLabV3 weights are cached on this machine")
    code, log = _run(
        capsys, "--input", photo_folder["images"], "--background", photo_folder["plates"], "--segmenter", "deeplabv3",
        "--checkpoint", tiny_checkpoint, "--output", tmp_path / "out", "--size", 32,
    )
    assert code == 2 and "DeepLabV3" in log and "background_difference" in log
    assert not (tmp_path / "out" / SUMMARY_NAME).exists()


def test_original_release_checkpoint_gives_the_same_outputs(tmp_path, capsys, photo_folder, tiny_checkpoint):
    import torch

    from bgmatting.models import ours_to_original

    ours = torch.load(tiny_checkpoint, weights_only=True)["generator"]
    released = {f"module.{k}": v for k, v in ours_to_original(ours).items()}  # nn.DataParallel naming
    torch.save(released, tmp_path / "netG_epoch_12.pth")
    image = photo_folder["images"] / "chelsea.png"
    common = ["--input", image, "--background", photo_folder["plates"], "--segmentation", photo_folder["masks"],
              "--size", 32, "--no-align"]
    for name, checkpoint in [("ours", tiny_checkpoint), ("released", tmp_path / "netG_epoch_12.pth")]:
        code, log = _run(capsys, *common, "--checkpoint", checkpoint, "--output", tmp_path / name)
        assert code == 0, log
    np.testing.assert_array_equal(
        read_alpha(tmp_path / "ours" / "alpha" / "chelsea.png"), read_alpha(tmp_path / "released" / "alpha" / "chelsea.png")
    )
