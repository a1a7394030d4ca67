"""AdobeCompositeDataset / CompositeSetDataset: sample contract, determinism, Adobe list formats, bad input."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from bgmatting.data.adobe import AdobeCompositeDataset, CompositeSetDataset, resolve_backgrounds
from bgmatting.data.augment import AdobeAugment
from bgmatting.data.composite_sets import build_composite_set
from bgmatting.data.compositing import to_gray
from bgmatting.io import DataError, write_alpha, write_image
from bgmatting.data.manifest import write_manifest

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "data" / "adobe.yaml"
SMALL = {"augment": AdobeAugment(output_size=32), "samples_per_fg": 3}


def disc_alpha(h, w, radius):
    yy, xx = np.mgrid[:h, :w]
    return np.clip((radius - np.hypot(yy - h / 2, xx - w / 2)) / 3 + 0.5, 0, 1).astype(np.float32)


def make_adobe(root: Path, n_fg=2, n_bg=4, seed=0) -> Path:
    """An Adobe-release-like tree: two fg/alpha folder pairs, name lists, a COCO-like bg folder."""
    rng = np.random.default_rng(seed)
    for i in range(n_fg):
        part = "Adobe-licensed images" if i % 2 == 0 else "Other"
        h, w = 40 + 4 * i, 48
        write_image(root / part / "fg" / f"person {i}.png", rng.random((h, w, 3), dtype=np.float32))
        write_alpha(root / part / "alpha" / f"person {i}.png", disc_alpha(h, w, 14))
    for j in range(n_bg):
        size = (30, 36) if j == 0 else (60, 70)  # bg 0 smaller than every fg -> upscaled
        write_image(root / "bg" / f"COCO_{j:04d}.jpg", rng.random(size + (3,), dtype=np.float32))
    (root / "fg_names.txt").write_text("".join(f"person {i}.png\n" for i in range(n_fg)) + "\n")
    (root / "bg_names.txt").write_text("".join(f"COCO_{j:04d}.jpg\r\n" for j in reversed(range(n_bg))))
    return root


def from_tree(root: Path, **kwargs) -> AdobeCompositeDataset:
    return AdobeCompositeDataset.from_folders(
        [root / "Adobe-licensed images/fg", root / "Other/fg"],
        [root / "Adobe-licensed images/alpha", root / "Other/alpha"],
        root / "bg", fg_list=root / "fg_names.txt", bg_list=root / "bg_names.txt", **{**SMALL, **kwargs})


def check_sample(s: dict, h: int, w: int) -> None:
    shapes = {"image": 3, "background": 3, "background_clean": 3, "segmentation": 1, "motion": 4, "alpha": 1,
              "foreground": 3, "trimap": 1}
    assert set(s) == set(shapes)
    for k, c in shapes.items():
        assert s[k].shape == (c, h, w), k
        if k == "trimap":
            assert s[k].dtype == torch.uint8 and set(s[k].unique().tolist()) <= {0, 128, 255}
        else:
            assert s[k].dtype == torch.float32 and s[k].min() >= 0 and s[k].max() <= 1, k


def test_from_folders_reads_adobe_lists_and_yields_the_sample_contract(tmp_path):
    ds = from_tree(make_adobe(tmp_path))
    assert len(ds) == 2 * 3
    assert [p.name for p in ds.fg_paths] == ["person 0.png", "person 1.png"]
    assert [p.name for p in ds.bg_paths] == [f"COCO_{j:04d}.jpg" for j in (3, 2, 1, 0)]  # list order kept
    check_sample(ds[0], 32, 32)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["trimap"].dtype == torch.uint8


def test_samples_depend_only_on_seed_epoch_index(tmp_path):
    root = make_adobe(tmp_path)
    a, b = from_tree(root, seed=1), from_tree(root, seed=1)
    assert all(torch.equal(a[4][k], b[4][k]) for k in a[4])
    assert not torch.equal(a[4]["image"], a[5]["image"])
    b.set_epoch(1)
    assert not torch.equal(a[4]["background"], b[4]["background"])
    assert not torch.equal(a[4]["image"], from_tree(root, seed=2)[4]["image"])


def test_background_assignment(tmp_path):
    ds = from_tree(make_adobe(tmp_path, n_fg=2, n_bg=4), samples_per_fg=2)
    rng = np.random.default_rng(0)
    assert [ds.background_index(i, rng) for i in range(4)] == [0, 1, 2, 3]  # disjoint blocks per fg
    rnd = from_tree(tmp_path, background_assignment="random", samples_per_fg=50)
    picks = {rnd.background_index(i, rnd.rng(i)) for i in range(100)}
    assert picks == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="background_assignment"):
        from_tree(tmp_path, background_assignment="nope")


def test_bad_files_raise_data_errors_naming_the_file(tmp_path):
    root = make_adobe(tmp_path)
    fg0 = root / "Adobe-licensed images/fg/person 0.png"
    fg0.write_bytes(fg0.read_bytes()[:60])  # truncated
    ds = from_tree(root)
    with pytest.raises(DataError, match="person 0.png"):
        ds[0]
    write_alpha(root / "Other/alpha/person 1.png", disc_alpha(10, 10, 3))
    with pytest.raises(DataError, match="person 1.png.*10x10.*48x44"):
        ds[3]


def test_alpha_with_different_channels_is_rejected(tmp_path):
    root = make_adobe(tmp_path)
    bgr = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    cv2.imwrite(str(root / "Adobe-licensed images/alpha/person 0.png"), bgr)
    with pytest.raises(DataError, match="alpha must be single-channel"):
        from_tree(root)[0]


def test_rgba_fg_gray_background_and_16_bit_alpha_are_converted(tmp_path):
    root = make_adobe(tmp_path, n_fg=1, n_bg=1)
    rgba = np.dstack([np.full((40, 48, 3), 90, np.uint8), np.full((40, 48), 255, np.uint8)])
    cv2.imwrite(str(root / "Adobe-licensed images/fg/person 0.png"), rgba)
    cv2.imwrite(str(root / "Adobe-licensed images/alpha/person 0.png"),
                (disc_alpha(40, 48, 14) * 65535).astype(np.uint16))
    cv2.imwrite(str(root / "bg/COCO_0000.jpg"), np.full((30, 36), 128, np.uint8))  # grayscale
    ds = AdobeCompositeDataset.from_folders(root / "Adobe-licensed images/fg", root / "Adobe-licensed images/alpha",
                                            root / "bg", **SMALL)
    check_sample(ds[0], 32, 32)


def test_missing_names_and_empty_folders(tmp_path):
    root = make_adobe(tmp_path)
    (root / "bg_names.txt").write_text("COCO_0000.jpg\nmissing.jpg\n")
    with pytest.raises(DataError, match="bg_names.txt: background 'missing.jpg' not found"):
        from_tree(root)
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="empty: folder contains no images"):
        AdobeCompositeDataset.from_folders(root / "empty", root / "empty", root / "bg")
    (root / "Other/alpha/person 1.png").unlink()
    with pytest.raises(DataError, match="person 1.png: no alpha matte"):
        AdobeCompositeDataset.from_folders(root / "Other/fg", root / "Other/alpha", root / "bg")


def test_voc_root_is_found(tmp_path):
    jpeg = tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages"
    write_image(jpeg / "2008_000001.jpg", np.zeros((8, 8, 3)))
    (tmp_path / "VOCdevkit" / "VOC2012" / "Annotations").mkdir()
    assert resolve_backgrounds(tmp_path / "VOCdevkit") == [jpeg / "2008_000001.jpg"]


def test_composite_set_dataset(tmp_path):
    root = make_adobe(tmp_path / "adobe")
    ds_src = from_tree(root)
    manifest = build_composite_set(ds_src.fg_paths, ds_src.alpha_paths, ds_src.bg_paths, tmp_path / "set", per_fg=2,
                                   size=40, seed=0, progress=False)
    ds = CompositeSetDataset(manifest, seed=3)
    assert len(ds) == 4
    s = ds[1]
    check_sample(s, 40, 40)
    assert torch.equal(s["background"], s["background_clean"])
    for t in range(4):
        torch.testing.assert_close(s["motion"][t:t + 1], to_gray(s["image"][None])[0], atol=1e-5, rtol=0)
    assert torch.equal(CompositeSetDataset(manifest, seed=3)[1]["segmentation"], s["segmentation"])
    with pytest.raises(DataError, match="segmentation"):
        CompositeSetDataset(manifest, segmentation="file")


def test_composite_set_size_mismatch_names_the_file(tmp_path):
    write_image(tmp_path / "i.png", np.zeros((8, 8, 3)))
    write_image(tmp_path / "b.png", np.zeros((8, 9, 3)))
    write_alpha(tmp_path / "a.png", np.zeros((8, 8)))
    manifest = write_manifest(tmp_path / "m.csv", [{"image": tmp_path / "i.png", "background": tmp_path / "b.png",
                                                    "alpha": tmp_path / "a.png", "trimap": tmp_path / "a.png"}])
    with pytest.raises(DataError, match="b.png: background is 9x8 but image .*i.png is 8x8"):
        CompositeSetDataset(manifest)[0]


def test_hydra_config_instantiates_both_datasets(tmp_path):
    adobe = tmp_path / "adobe" / "Combined_Dataset" / "Training_set"
    make_adobe(adobe)
    (tmp_path / "adobe" / "train_data_list.txt").write_text("person 0.png\nperson 1.png\n")
    (adobe / "bg").rename(tmp_path / "bg")
    cfg = OmegaConf.create({"data": OmegaConf.load(CONFIG)})
    cfg.data.root = str(tmp_path)
    cfg.data.coco_train = str(tmp_path / "bg")
    cfg.data.train.samples_per_fg = 2
    cfg.data.train.augment.output_size = 32
    train = instantiate(cfg.data.train)
    assert isinstance(train, AdobeCompositeDataset) and len(train) == 4
    assert isinstance(train.augment, AdobeAugment) and train.augment.seg_blur_sizes == (21, 31, 41)
    check_sample(train[0], 32, 32)
    build_composite_set(train.fg_paths, train.alpha_paths, train.bg_paths, tmp_path / "composites" / "adobe_test",
                        per_fg=1, size=32, progress=False)
    val = instantiate(cfg.data.val)
    assert isinstance(val, CompositeSetDataset) and len(val) == 2
