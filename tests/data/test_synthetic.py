"""Embedded synthetic data: subjects, backgrounds, the cached Adobe-style set and the synthetic captures."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from bgmatting.io import read_alpha, read_image
from bgmatting.data.synthetic import adobe_set, cache, ensure_synthetic_adobe, ensure_synthetic_real
from bgmatting.data.synthetic import render_subject, synthetic_adobe_dataset, synthetic_real_dataset
from bgmatting.data.synthetic.shapes import _Canvas, _glass, _veil, apply_motion_blur, draw_strands, grow_strands
from bgmatting.data.synthetic.textures import BACKGROUND_KINDS, random_background

TINY_ADOBE = dict(n_fg=3, n_bg=3, size=48, n_test_fg=2, n_test_bg=2, workers=1)
TINY_REAL = dict(n_clips=2, n_frames=5, size=(48, 64), n_targets=2, handheld_fraction=0.5, workers=1)


def _fractional(alpha: np.ndarray, lo: float = 0.02, hi: float = 0.98) -> np.ndarray:
    return (alpha > lo) & (alpha < hi)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != cache.MARKER}


# ------------------------------------------------------------------------------------------ subjects
def test_subject_is_deterministic_from_seed_and_varies_with_it():
    a = render_subject(np.random.default_rng(5), 64, 64)
    b = render_subject(np.random.default_rng(5), 64, 64)
    c = render_subject(np.random.default_rng(6), 64, 64)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    np.testing.assert_array_equal(a.foreground, b.foreground)
    assert not np.array_equal(a.alpha, c.alpha)
    for s in (a, c):
        assert s.alpha.shape == (64, 64) and s.foreground.shape == (64, 64, 3)
        assert s.alpha.dtype == np.float32 and s.foreground.dtype == np.float32
        assert 0.0 <= s.alpha.min() and s.alpha.max() <= 1.0 and 0.0 <= s.foreground.min() <= s.foreground.max() <= 1.0


def test_strands_are_thin_with_fractional_alpha():
    rng = np.random.default_rng(0)
    canvas = _Canvas(64, 64, 4)
    roots = rng.uniform(10, 54, (150, 2))
    curves = grow_strands(rng, roots, rng.uniform(0, 2 * np.pi, 150), rng.uniform(5, 20, 150), curl=0.1)
    alpha = draw_strands(canvas, curves, rng)
    covered = alpha > 0.02
    assert covered.sum() > 500
    assert _fractional(alpha).sum() > 0.6 * covered.sum()  # supersampled strands are thinner than a pixel


@pytest.mark.parametrize("kind", ["person", "furry"])
def test_hairy_subjects_have_many_fractional_pixels(kind):
    ratios = []
    for seed in range(4):
        s = render_subject(np.random.default_rng(seed), 128, 128, kind=kind, p_veil=0, p_glass=0, p_motion_blur=0)
        frac = _fractional(s.alpha)
        assert frac.sum() > 300  # every subject has hair/fur strands, not just an anti-aliased outline
        ratios.append(frac.sum() / (s.alpha > 0.02).sum())
        values = s.alpha[frac]
        assert (values < 0.3).sum() > 50 and (values > 0.7).sum() > 50  # the whole range, not just ~0.5
    assert np.mean(ratios) > 0.15, ratios


def test_veil_and_glass_layers_are_semi_transparent():
    canvas = _Canvas(64, 64, 4)
    for make in (_veil, _glass):
        alpha, colour = make(np.random.default_rng(0), canvas, 64, 64, (32, 32), 14.0)
        inside = alpha > 0.05
        assert inside.sum() > 200 and colour.shape == (64, 64, 3)
        core = alpha[inside]
        assert np.median(core) > 0.15 and np.median(core) < 0.7  # see-through, not opaque
        assert alpha.max() <= 0.75 + 0.5 * (make is _glass)  # glass: plus its specular streak


def test_veils_and_glass_make_semi_transparent_regions():
    mid = lambda a: ((a >= 0.2) & (a <= 0.7)).mean()  # noqa: E731
    plain, veiled = [], []
    for seed in range(4):
        kw = dict(kind="object", p_motion_blur=0)
        plain.append(mid(render_subject(np.random.default_rng(seed), 96, 96, p_veil=0, p_glass=0, **kw).alpha))
        s = render_subject(np.random.default_rng(seed), 96, 96, p_veil=1, p_glass=1, **kw)
        assert s.info.get("veil") and s.info.get("glass")
        veiled.append(mid(s.alpha))
    assert max(plain) < 0.015  # without them only the anti-aliased outline is fractional
    assert np.mean(veiled) > 2.5 * np.mean(plain) and min(veiled) > max(plain)


def test_motion_blur_smears_along_its_direction_only():
    alpha = np.zeros((40, 40), np.float32)
    alpha[10:30, 10:30] = 1.0
    premult = np.repeat(alpha[:, :, None], 3, axis=2) * 0.5
    p, a = apply_motion_blur(premult, alpha, 8.0, 0.0)  # horizontal
    assert abs(a.sum() - alpha.sum()) < 1e-3 * alpha.sum()
    assert _fractional(a[20, :]).sum() >= 6  # the left/right edges got soft
    np.testing.assert_allclose(a[5, :], 0.0, atol=1e-6)  # nothing smeared vertically
    assert a[20, 20] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(p[:, :, 0], 0.5 * a, atol=1e-5)  # colour smeared with alpha


def test_camouflaged_subject_takes_the_background_colours():
    bg = random_background(np.random.default_rng(0), 96, 96, kind="photo")
    own = render_subject(np.random.default_rng(4), 96, 96, kind="object", p_veil=0, p_glass=0)
    cam = render_subject(np.random.default_rng(4), 96, 96, kind="object", p_veil=0, p_glass=0, camouflage=bg)
    inside = lambda s: s.alpha > 0.99  # noqa: E731
    d_own = np.abs(own.foreground - bg)[inside(own)].mean()
    d_cam = np.abs(cam.foreground - bg)[inside(cam)].mean()
    assert cam.info["camouflage"] and d_cam < 0.12 and d_cam < d_own


@pytest.mark.parametrize("kind", BACKGROUND_KINDS)
def test_background_kinds(kind):
    bg = random_background(np.random.default_rng(2), 40, 56, kind=kind)
    assert bg.shape == (40, 56, 3) and bg.dtype == np.float32
    assert 0.0 <= bg.min() and bg.max() <= 1.0 and bg.std() > 0.01
    np.testing.assert_array_equal(bg, random_background(np.random.default_rng(2), 40, 56, kind=kind))


# ----------------------------------------------------------------------------------- Adobe-style set
def test_synthetic_adobe_layout_is_read_by_the_adobe_classes(tmp_path):
    root = ensure_synthetic_adobe(tmp_path, seed=0, **TINY_ADOBE)
    assert cache.is_complete(root) and root.parent == tmp_path / "synthetic_adobe"
    fg_names = (root / "training_fg_names.txt").read_text().split()
    bg_names = (root / "training_bg_names.txt").read_text().split()
    assert len(fg_names) == 3 and len(bg_names) == 3
    for name in fg_names:
        assert read_image(root / "fg" / name).shape == (48, 48, 3)
        assert read_alpha(root / "alpha" / name).shape == (48, 48)
    info = cache.read_info(root)
    assert info["parameters"]["n_fg"] == 3 and info["seconds"] >= 0

    train = synthetic_adobe_dataset("train", tmp_path, seed=0, samples_per_fg=2,
                                    augment={"output_size": 32}, **TINY_ADOBE)
    assert len(train) == 6
    sample = train[1]
    assert sample["image"].shape == (3, 32, 32) and sample["alpha"].shape == (1, 32, 32)
    val = synthetic_adobe_dataset("val", tmp_path, seed=0, **TINY_ADOBE)
    assert len(val) == 2 * 2
    assert val[0]["image"].shape == (3, 48, 48) and set(val[0]) >= {"alpha", "trimap", "background"}
    # Held-out fgs and bgs are new images, not copies of training ones.
    train_fgs = [read_image(root / "fg" / n) for n in fg_names]
    for p in (root / "test" / "fg").iterdir():
        assert all(not np.array_equal(read_image(p), f) for f in train_fgs)


def test_synthetic_adobe_is_deterministic_from_seed(tmp_path):
    a = _files(ensure_synthetic_adobe(tmp_path / "a", seed=7, **TINY_ADOBE))
    b = _files(ensure_synthetic_adobe(tmp_path / "b", seed=7, **{**TINY_ADOBE, "workers": 2}))
    c = _files(ensure_synthetic_adobe(tmp_path / "c", seed=8, **TINY_ADOBE))
    assert a == b  # byte-identical, whatever the number of threads
    assert a.keys() == c.keys() and a["fg/fg_0000.png"] != c["fg/fg_0000.png"]


def test_cache_is_reused_without_work(tmp_path, monkeypatch):
    first = ensure_synthetic_adobe(tmp_path, seed=0, **TINY_ADOBE)

    def boom(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(adobe_set, "generate_adobe_set", boom)
    assert ensure_synthetic_adobe(tmp_path, seed=0, **TINY_ADOBE) == first
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))  # the default root follows $BGMATTING_CACHE
    assert ensure_synthetic_adobe(seed=0, **TINY_ADOBE) == first
    with pytest.raises(AssertionError, match="generated again"):  # other parameters: a new set
        ensure_synthetic_adobe(tmp_path, seed=1, **TINY_ADOBE)


def test_interrupted_generation_is_never_taken_as_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = adobe_set.make_foreground

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # like Ctrl-C half-way
        return real(*args, **kwargs)

    monkeypatch.setattr(adobe_set, "make_foreground", flaky)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_adobe(tmp_path, seed=0, **TINY_ADOBE)
    base = tmp_path / "synthetic_adobe"
    assert [p for p in base.iterdir()] == []  # no final folder, temporary removed

    # A temporary left by a killed process (dead pid) and a final folder without its marker.
    monkeypatch.setattr(adobe_set, "make_foreground", real)
    key_folder = ensure_synthetic_adobe(tmp_path, seed=0, **TINY_ADOBE)
    expected = _files(key_folder)
    (key_folder / cache.MARKER).unlink()
    (key_folder / "fg" / "fg_0000.png").unlink()  # looks like a half-written set
    stale = base / f".{key_folder.name}.{socket.gethostname()}-999999999.deadbeef.tmp"  # pid not running
    elsewhere = base / f".{key_folder.name}.another-host-999999999.deadbeef.tmp"  # maybe running there
    elsewhere.mkdir()
    (stale / "fg").mkdir(parents=True)
    assert not cache.is_complete(key_folder)
    again = ensure_synthetic_adobe(tmp_path, seed=0, **TINY_ADOBE)
    assert again == key_folder and cache.is_complete(again) and _files(again) == expected
    assert not stale.exists() and elsewhere.exists()


# ------------------------------------------------------------------------------------- synthetic captures
def _fit_linear(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel least-squares a * src + b ~ dst over mask; returns the fitted src."""
    out = np.empty_like(src)
    for ch in range(3):
        x, y = src[:, :, ch][mask], dst[:, :, ch][mask]
        a, b = np.polyfit(x, y, 1)
        out[:, :, ch] = a * src[:, :, ch] + b
    return out


