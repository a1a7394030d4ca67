"""Gallery and learning-curve PNGs: written atomically, decodable, laid out as asked."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from bgmatting.io import DataError
from bgmatting.evaluation.curves import read_metrics, validation_panels, write_learning_curves
from bgmatting.evaluation.gallery import GalleryRow, write_gallery


def _row(rng, name: str, size: int = 40, baselines=("α = S", "bg difference")) -> GalleryRow:
    alpha = rng.random((size, size)).astype(np.float32)
    trimap = np.full((size, size), 128, np.uint8)
    return GalleryRow(name, rng.random((size, size, 3)), rng.random((size, size, 3)), rng.random((size, size)),
                      alpha, np.clip(alpha + 0.1, 0, 1), {b: rng.random((size, size)) for b in baselines}, trimap)


def _decoded(path):
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.ndim == 3
    return image


def test_gallery_png_has_one_row_per_image_and_a_column_per_tile(tmp_path, rng):
    one = _decoded(write_gallery(tmp_path / "g1.png", [_row(rng, "a")]))
    three = _decoded(write_gallery(tmp_path / "g3.png", [_row(rng, n) for n in "abc"], title="held-out"))
    fewer = _decoded(write_gallery(tmp_path / "g0.png", [_row(rng, "a", baselines=())]))
    assert three.shape[0] > 2.5 * one.shape[0] * 0.9  # rows stack
    assert fewer.shape[1] < one.shape[1]  # two baseline columns fewer
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_gallery_tile_captions_are_the_sad_of_each_alpha(rng):
    row = _row(rng, "a")
    tiles = row.tiles("model α")
    labels = [t[0] for t in tiles]
    assert labels == ["image", "B'", "S", "true α", "model α", "α = S", "bg difference", "|model α − true α|"]
    assert tiles[4][2] == f"SAD {np.abs(row.predicted - row.alpha).sum() / 1000:.3f}"
    np.testing.assert_allclose(tiles[-1][1], np.abs(row.predicted - row.alpha), atol=1e-6)


def test_gallery_refuses_mismatched_inputs(tmp_path, rng):
    bad = _row(rng, "a")
    bad.predicted = bad.predicted[:-1]
    with pytest.raises(ValueError, match="'a'.*model"):
        write_gallery(tmp_path / "g.png", [bad], model_name="model")
    with pytest.raises(ValueError, match="different baselines"):
        write_gallery(tmp_path / "g.png", [_row(rng, "a"), _row(rng, "b", baselines=("x",))])
    assert not (tmp_path / "g.png").exists()


def _metrics_rows():
    rows = [{"step": s, "loss/alpha": 1.0 / s} for s in range(1, 41)]
    for step, value in ((20, 0.9), (40, 0.6)):
        rows.append({"step": step, "val/96/sad": value, "val/256/sad": 4 * value, "val/96/images": 8,
                     "val/256/images": 8, "val/96/segmentation/sad": 0.58, "val/96/mse": 0.1})
    return rows


def test_validation_panels_per_scale_with_baselines_and_subset_size():
    panels = validation_panels(_metrics_rows())
    assert list(panels) == ["96", "256"]
    assert panels["96"].steps == [20, 40] and panels["96"].values == [0.9, 0.6]
    assert panels["96"].baselines == {"segmentation": 0.58} and panels["96"].images == 8
    assert panels["256"].values == [3.6, 2.4] and panels["256"].baselines == {}
    single = validation_panels([{"step": 5, "val/sad": 0.5, "val/fg_sad": 3.0}])
    assert list(single) == [""] and single[""].values == [0.5]


def test_learning_curves_png_from_a_metrics_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in _metrics_rows())
    path.write_text(text + '{"step": 41, "val/96/s', encoding="utf-8")  # a run still writing its last line
    assert len(read_metrics(path)) == len(_metrics_rows())
    two = _decoded(write_learning_curves(path, tmp_path / "curves.png",
                                         baselines={256: {"background_difference": 1.1}}, title="adobe"))
    one = _decoded(write_learning_curves([{"step": 1, "val/sad": 0.5}], tmp_path / "one.png", images=32,
                                         baselines={"": {"segmentation": 0.7}}))
    assert two.shape[1] > 1.5 * one.shape[1]  # one panel per scale


def test_learning_curves_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="no val/.../sad"):
        write_learning_curves([{"step": 1, "loss/alpha": 0.3}], tmp_path / "c.png")
    bad = tmp_path / "metrics.jsonl"
    bad.write_text('{"step": 1}\nnot json\n{"step": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match="metrics.jsonl:2"):
        read_metrics(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_metrics(tmp_path / "missing.jsonl")
