"""The held-out photo set: deterministic, composite-set layout at every scale, S by the recipe, B' by gamma,
strands with fractional alpha, subjects unlike the training generator's."""
from __future__ import annotations

import numpy as np
import pytest

from bgmatting.data.adobe import CompositeSetDataset
from bgmatting.data.augment import AdobeAugment, perturb_background, soft_segmentation_from_alpha
from bgmatting.data.compositing import composite, trimap_from_alpha
from bgmatting.io import read_alpha, read_image
from bgmatting.data.manifest import read_manifest
from bgmatting.data.synthetic import cache
from bgmatting.data.synthetic.photo_set import HELDOUT_SIZES, ensure_photo_set, heldout_dataset, heldout_sizes
from bgmatting.data.synthetic.photo_set import build, figures, photos, strands
from bgmatting.data.synthetic.photo_set.scenes import render_scene

TINY = dict(n_scenes=2, sizes=(24, 32))


def _fractional(alpha: np.ndarray) -> np.ndarray:
    return (alpha > 0.02) & (alpha < 0.98)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != cache.MARKER}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return ensure_photo_set(tmp_path_factory.mktemp("cache"), workers=1, **TINY)


def test_standard_scales():
    assert heldout_sizes() == HELDOUT_SIZES == (96, 128, 192, 256)


def test_set_is_deterministic_and_independent_of_the_worker_count(tiny_set, tmp_path):
    again = ensure_photo_set(tmp_path, workers=2, **TINY)
    assert again != tiny_set
    assert _files(again) == _files(tiny_set)
    other_seed = ensure_photo_set(tmp_path, workers=1, seed=1, **TINY)
    assert _files(other_seed) != _files(tiny_set)
    assert ensure_photo_set(tmp_path, workers=2, **TINY) == again  # found in the cache, not regenerated


@pytest.mark.parametrize("size", TINY["sizes"])
def test_every_scale_is_a_composite_set_of_the_same_scenes(tiny_set, size):
    manifest = read_manifest(tiny_set / str(size) / "manifest.csv", required_columns=build.FILE_COLUMNS)
    assert [r["name"] for r in manifest.rows] == ["scene_0000", "scene_0001"]
    dataset = CompositeSetDataset(tiny_set / str(size) / "manifest.csv", segmentation="file")
    assert len(dataset) == 2
    sample = dataset[1]
    for key, channels in (("image", 3), ("background", 3), ("background_clean", 3), ("foreground", 3),
                          ("alpha", 1), ("segmentation", 1), ("trimap", 1)):
        assert tuple(sample[key].shape) == (channels, size, size), key
    assert set(np.unique(sample["trimap"].numpy())) <= {0, 128, 255}
    image, alpha = read_image(manifest.file(1, "image")), read_alpha(manifest.file(1, "alpha"))
    expected = composite(alpha, read_image(manifest.file(1, "foreground")),
                         read_image(manifest.file(1, "background_clean")))
    assert np.abs(image - expected).max() <= 2.5 / 255  # I = aF + (1 - a)B up to 8-bit rounding


def test_dataset_factory_reads_the_stored_cues(tmp_path):
    dataset = heldout_dataset(32, n_scenes=2, cache_dir=tmp_path, workers=1)
    assert dataset.segmentation == "file" and len(dataset) == 2
    folder = dataset.manifest.root
    assert folder.name == "32" and (folder.parent / cache.MARKER).is_file()
    np.testing.assert_array_equal(dataset[0]["segmentation"].numpy()[0],
                                  read_alpha(dataset.manifest.file(0, "segmentation")))