def test_synthetic_captures_plate_differs_like_a_real_one_but_aligns(tmp_path):
    manifest = ensure_synthetic_real(tmp_path, seed=3, **{**TINY_REAL, "size": (96, 128)})
    data = json.loads(manifest.read_text())
    assert [c["handheld"] for c in data["clips"]] == [False, True]
    fixed = manifest.parent / data["clips"][0]["path"]
    truth = manifest.parent / data["clips"][0]["ground_truth"]
    capture = json.loads((truth / "capture.json").read_text())
    assert abs(capture["gain"] - 1.0) >= 0.05  # another exposure
    plate = read_image(fixed / "background.png")
    corners = np.array([[0, 0, 1], [127, 0, 1], [0, 95, 1], [127, 95, 1]], float).T
    shadow_seen = False
    for i in range(5):
        frame = read_image(fixed / "frames" / f"{i:06d}.png")
        alpha = read_alpha(truth / "alpha" / f"{i:06d}.png")
        shadow = read_alpha(truth / "shadow" / f"{i:06d}.png")
        clear = (alpha == 0) & (shadow < 0.01)
        raw = np.abs(frame - plate)[clear].mean()
        as_captured = np.abs(frame - _fit_linear(plate, frame, clear))[clear].mean()
        assert as_captured < raw  # part of the difference is exposure
        # A small homography relates plate and frame (a few px at most) ...
        to_frame = np.array(capture["frame_poses"][i]) @ np.linalg.inv(np.array(capture["plate_pose"]))
        moved = to_frame @ corners
        assert np.abs(moved[:2] / moved[2] - corners[:2]).max() < 0.03 * 128
        # ... and undoing it aligns the plate up to noise and exposure.
        warped = cv2.warpPerspective(plate, to_frame, (128, 96), borderMode=cv2.BORDER_REPLICATE)
        fitted = _fit_linear(warped, frame, clear)
        aligned = np.abs(frame - fitted)[clear].mean()
        assert aligned < 0.03 and aligned < as_captured, (aligned, as_captured)
        shaded = (alpha == 0) & (shadow > 0.15)
        if shaded.sum() > 20:
            ratio = lambda m: (frame[m].mean() + 1e-3) / (fitted[m].mean() + 1e-3)  # noqa: E731
            assert ratio(shaded) < ratio(clear) - 0.05  # darker where the subject's shadow falls
            shadow_seen = True
    assert shadow_seen


