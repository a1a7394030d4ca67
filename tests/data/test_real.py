"""Real-captures layout, manifest and RealCaptureDataset, on small clips written by hand."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bgmatting.check_data import main
from bgmatting.data.check import check_manifest
from bgmatting.io import DataError, write_alpha, write_image
from bgmatting.data.real import (
    GROUND_TRUTH_KEYS, SAMPLE_KEYS, Clip, RealCaptureDataset, frame_name, read_real_manifest, subject_window,
    upsert_clip, write_real_manifest,
)

H, W = 24, 32


def _frame(i: int) -> np.ndarray:
    """Frame i: uniform gray level 0.1 + 0.05 i (so a motion channel tells which frame it came from) with a
    bright square (the subject) moving right."""
    img = np.full((H, W, 3), 0.1 + 0.05 * i, np.float32)
    img[8:16, 4 + 2 * i:12 + 2 * i] = 1.0
    return img


def _make_clip(root: Path, name: str, n: int, handheld: bool = False, truth: bool = False) -> Clip:
    d = root / "clips" / name
    for i in range(n):
        write_image(d / "frames" / frame_name(i), _frame(i))
        seg = np.zeros((H, W), np.float32)
        seg[8:16, 4 + 2 * i:12 + 2 * i] = 1.0
        write_alpha(d / "segmentation" / frame_name(i), seg)
        if handheld:
            write_image(d / "aligned_background" / frame_name(i), np.full((H, W, 3), 0.3 + 0.02 * i, np.float32))
        if truth:
            write_alpha(root / "gt" / name / "alpha" / frame_name(i), seg * 0.9)
            write_image(root / "gt" / name / "foreground" / frame_name(i), _frame(i))  # not mirror-symmetric
    write_image(d / "background.png", np.full((H, W, 3), 0.2, np.float32))
    return Clip(name=name, path=d, n_frames=n, height=H, width=W, handheld=handheld,
                aligned_background="aligned_background" if handheld else None,
                ground_truth=root / "gt" / name if truth else None)


@pytest.fixture
def captures(tmp_path) -> Path:
    clips = [_make_clip(tmp_path, "a", 6), _make_clip(tmp_path, "b", 4, handheld=True, truth=True)]
    for k in range(3):
        write_image(tmp_path / "targets" / f"t{k}.png", np.full((20 + k * 10, 30, 3), 0.25 * (k + 1), np.float32))
    return write_real_manifest(tmp_path / "manifest.json", clips, tmp_path / "targets")


def _gray_levels(motion: torch.Tensor) -> list[int]:
    """Which frame each motion channel is (from its background gray level)."""
    return [int(round((float(m[0, 0]) - 0.1) / 0.05)) for m in motion]


def test_manifest_round_trip_uses_relative_paths(captures):
    data = json.loads(captures.read_text())
    assert data["format"] == "bgmatting/real-captures" and data["target_backgrounds"] == "targets"
    assert [c["path"] for c in data["clips"]] == ["clips/a", "clips/b"]
    m = read_real_manifest(captures.parent)  # a folder works too
    assert [c.n_frames for c in m.clips] == [6, 4] and len(m.target_backgrounds) == 3
    assert m.clips[1].background_path(2).name == frame_name(2)  # hand-held: aligned per frame
    assert m.clips[0].background_path(2).name == "background.png"
    # Replacing a clip by name keeps the others and the target pool.
    clip = m.clips[0]
    clip.n_frames = 5
    upsert_clip(captures, clip)
    again = read_real_manifest(captures)
    assert [(c.name, c.n_frames) for c in again.clips] == [("b", 4), ("a", 5)]
    assert len(again.target_backgrounds) == 3


def test_sample_keys_shapes_and_ranges(captures):
    ds = RealCaptureDataset(captures, size=16, motion_offsets=(-2, -1, 1, 2), seed=1)
    assert len(ds) == 10
    s = ds[7]
    assert tuple(s) == SAMPLE_KEYS
    shapes = {k: tuple(v.shape) for k, v in s.items()}
    assert shapes == {"image": (3, 16, 16), "background": (3, 16, 16), "segmentation": (1, 16, 16),
                      "motion": (4, 16, 16), "target_background": (3, 16, 16), "clip": ()}
    assert s["clip"].dtype == torch.int64 and int(s["clip"]) == 1
    for k in SAMPLE_KEYS[:-1]:
        assert s[k].dtype == torch.float32 and 0.0 <= float(s[k].min()) and float(s[k].max()) <= 1.0
    # The subject crop keeps the subject in view.
    assert float(s["segmentation"].max()) == pytest.approx(1.0, abs=0.02)
    # Same (seed, epoch, index) -> same sample; the batch collates.
    for k in SAMPLE_KEYS:
        assert torch.equal(ds[7][k], s[k])
    batch = torch.utils.data.default_collate([ds[0], ds[9]])
    assert batch["image"].shape == (2, 3, 16, 16) and batch["clip"].tolist() == [0, 1]


@pytest.mark.parametrize("boundary, expected_first, expected_last", [
    ("clamp", [0, 0, 1, 2], [3, 4, 5, 5]),
    ("wrap", [4, 5, 1, 2], [3, 4, 0, 1]),
])
def test_motion_frames_at_offsets_are_kept_in_the_clip(captures, boundary, expected_first, expected_last):
    ds = RealCaptureDataset(captures, size=None, motion_offsets=(-2, -1, 1, 2), boundary=boundary, hflip=0.0)
    first, last = ds[0], ds[5]  # clip "a" has 6 frames
    assert first["image"].shape == (3, H, W)
    assert _gray_levels(first["motion"]) == expected_first
    assert _gray_levels(last["motion"]) == expected_last
    # Motion cues are gray frames: the subject square (1.0) sits where that frame has it.
    assert float(first["motion"][3, 10, 4 + 2 * 2]) == pytest.approx(1.0, abs=1e-2)


def test_aligned_background_and_target_pool(captures, tmp_path):
    ds = RealCaptureDataset(captures, size=None, motion_offsets=(-1, 1, 2, 3), hflip=0.0)
    s = ds[6 + 3]  # clip "b", frame 3: aligned background of that frame
    assert float(s["background"].mean()) == pytest.approx(0.3 + 0.06, abs=0.01)
    assert float(ds[2]["background"].mean()) == pytest.approx(0.2, abs=0.01)  # clip "a": the plate
    levels = {round(float(ds[i]["target_background"].mean()), 2) for i in range(len(ds))}
    assert levels <= {0.25, 0.5, 0.75} and len(levels) >= 2  # random pool members, fitted to the frame size
    # An explicit target folder replaces the manifest's pool.
    write_image(tmp_path / "other" / "x.png", np.full((8, 8, 3), 0.9, np.float32))
    other = RealCaptureDataset(captures, size=None, target_backgrounds=tmp_path / "other")
    assert float(other[0]["target_background"].mean()) == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize("crop", ["center", "subject"])
def test_flip_and_crop_apply_to_every_map_alike(captures, crop):
    """Clip "b" has ground truth: alpha = 0.9 S and F = the frame. Flipped, every map (ground truth and the trimap
    made from it included) is the unflipped one mirrored; cropped, the ground truth stays registered with I and S."""
    options = dict(size=(16, 20), crop=crop, clips=["b"], ground_truth=True)
    plain = RealCaptureDataset(captures, hflip=0.0, **options)[1]
    flipped = RealCaptureDataset(captures, hflip=1.0, **options)[1]
    assert plain["image"].shape == (3, 16, 20)
    for k in set(SAMPLE_KEYS + GROUND_TRUTH_KEYS) - {"clip"}:
        assert torch.equal(flipped[k], plain[k].flip(-1)), k
    subject = plain["segmentation"][0] > 0.9
    assert subject.any() and float(plain["image"][0][subject].min()) > 0.9  # crops stay registered
    for sample in (plain, flipped):
        assert torch.equal(sample["foreground"], sample["image"])
        torch.testing.assert_close(sample["alpha"], sample["segmentation"] * (230 / 255), rtol=0, atol=1e-6)


def test_ground_truth_for_synthetic_clips(captures):
    ds = RealCaptureDataset(captures, size=None, clips=["b"], ground_truth=True, hflip=0.0)
    s = ds[1]
    assert set(s) == set(SAMPLE_KEYS) | {"alpha", "foreground", "trimap"}
    assert float(s["alpha"].max()) == pytest.approx(0.9, abs=0.01)
    assert s["trimap"].dtype == torch.uint8 and set(s["trimap"].unique().tolist()) <= {0, 128, 255}
    with pytest.raises(DataError, match="no ground truth"):
        RealCaptureDataset(captures, clips=["a"], ground_truth=True)


def test_subject_window_is_inside_the_frame():
    seg = np.zeros((100, 200), np.float32)
    seg[10:60, 150:190] = 1.0
    y, x, h, w = subject_window(seg, (32, 32), margin=0.25)
    assert h == w and 0 <= y and y + h <= 100 and 0 <= x and x + w <= 200
    assert y <= 10 and y + h >= 60 and x <= 150 and x + w >= 190  # the subject is inside
    assert subject_window(np.zeros((50, 80), np.float32), (16, 16), 0.2) == (0, 15, 50, 50)  # no subject: centre


def test_bad_inputs_raise_clear_errors(captures, tmp_path):
    (captures.parent / "clips" / "a" / "frames" / frame_name(2)).write_bytes(b"not a png")
    ds = RealCaptureDataset(captures, size=16)
    with pytest.raises(DataError, match=r"frames[/\\]000002\.png"):
        ds[2]
    write_image(captures.parent / "clips" / "a" / "background.png", np.zeros((10, 10, 3), np.float32))
    with pytest.raises(DataError, match="background.png: size 10x10 differs"):
        ds[0]
    with pytest.raises(DataError, match="does not exist"):
        RealCaptureDataset(tmp_path / "nowhere.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not a valid JSON"):
        RealCaptureDataset(tmp_path / "bad.json")
    no_targets = write_real_manifest(tmp_path / "nt.json", read_real_manifest(captures).clips, None)
    with pytest.raises(DataError, match="no target backgrounds"):
        RealCaptureDataset(no_targets)
    with pytest.raises(ValueError, match="multiple of 4"):
        RealCaptureDataset(captures, size=18)
    with pytest.raises(ValueError, match="boundary"):
        RealCaptureDataset(captures, boundary="bounce")
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_real_data_config_reads_a_manifest(captures, compose_config):
    from hydra.utils import instantiate

    cfg = compose_config("train", ["stage=real", "data=real", f"data.manifest={captures}", "data.train.size=16"])
    ds = instantiate(cfg.data.train, _convert_="all")
    assert isinstance(ds, RealCaptureDataset) and len(ds) == 10
    assert ds.motion_offsets == (-40, -20, 20, 40) and ds[0]["image"].shape == (3, 16, 16)


def test_check_cli_validates_a_real_captures_manifest(captures, capsys):
    assert check_manifest(captures).ok and check_manifest(captures.parent).rows == 10
    clip_b = captures.parent / "clips" / "b"
    (clip_b / "segmentation" / frame_name(2)).write_bytes(b"not a png")
    write_image(clip_b / "aligned_background" / frame_name(3), np.zeros((H + 2, W, 3), np.float32))
    (captures.parent / "clips" / "a" / "frames" / frame_name(5)).unlink()
    report = check_manifest(captures)
    text = "\n".join(str(p) for p in report.problems)
    assert not report.ok and len(report.problems) == 3, text
    assert f"clip 'b' segmentation 2 {clip_b / 'segmentation' / frame_name(2)}" in text
    assert "clip 'b' aligned background 3" in text and f"but the clip's frames are {W}x{H}" in text
    assert "clip 'a' frame 5" in text
    assert main([str(captures), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "10 frames checked, 3 problems" in out and "clip 'a' frame 5" in out