def test_cues_follow_the_recipes():
    """B' = B^gamma; trimap by the DIM rule with the scaled K; S by the original recipe at that size."""
    scene = render_scene(0, 1, 64)
    fg, alpha, clean = scene.at(32)
    out = build.scale_sample(fg, alpha, clean, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(out["background"], perturb_background(clean, rng, noise_p=0.0))
    np.testing.assert_array_equal(out["trimap"], trimap_from_alpha(out["alpha"], build.trimap_k(32)))
    expected = soft_segmentation_from_alpha(out["alpha"], out["trimap"], rng,
                                            **AdobeAugment(output_size=32).segmentation_parameters())
    np.testing.assert_array_equal(out["segmentation"], expected)
    lit = (clean > 0.05) & (clean < 0.95)
    gamma = np.log(out["background"][lit]) / np.log(clean[lit])
    assert np.ptp(gamma) < 0.02 and abs(gamma.mean() - 1.0) > 1e-4  # one gamma for the whole image
    unknown = out["trimap"] == 128
    assert np.abs(out["segmentation"] - out["alpha"])[unknown].mean() > 0.1  # S is not the true alpha


def test_trimap_band_covers_the_same_part_of_the_scene():
    assert [build.trimap_k(s) for s in HELDOUT_SIZES] == [2, 2, 4, 5]


@pytest.mark.parametrize("style", sorted(strands.HAIR_STYLES))
def test_every_strand_family_gives_thin_fractional_alpha(style):
    head = figures.Head(64.0, 60.0, 16.0, 20.0, 2.3, 5.0, 0.2)
    hair = strands.HAIR_STYLES[style](np.random.default_rng(0), head, 128)
    alpha = strands.rasterise(hair, 128)
    covered = alpha > 0.02
    assert len(hair) >= 4 and covered.sum() > 40
    assert _fractional(alpha).sum() > 0.5 * covered.sum()


def test_wires_are_opaque_lines_with_a_ball_tip():
    head = figures.Head(64.0, 60.0, 16.0, 20.0, 2.3, 0.0, 0.2)
    rng = np.random.default_rng(0)
    wire = next(w for w in (strands.wires(rng, head, 512) for _ in range(20)) if len(w) == 3)
    assert wire.opacity == [1.0, 1.0, 1.0] and not any(wire.taper)
    assert strands.rasterise(wire, 512).max() > 0.95


def test_scenes_have_strands_outside_the_body_at_every_scale():
    for index in (0, 1, 2, 7):  # wisps, ringlets, curtain people and a horse
        scene = render_scene(0, index, 256)
        for size in (96, 128):
            _, alpha, _ = scene.at(size)
            band = trimap_from_alpha(alpha, build.trimap_k(size)) == 128
            assert _fractional(alpha)[band].sum() > 0.15 * band.sum(), (index, size)
    assert render_scene(0, 7, 64).info["subject"] == "horse"


def test_superellipse_and_capsule_distances_are_signed_pixels():
    x, y = figures.grid(64)
    d = figures.superellipse(x, y, (32, 32), (10, 10), 2.0)
    assert d[32, 32] < 0 and abs(d[32, 52] - 10.0) < 0.6  # about 10 px outside a radius-10 circle
    c = figures.capsule(x, y, (10, 10), (10, 50), 3.0)
    assert abs(c[30, 20] - 7.0) < 1e-4 and c[30, 10] == -3.0
    alpha = figures.coverage(d)
    assert alpha[32, 32] == 1.0 and alpha[0, 0] == 0.0 and _fractional(alpha).sum() > 40


def test_bad_parameters_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n_scenes"):
        ensure_photo_set(tmp_path, n_scenes=0)
    with pytest.raises(ValueError, match="16 px"):
        ensure_photo_set(tmp_path, sizes=(8,))


def test_scene_kinds_cycle_so_that_any_eight_scenes_hold_every_family():
    info = [render_scene(0, i, 64).info for i in range(8)]
    assert [i["hair"] for i in info] == ["wisps", "ringlets", "curtain", "flyaways", "spirals", "wisps", "ringlets",
                                         "mane_tail"]
    assert [i["wires"] for i in info] == [False, True, False, False, True, False, False, False]
    assert {i["background_photo"] for i in info} <= set(photos.BACKGROUND_PHOTOS)