def test_handheld_clip_has_aligned_plates_that_fit_the_frames(tmp_path):
    manifest = ensure_synthetic_real(tmp_path, seed=3, **{**TINY_REAL, "size": (96, 128)})
    data = json.loads(manifest.read_text())
    clip = manifest.parent / data["clips"][1]["path"]
    assert data["clips"][1]["aligned_background"] == "aligned_background"
    truth = manifest.parent / data["clips"][1]["ground_truth"]
    plate = read_image(clip / "background.png")
    for i in (0, 4):
        frame = read_image(clip / "frames" / f"{i:06d}.png")
        aligned = read_image(clip / "aligned_background" / f"{i:06d}.png")
        alpha, shadow = (read_alpha(truth / kind / f"{i:06d}.png") for kind in ("alpha", "shadow"))
        clear = (alpha == 0) & (shadow < 0.01)
        res_aligned = np.abs(frame - _fit_linear(aligned, frame, clear))[clear].mean()
        res_plate = np.abs(frame - _fit_linear(plate, frame, clear))[clear].mean()
        assert res_aligned < res_plate


def test_synthetic_captures_are_deterministic_and_cached(tmp_path, monkeypatch):
    m1 = ensure_synthetic_real(tmp_path / "a", seed=1, **TINY_REAL)
    m2 = ensure_synthetic_real(tmp_path / "b", seed=1, **TINY_REAL)
    m3 = ensure_synthetic_real(tmp_path / "c", seed=2, **TINY_REAL)
    f1, f2, f3 = (_files(m.parent) for m in (m1, m2, m3))
    assert f1 == f2
    assert not [p for p in (tmp_path / "a" / "synthetic_real").iterdir() if p.name.startswith(".")]
    assert f1["clips/clip_000/frames/000000.png"] != f3["clips/clip_000/frames/000000.png"]
    from bgmatting.data.synthetic import clips

    monkeypatch.setattr(clips, "generate_real_set", lambda *a, **k: pytest.fail("generated again"))
    assert ensure_synthetic_real(tmp_path / "a", seed=1, **TINY_REAL) == m1


