"""Inference sources and sinks: input kinds, per-frame file matching, target backgrounds, atomic outputs,
motion cues from neighbouring frames, and bad-input errors that name the file."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from infer_helpers import photo

from bgmatting.io import DataError, read_image, write_image
from bgmatting.inference.runner import frames_with_motion
from bgmatting.inference.sinks import SUMMARY_NAME, AtomicVideoWriter, ResultWriter
from bgmatting.inference.sources import Segmentations, TargetBackgrounds, parse_colour, resize_to
from bgmatting.preprocess.capture import (
    DEFAULT_ALIGNMENT,
    BackgroundPlates,
    CapturedBackgrounds,
    Frame,
    ImageFrames,
    VideoFrames,
    choose_alignment,
    open_input,
)
from bgmatting.preprocess.motion import video_motion_cues


def _write_video(path, frames, fps=10.0, fourcc="MJPG"):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def test_open_input_kinds_and_errors(tmp_path, synthetic_clip):
    write_image(tmp_path / "one.png", np.zeros((8, 8, 3), np.float32))
    assert isinstance(open_input(tmp_path / "one.png"), ImageFrames)
    video = open_input(synthetic_clip["video"])
    assert isinstance(video, VideoFrames) and video.fps == pytest.approx(10.0)
    frames = list(video)
    assert len(frames) == synthetic_clip["count"] and frames[3].name == "00003"
    assert frames[0].image.dtype == np.uint8 and frames[0].image.shape == (48, 64, 3)

    with pytest.raises(DataError, match="missing.mp4: input does not exist"):
        open_input(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: folder contains no images"):
        open_input(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt: unknown input type"):
        open_input(tmp_path / "notes.txt")
    (tmp_path / "garbage.mp4").write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DataError, match="garbage.mp4"):
        open_input(tmp_path / "garbage.mp4")


def test_zero_frame_video_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "zero.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    writer.release()
    with pytest.raises(DataError, match="zero.avi"):
        VideoFrames(path)


def test_backgrounds_and_segmentations_are_matched_by_name(tmp_path):
    for name in ("0001_img", "0002_img"):
        write_image(tmp_path / "in" / f"{name}.png", np.zeros((8, 8, 3), np.float32))
    write_image(tmp_path / "in" / "0001_back.png", np.full((8, 8, 3), 0.5, np.float32))
    write_image(tmp_path / "bg" / "0002_img.png", np.full((8, 8, 3), 0.25, np.float32))
    write_image(tmp_path / "bg" / "0001_back.png", np.full((8, 8, 3), 0.75, np.float32))
    write_image(tmp_path / "seg" / "0001_masksDL.png", np.ones((4, 4), np.float32))
    frames = list(ImageFrames(sorted((tmp_path / "in").glob("*_img.png")), "in"))
    captured = CapturedBackgrounds(tmp_path / "bg")
    assert captured.for_frame(frames[0])[0].mean() == pytest.approx(0.75, abs=1e-2)  # the original's _back name
    assert captured.for_frame(frames[1])[0].mean() == pytest.approx(0.25, abs=1e-2)  # same stem
    segmentations = Segmentations(tmp_path / "seg")
    with pytest.warns(UserWarning, match="resizing"):
        assert segmentations.for_frame(frames[0]).shape == (8, 8)
    with pytest.raises(DataError, match=r"seg: no segmentation for frame '0002_img'"):
        segmentations.for_frame(frames[1])
    with pytest.raises(DataError, match="nowhere.png: captured background does not exist"):
        CapturedBackgrounds(tmp_path / "nowhere.png")


def test_video_frames_take_companion_files_in_order(tmp_path):
    for i in range(3):
        write_image(tmp_path / "seg" / f"mask_{i:03d}.png", np.full((6, 6), i / 4, np.float32))
    segmentations = Segmentations(tmp_path / "seg", by_order=True)
    frame = lambda i: Frame(i, f"{i:05d}", np.zeros((6, 6, 3), np.uint8))  # noqa: E731
    assert segmentations.for_frame(frame(2)).mean() == pytest.approx(0.5, abs=1e-2)
    with pytest.raises(DataError, match="has 3 segmentation files"):
        segmentations.for_frame(frame(3))


def test_background_plates_resize_with_a_warning_and_align_once(tmp_path):
    plate = photo("astronaut", 60, 80)
    write_image(tmp_path / "plate.png", plate)
    frame = Frame(0, "00000", (photo("astronaut", 30, 40) * 255).astype(np.uint8))
    image = frame.image.astype(np.float32) / 255
    plates = BackgroundPlates(CapturedBackgrounds(tmp_path / "plate.png"), alignment="none")
    with pytest.warns(UserWarning, match=r"plate.png: captured background is 80x60 but the frames are 40x30"):
        assert plates.for_frame(frame, image).shape == (30, 40, 3)
    write_image(tmp_path / "wide.png", photo("astronaut", 30, 80))
    with pytest.raises(DataError, match=r"wide.png: background is 80x30 but the frames are 40x30 \(other aspect"):
        BackgroundPlates(CapturedBackgrounds(tmp_path / "wide.png"), alignment="none").for_frame(frame, image)
    once = BackgroundPlates(CapturedBackgrounds(tmp_path / "plate.png"), "once")
    with pytest.warns(UserWarning):  # alignment falls back on so small a frame
        first = once.for_frame(frame, image)
    assert first.shape == (30, 40, 3)
    second = once.for_frame(Frame(1, "00001", frame.image), image)
    assert second is first and len(once.reports) == 1
    assert [r.action for r in once.records] == ["fell_back", "reused"] and "too few" in once.records[0].note
    assert BackgroundPlates(CapturedBackgrounds(tmp_path / "plate.png")).alignment == DEFAULT_ALIGNMENT == "auto"


def test_one_alignment_choice_for_every_command():
    assert choose_alignment() == DEFAULT_ALIGNMENT
    assert choose_alignment(handheld=True) == "per_frame"
    assert choose_alignment(align_once=True) == "once"
    assert choose_alignment(no_align=True) == "none"
    with pytest.raises(ValueError, match="at most one"):
        choose_alignment(handheld=True, no_align=True)


def test_frame_selection_every_and_max_frames(tmp_path, synthetic_clip):
    video = open_input(synthetic_clip["video"], every=3, max_frames=2)
    frames = list(video)
    assert len(video) == 2 and [f.name for f in frames] == ["00000", "00001"]
    everything = list(open_input(synthetic_clip["video"]))
    np.testing.assert_array_equal(frames[1].image, everything[3].image)
    for i in range(5):
        write_image(tmp_path / "seq" / f"f{i}.png", np.full((4, 4, 3), i / 8, np.float32))
    assert [f.name for f in open_input(tmp_path / "seq", every=2)] == ["f0", "f2", "f4"]
    assert len(open_input(tmp_path / "seq", every=2, max_frames=1)) == 1
    with pytest.raises(ValueError, match="every"):
        open_input(tmp_path / "seq", every=0)


def test_target_backgrounds(tmp_path):
    colour = TargetBackgrounds()
    np.testing.assert_allclose(colour.for_frame(0, 2, 3)[1, 2], np.array([120, 255, 155]) / 255, atol=1e-6)
    assert parse_colour("0, 10,255") == (0, 10, 255)
    with pytest.raises(ValueError):
        parse_colour("1,2")
    frames = [np.full((12, 16, 3), 40 * k, np.uint8) for k in range(3)]
    _write_video(tmp_path / "target.avi", frames)
    video = TargetBackgrounds(tmp_path / "target.avi")
    levels = [video.for_frame(i, 6, 8).mean() * 255 for i in range(7)]
    np.testing.assert_allclose(levels, [0, 40, 80, 0, 40, 80, 0], atol=3)  # loops over its 3 frames
    assert video.for_frame(1, 6, 8).shape == (6, 8, 3)
    video.close()
    for k in range(2):
        write_image(tmp_path / "targets" / f"{k}.png", np.full((4, 4, 3), 0.2 + 0.6 * k, np.float32))
    folder = TargetBackgrounds(tmp_path / "targets")
    assert folder.for_frame(3, 4, 4).mean() == pytest.approx(0.8, abs=1e-2)
    with pytest.raises(DataError, match="nope.png: target background does not exist"):
        TargetBackgrounds(tmp_path / "nope.png")


def test_motion_cues_stream_equals_the_whole_clip_rule():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (6, 5, 3), dtype=np.uint8) for _ in range(9)]
    frames = [Frame(i, f"{i:05d}", img) for i, img in enumerate(images)]
    offsets = (-4, -2, 2, 4)
    streamed = list(frames_with_motion(iter(frames), offsets))
    assert [f.index for f, _ in streamed] == list(range(9))
    for frame, motion in streamed:
        expected = video_motion_cues(images, frame.index, offsets=offsets, boundary="clamp")
        np.testing.assert_allclose(motion, expected, atol=1 / 255 + 1e-6)
        assert motion.shape == (4, 6, 5)


def test_atomic_video_writer_renames_only_when_complete(tmp_path):
    path = tmp_path / "out.mp4"
    with AtomicVideoWriter(path, 10.0, (24, 32)) as writer:
        for k in range(3):
            writer.write(np.full((24, 32, 3), 0.1 * k, np.float32))
        assert not path.exists() and writer.partial.exists()
    assert path.exists() and not writer.partial.exists()
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()

    broken = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicVideoWriter(broken, 10.0, (24, 32)) as writer:
            writer.write(np.zeros((24, 32, 3), np.uint8))
            raise RuntimeError("boom")
    assert not broken.exists() and not writer.partial.exists()
    with pytest.raises(ValueError, match="frame is 10x10"):
        with AtomicVideoWriter(tmp_path / "size.mp4", 10.0, (24, 32)) as writer:
            writer.write(np.zeros((10, 10, 3), np.uint8))


def test_result_writer_layout_and_summary_last(tmp_path):
    alpha = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    fg = np.full((3, 4, 3), 0.5, np.float32)
    with ResultWriter(tmp_path / "out", video=(5.0, "clip")) as writer:
        writer.write("00000", alpha, fg, fg)
        writer.write("00001", alpha, fg, fg)
        assert not (tmp_path / "out" / SUMMARY_NAME).exists()
        assert not (tmp_path / "out" / "clip_composite.mp4").exists()
        writer.finish({"input": "test"})
    out = tmp_path / "out"
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["frames"] == 2 and "clip_composite.mp4" in summary["outputs"]
    assert (out / "clip_alpha.mp4").exists()
    rgba = cv2.imread(str(out / "foreground" / "00001.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (3, 4, 4)
    np.testing.assert_array_equal(rgba[..., 3], np.round(alpha * 255).astype(np.uint8))
    assert read_image(out / "composite" / "00000.png").shape == (3, 4, 3)
    assert not list(out.rglob(".*"))  # no temporary files left

    with pytest.raises(KeyError):
        with ResultWriter(tmp_path / "aborted", video=(5.0, "clip")) as writer:
            writer.write("00000", alpha, fg, fg)
            raise KeyError("interrupted")
    assert not list((tmp_path / "aborted").glob("*.mp4")) and not list((tmp_path / "aborted").glob(".*"))
    assert not (tmp_path / "aborted" / SUMMARY_NAME).exists()


def test_handheld_plates_are_aligned_to_each_frame(tmp_path):
    plate = photo("astronaut", 300, 400)
    write_image(tmp_path / "plate.png", plate)
    # The frame: the plate (at the frame size 240 x 320) shifted right by 6 px and down by 4 px.
    frame_scene = resize_to(plate, 240, 320)
    shift = np.float32([[1, 0, 6], [0, 1, 4]])
    image = cv2.warpAffine(frame_scene, shift, (320, 240), borderMode=cv2.BORDER_REFLECT)
    plates = BackgroundPlates(CapturedBackgrounds(tmp_path / "plate.png"), alignment="per_frame")
    aligned = plates.for_frame(Frame(0, "00000", image), image)  # the 400 x 300 plate, aligned at its own size
    report = plates.reports[0]
    assert not report.fell_back
    assert report.homography[0, 2] == pytest.approx(6, abs=1.0) and report.homography[1, 2] == pytest.approx(4, abs=1.0)
    inner = (slice(20, -20), slice(20, -20))
    assert np.abs(aligned[inner] - image[inner]).mean() < 0.5 * np.abs(frame_scene[inner] - image[inner]).mean()
