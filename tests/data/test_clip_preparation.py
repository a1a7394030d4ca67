"""prepare_real: a tiny synthetic video + plate -> the real-captures layout, resume, and bad inputs."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from bgmatting.io import DataError, read_alpha, read_image, write_image
from bgmatting.data.clip_preparation import prepare_clip
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


# ----------------------------------------------------------------------------------------------- bad input
PREPARE_BAD_INPUT = [  # (case, arguments replacing the defaults, expected last stderr line)
    ("every 0", ["--every", "0"], r"every must be >= 1, got 0"),
    ("every negative", ["--every", "-3"], r"every must be >= 1, got -3"),
    ("max-frames 0", ["--max-frames", "0"], r"max_frames must be >= 1, got 0"),
    ("every not a number", ["--every", "two"], r"argument --every: invalid int value: 'two'"),
    ("name escaping --out", ["--name", "../../escaped"], r"clip name '\.\./\.\./escaped': must be a plain folder name"),
    ("name with a folder", ["--name", "a/b"], r"clip name 'a/b': must be a plain folder name"),
    ("name ..", ["--name", ".."], r"clip name '\.\.': must be a plain folder name"),
    ("missing video", ["--video", "{tmp}/nope.mp4"], r"nope\.mp4: video file or frame folder does not exist"),
    ("not a video", ["--video", "{tmp}/fake.mp4"], r"fake\.mp4: (cannot open|no frames)"),
    ("empty frame folder", ["--video", "{tmp}/empty"], r"empty: folder contains no images"),
    ("missing plate", ["--background", "{tmp}/missing.png"], r"missing\.png: background photo does not exist"),
    ("broken plate", ["--background", "{tmp}/broken.png"], r"broken\.png: cannot decode image"),
    ("folder of plates", ["--background", "{tmp}/plates"], r"plates: is a folder; a clip takes one background photo"),
    ("unknown segmenter", ["--segmenter", "magic"], r"unknown segmenter 'magic'; available: "),
    ("missing segmenter weights", ["--segmenter", "deeplabv3", "--segmenter-weights", "{tmp}/w.pth"],
     r"w\.pth: segmentation weights file does not exist"),
    ("missing targets", ["--targets", "{tmp}/nowhere"], r"nowhere: target-background folder does not exist"),
    ("handheld and no-align", ["--handheld", "--no-align"], r"argument --no-align: not allowed with argument --handheld"),
    ("output is a file", ["--out", "{tmp}/plate.png"], r"plate\.png: output exists and is not a folder"),
    ("empty output", ["--out", ""], r"output folder '': an empty path; give a file or folder name"),
    ("empty video", ["--video", ""], r"video '': an empty path"),
    ("blank targets", ["--targets", " "], r"targets ' ': an empty path"),
    ("frames of two sizes", ["--video", "{tmp}/mixed"],
     r"mixed/000001\.png is 64x48 but 000000\.png is 128x96; the frames of a sequence must all have one size"),
]


@pytest.mark.parametrize("case, arguments, expected", PREPARE_BAD_INPUT, ids=[c[0] for c in PREPARE_BAD_INPUT])
def test_clip_preparation_refuses_bad_input_with_one_line(capture, tmp_path, capsys, monkeypatch, case, arguments,
                                                      expected):
    from bad_input import check_argparse_refusal

    monkeypatch.chdir(tmp_path)  # an empty path would mean the current folder: it is checked for new files too
    video, plate = capture
    out = tmp_path / "data"
    prepare_clip(video, plate, out, name="earlier", segmenter=CountingSegmenter(), max_frames=2, progress=False,
                 alignment="none")  # an earlier clip, which nothing may change
    (tmp_path / "fake.mp4").write_text("this is not a video")
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    for k, frame in enumerate(_frames()[:3]):  # the second frame of another size
        write_image(tmp_path / "mixed" / frame_name(k), cv2.resize(frame, (64, 48)) if k == 1 else frame)
    defaults = {"--video": str(video), "--background": str(plate), "--out": str(out), "--quiet": None}
    check_argparse_refusal(main, arguments, defaults, tmp_path, capsys, expected)


# ----------------------------------------------------------------------------------------------- options
def test_handheld_alignment_undoes_a_real_camera_move(tmp_path):
    """Frames shot through a known homography (a hand-held camera): every aligned plate matches its frame."""
    size = (240, 320)
    photo = cv2.resize(skimage.data.astronaut(), (size[1] + 80, size[0] + 60), interpolation=cv2.INTER_AREA)
    scene = photo.astype(np.float32) / 255.0
    plate = scene[30:30 + size[0], 40:40 + size[1]]
    folder = tmp_path / "frames"
    moves = [np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]) for dx, dy in ((-12.0, 7.0), (9.0, -5.0), (15.0, 10.0))]
    for i, shift in enumerate(moves):
        angle = np.deg2rad(1.5 * (i - 1))
        rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        h_true = shift @ rotation  # plate px -> frame px
        frame = cv2.warpPerspective(plate, h_true, (size[1], size[0]), borderMode=cv2.BORDER_REFLECT)
        frame[100:200, 130 + 10 * i:190 + 10 * i] = (0.9, 0.1, 0.8)  # the subject, absent from the plate
        write_image(folder / f"f{i}.png", frame)
    write_image(tmp_path / "plate.png", plate)
    out = tmp_path / "data"
    assert main(["--video", str(folder), "--background", str(tmp_path / "plate.png"), "--out", str(out),
                 "--handheld", "--quiet"]) == 0
    (clip,) = read_real_manifest(out).clips
    for i in range(3):
        frame, aligned = read_image(clip.frame_path(i)), read_image(clip.background_path(i))
        inner = np.zeros(size, bool)
        inner[20:-20, 20:-20] = True
        inner[95:205, 120:210] = False  # not under the subject
        aligned_error = np.abs(aligned - frame).max(axis=2)[inner].mean()
        unaligned_error = np.abs(plate - frame).max(axis=2)[inner].mean()
        assert aligned_error < 0.02 < 0.1 < unaligned_error, (i, aligned_error, unaligned_error)


def test_options_every_max_frames_targets_overwrite_and_photometric(capture, tmp_path):
    video, plate = capture
    out = tmp_path / "data"
    targets = tmp_path / "targets"
    write_image(targets / "beach.png", np.full((H, W, 3), 0.7))
    assert main(["--video", str(video), "--background", str(plate), "--out", str(out), "--every", "3",
                 "--max-frames", "2", "--targets", str(targets), "--name", "walk3", "--photometric", "--quiet"]) == 0
    m = read_real_manifest(out)
    assert [c.n_frames for c in m.clips] == [2] and [p.name for p in m.target_backgrounds] == ["beach.png"]
    second = read_image(m.clips[0].frame_path(1))
    errors = [np.abs(second - f).mean() for f in _frames()]
    assert int(np.argmin(errors)) == 3 and errors[3] < 0.03  # frames 0 and 3 (MJPG is lossy)
    marker = m.clips[0].frame_path(0)
    write_image(marker, np.zeros((H, W, 3)))
    args = ["--video", str(video), "--background", str(plate), "--out", str(out), "--every", "3", "--max-frames",
            "2", "--name", "walk3", "--quiet"]
    assert main(args) == 0 and read_image(marker).max() == 0  # resumed: present files kept
    assert main([*args, "--overwrite"]) == 0 and read_image(marker).max() > 0.5  # recomputed