def test_synthetic_real_dataset_samples(tmp_path):
    ds = synthetic_real_dataset(tmp_path, n_clips=2, n_frames=5, frame_size=(48, 64), n_targets=2,
                                handheld_fraction=0.5, seed=0, workers=1, size=32,
                                motion_offsets=(-2, -1, 1, 2), sample_seed=3)
    assert len(ds) == 10 and ds.seed == 3
    s = ds[7]
    assert s["image"].shape == (3, 32, 32) and s["motion"].shape == (4, 32, 32)
    assert int(s["clip"]) == 1
    gt = synthetic_real_dataset(tmp_path, n_clips=2, n_frames=5, frame_size=(48, 64), n_targets=2,
                                handheld_fraction=0.5, seed=0, workers=1, size=32, ground_truth=True, hflip=0.0)
    s = gt[2]
    assert s["alpha"].shape == (1, 32, 32) and s["trimap"].dtype.is_floating_point is False
    assert s["alpha"].max() > 0.5
    assert set(np.unique(s["trimap"].numpy())) <= {0, 128, 255}


# ------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("overrides, train_type, val_type", [
    (["data.generation.n_fg=2", "data.generation.n_bg=2", "data.generation.size=48", "data.generation.n_test_fg=1",
      "data.generation.n_test_bg=2", "data.train.samples_per_fg=2", "data.train.augment.output_size=32"],
     "AdobeCompositeDataset", "CompositeSetDataset"),
    (["stage=real", "data.generation.n_clips=2", "data.generation.n_frames=4", "data.generation.frame_size=[48,64]",
      "data.generation.n_targets=2", "data.train.size=32", "data.val.size=32"],
     "RealCaptureDataset", "RealCaptureDataset"),
])
def test_quickstart_data_configs_instantiate(tmp_path, overrides, train_type, val_type, compose_config):
    from hydra.utils import instantiate

    cfg = compose_config("train", [f"data.cache_dir={tmp_path}", *overrides])
    train = instantiate(cfg.data.train, _convert_="all")
    val = instantiate(cfg.data.val, _convert_="all")
    assert (type(train).__name__, type(val).__name__) == (train_type, val_type)
    s, v = train[0], val[0]
    assert s["image"].shape == (3, 32, 32) and s["motion"].shape[0] == 4
    assert {"image", "background", "segmentation", "motion", "alpha", "trimap"} <= set(v)


