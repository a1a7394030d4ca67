"""prepare_real: a tiny synthetic video + plate -> the real-captures layout, resume, and bad inputs."""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from bgmatting.data.io import DataError, read_alpha, read_image, write_image
from bgmatting.data.prepare_real import prepare_clip
from bgmatting.prepare_real import main
from bgmatting.data.real import RealCaptureDataset, frame_name, read_real_manifest

pytestmark = pytest.mark.filterwarnings("ignore::bgmatting.preprocess.align.AlignmentWarning")  # tiny frames
REPO = Path(__file__).resolve().parents[2]
H, W, N = 96, 128, 8


def _scene() -> np.ndarray:
    """A textured static scene (a real photo, so alignment finds features), float RGB [0, 1]."""
    img = cv2.resize(skimage.data.astronaut(), (W, H), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


def _frames() -> list[np.ndarray]:
    frames = []
    for i in range(N):
        f = _scene().copy()
        f[30:80, 20 + 8 * i:50 + 8 * i] = (0.9, 0.1, 0.8)  # a magenta "subject" walking right
        frames.append(f)
    return frames


@pytest.fixture
def capture(tmp_path) -> tuple[Path, Path]:
    video = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    assert writer.isOpened()
    for f in _frames():
        writer.write(cv2.cvtColor((f * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()
    plate = tmp_path / "plate.png"
    write_image(plate, _scene())
    write_image(tmp_path / "plates" / "walk.png", _scene())
    return video, plate


class CountingSegmenter:
    """Subject = pixels far from the plate (a stand-in that counts its calls)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image, background):
        self.calls += 1
        return (np.abs(image - background).max(axis=2) > 0.3).astype(np.float32)


def test_video_to_clip_layout_and_dataset(capture, tmp_path):
    video, plate = capture
    out = tmp_path / "data"
    assert main(["--video", str(video), "--background", str(plate), "--out", str(out), "--max-frames", "5",
                 "--quiet", "--targets", str(tmp_path)]) == 0
    m = read_real_manifest(out / "manifest.json")
    (clip,) = m.clips
    assert (clip.name, clip.n_frames, clip.height, clip.width, clip.handheld) == ("walk", 5, H, W, False)
    assert clip.path == out / "clips" / "walk" and m.target_backgrounds  # the plate png doubles as a target
    for i in range(5):
        frame = read_image(clip.frame_path(i))
        assert frame.shape == (H, W, 3)
        assert np.abs(frame - _frames()[i]).mean() < 0.03  # the video's frame (MJPG is lossy)
        seg = read_alpha(clip.segmentation_path(i))
        inside, outside = seg[40:70, 25 + 8 * i:45 + 8 * i], seg[:, 100:] if i < 3 else seg[:, :10]
        assert inside.mean() > 0.8 and outside.mean() < 0.1  # background-difference segmenter found it
    assert read_image(clip.background_path()).shape == (H, W, 3)
    s = RealCaptureDataset(out, size=32, motion_offsets=(-2, -1, 1, 2))[2]
    assert s["image"].shape == (3, 32, 32) and s["motion"].shape == (4, 32, 32)


def test_resume_skips_finished_files(capture, tmp_path):
    video, plate = capture
    out = tmp_path / "data"
    seg = CountingSegmenter()
    prepare_clip(video, plate, out, segmenter=seg, max_frames=3, progress=False, alignment="none")
    assert seg.calls == 3
    frames = out / "clips" / "walk" / "frames"
    stamps = {p.name: p.stat().st_mtime_ns for p in frames.iterdir()}
    (out / "clips" / "walk" / "segmentation" / frame_name(1)).unlink()  # e.g. lost to a crash
    prepare_clip(video, plate, out, segmenter=seg, max_frames=6, progress=False, alignment="none")
    assert seg.calls == 3 + 1 + 3  # frame 1 again, frames 3..5 new
    for name, stamp in stamps.items():
        assert (frames / name).stat().st_mtime_ns == stamp  # not rewritten
    assert read_real_manifest(out).clips[0].n_frames == 6
    prepare_clip(video, plate, out, segmenter=seg, max_frames=6, progress=False, alignment="none", overwrite=True)
    assert seg.calls == 13


def test_handheld_frame_folder_every_other_frame(capture, tmp_path):
    _, plate = capture
    folder = tmp_path / "frames_in"
    for i, f in enumerate(_frames()):
        write_image(folder / f"img_{i:03d}.png", f)
    out = tmp_path / "data"
    prepare_clip(folder, plate, out, name="hand", alignment="per_frame", every=2, segmenter=CountingSegmenter(),
                 progress=False)
    (clip,) = read_real_manifest(out).clips
    assert clip.n_frames == 4 and clip.handheld and clip.aligned_background == "aligned_background"
    np.testing.assert_allclose(read_image(clip.frame_path(1)), read_image(folder / "img_002.png"), atol=1 / 255)
    aligned = read_image(clip.background_path(3))
    assert aligned.shape == (H, W, 3)
    assert np.abs(aligned - _scene())[:, :15].mean() < 0.03  # the plate, aligned (here: identity)
    # Another clip in the same dataset is added next to it.
    prepare_clip(folder, plate, out, name="second", segmenter=CountingSegmenter(), max_frames=2, progress=False)
    assert [c.name for c in read_real_manifest(out).clips] == ["hand", "second"]


def test_bad_inputs_name_the_file(capture, tmp_path, capsys):
    video, plate = capture
    out = tmp_path / "data"

    def run(*args: str) -> str:
        assert main([*args, "--out", str(out), "--quiet"]) == 2
        return capsys.readouterr().err

    assert "nope.mp4: video file or frame folder does not exist" in run("--video", str(tmp_path / "nope.mp4"),
                                                                         "--background", str(plate))
    assert "missing.png: background photo does not exist" in run("--video", str(video), "--background",
                                                                 str(tmp_path / "missing.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    assert "broken.png: cannot decode image" in run("--video", str(video), "--background", str(broken))
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video")
    err = run("--video", str(fake), "--background", str(plate))
    assert "fake.mp4" in err and ("cannot open" in err or "no frames" in err)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty: folder contains no images" in run("--video", str(empty), "--background", str(plate))
    assert "nowhere: target-background folder does not exist" in run(
        "--video", str(video), "--background", str(plate), "--targets", str(tmp_path / "nowhere"))
    assert "unknown segmenter" in run("--video", str(video), "--background", str(plate), "--segmenter", "magic")
    assert "plates: is a folder; a clip takes one background photo" in run("--video", str(video), "--background",
                                                                           str(plate.parent / "plates"))
    assert not (out / "manifest.json").exists() and not (out / "clips").exists()  # nothing written
    with pytest.raises(DataError, match="other aspect ratio"):
        wide = tmp_path / "wide.png"
        write_image(wide, np.zeros((50, 200, 3), np.float32))
        prepare_clip(video, wide, out, alignment="none", segmenter=CountingSegmenter(), progress=False)


def test_script_wrapper_runs(capture, tmp_path, monkeypatch):
    video, plate = capture
    out = tmp_path / "data"
    argv = ["prepare_real.py", "--video", str(video), "--background", str(plate), "--out", str(out),
            "--max-frames", "2", "--no-align", "--quiet"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "scripts" / "prepare_real.py"), run_name="__main__")
    assert exit_info.value.code == 0
    assert json.loads((out / "manifest.json").read_text())["clips"][0]["n_frames"] == 2
