"""File I/O: conversions (16-bit, gray, RGBA, 3-channel alpha) and errors that name the file."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from bgmatting.data.io import (DataError, list_images, read_alpha, read_image, read_rgba, read_trimap, write_alpha,
                               write_image)


def test_write_read_round_trip_keeps_rgb_order(tmp_path):
    img = np.zeros((6, 5, 3), np.float32)
    img[..., 0] = 1.0  # pure red
    img[2, 3] = (0.2, 0.4, 0.6)
    path = tmp_path / "red.png"
    write_image(path, img)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw[0, 0].tolist() == [0, 0, 255]  # stored BGR on disk
    back = read_image(path)
    assert back.dtype == np.float32 and back.shape == (6, 5, 3)
    np.testing.assert_allclose(back, img, atol=0.5 / 255)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file


def test_grayscale_is_replicated_and_rgba_alpha_dropped(tmp_path):
    gray = (np.arange(12, dtype=np.uint8).reshape(3, 4) * 20)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    g = read_image(tmp_path / "g.png")
    assert g.shape == (3, 4, 3)
    np.testing.assert_allclose(g[..., 1], gray / 255.0, atol=1e-6)
    bgra = np.zeros((3, 4, 4), np.uint8)
    bgra[..., 2] = 200  # red
    bgra[..., 3] = 100
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    rgb = read_image(tmp_path / "rgba.png")
    assert rgb.shape == (3, 4, 3) and np.allclose(rgb[..., 0], 200 / 255) and np.allclose(rgb[..., 2], 0)
    rgba = read_rgba(tmp_path / "rgba.png")
    assert rgba.shape == (3, 4, 4) and np.allclose(rgba[..., 3], 100 / 255)


def test_16_bit_png_is_scaled_by_65535(tmp_path):
    a16 = np.array([[0, 32768, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "a16.png"), a16)
    a = read_alpha(tmp_path / "a16.png")
    np.testing.assert_allclose(a, [[0.0, 32768 / 65535, 1.0]], atol=1e-6)
    rgb16 = np.full((2, 2, 3), 65535, np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16)
    assert np.allclose(read_image(tmp_path / "rgb16.png"), 1.0)


def test_alpha_channels(tmp_path):
    same = np.repeat((np.arange(6, dtype=np.uint8) * 40).reshape(2, 3)[..., None], 3, axis=2)
    cv2.imwrite(str(tmp_path / "same.png"), same)
    assert read_alpha(tmp_path / "same.png").shape == (2, 3)
    diff = same.copy()
    diff[0, 0, 1] = 7
    cv2.imwrite(str(tmp_path / "diff.png"), diff)
    with pytest.raises(DataError, match="diff.png.*single-channel"):
        read_alpha(tmp_path / "diff.png")


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_image_is_an_error_naming_the_file(tmp_path, ext):
    ok, buf = cv2.imencode(ext, np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    path = tmp_path / f"cut{ext}"
    path.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(DataError, match=f"cut\\{ext}.*cannot decode"):
        read_image(path)


def test_missing_empty_folder_and_non_image(tmp_path):
    with pytest.raises(DataError, match="nope.png: file does not exist"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty.png: file is empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match="text.png"):
        read_image(tmp_path / "text.png")
    with pytest.raises(DataError, match="is a folder"):
        read_image(tmp_path)


def test_list_images_errors_on_missing_or_empty_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "none")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="contains no images"):
        list_images(tmp_path)
    write_image(tmp_path / "b.png", np.zeros((2, 2, 3)))
    write_image(tmp_path / "a.JPG", np.zeros((2, 2, 3)))
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]


def test_trimap_values_are_snapped(tmp_path):
    write_alpha(tmp_path / "t.png", np.array([[0, 127, 130, 255, 40, 220]], np.uint8))
    assert read_trimap(tmp_path / "t.png").tolist() == [[0, 128, 128, 255, 0, 255]]


def test_float_tiff_out_of_range_is_an_error_not_clipped(tmp_path):
    path = tmp_path / "hdr.tiff"
    cv2.imwrite(str(path), np.full((4, 5, 3), 1.5, np.float32))
    with pytest.raises(DataError, match=r"hdr\.tiff.*\[0, 1\]"):
        read_image(path)
    ok = tmp_path / "ok.tiff"
    cv2.imwrite(str(ok), np.full((4, 5, 3), 0.25, np.float32))
    assert np.allclose(read_image(ok), 0.25)