def test_synthetic_captures_segment_like_prepare_real_or_from_alpha(tmp_path):
    """By default each frame's S is the offline segmenter's on the frame and the plate aligned to it (as
    prepare_real would write it); ``from_alpha`` gives the near-perfect S of the true alpha."""
    from bgmatting.preprocess.segment import get_segmenter

    realistic = ensure_synthetic_real(tmp_path, seed=3, **{**TINY_REAL, "size": (96, 128)})
    perfect = ensure_synthetic_real(tmp_path, seed=3, segmentation="from_alpha", **{**TINY_REAL, "size": (96, 128)})
    assert realistic.parent != perfect.parent
    handheld = json.loads(realistic.read_text())["clips"][1]
    clip, truth = realistic.parent / handheld["path"], realistic.parent / handheld["ground_truth"]
    frame, plate = read_image(clip / "frames" / "000002.png"), read_image(clip / "aligned_background" / "000002.png")
    seg = read_alpha(clip / "segmentation" / "000002.png")
    assert np.abs(seg - get_segmenter("background_difference")(frame, plate)).max() <= 1 / 255 + 1e-6
    true = read_alpha(truth / "alpha" / "000002.png")
    near_perfect = read_alpha(perfect.parent / handheld["path"] / "segmentation" / "000002.png")
    assert np.abs(near_perfect - true).mean() < np.abs(seg - true).mean()
    with pytest.raises(ValueError, match="segmentation"):
        ensure_synthetic_real(tmp_path, segmentation="oracle", **TINY_REAL)
