"""File I/O: conversions (16-bit, gray, RGBA, 3-channel alpha, EXIF orientation), the pixel limit checked
before decoding, and errors that name the file."""
from __future__ import annotations


import cv2
import numpy as np
import pytest

from bgmatting.io.image_header import read_header
from bgmatting.io import (DEFAULT_MAX_PIXELS, MAX_PIXELS_VARIABLE, DataError, atomic_path, check_video_size,
                               image_from_bytes, image_pixel_limit, list_images, max_image_pixels,
                               pixel_limit_for_memory, read_alpha, read_image, read_rgba, read_trimap,
                               temporary_prefix, to_float, to_uint8, write_image, write_text)

from image_files import (jpeg_declaring, jpeg_with_orientation, marked, png_bomb_header,  # noqa: E402
                         png_with_orientation, webp_with_orientation)


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


STANDARD = [[0, 128, 255, 128, 0, 255]]


@pytest.mark.parametrize("name, stored", [
    ("standard.png", np.array([[0, 128, 255, 128, 0, 255]], np.uint8)),
    ("class_index.png", np.array([[0, 1, 2, 1, 0, 2]], np.uint8)),
    ("rgb.png", np.repeat(np.array([[0, 1, 2, 1, 0, 2]], np.uint8)[..., None], 3, axis=2)),
    ("float.tif", np.array([[0.0, 0.5, 1.0, 0.5, 0.0, 1.0]], np.float32)),
])
def test_trimap_encodings_are_recognised(tmp_path, name, stored):
    path = tmp_path / name
    assert cv2.imwrite(str(path), stored)
    trimap = read_trimap(path)
    assert trimap.dtype == np.uint8 and trimap.tolist() == STANDARD


@pytest.mark.parametrize("name, stored, found", [
    ("jpeg_like.png", np.array([[0, 127, 130, 255, 40, 220]], np.uint8), "uint8 values 0, 40, 127, 130, 220, 255"),
    ("binary.png", np.array([[0, 255, 3]], np.uint8), "uint8 values 0, 3, 255"),
    ("sixteen.png", np.array([[0, 32768, 65535]], np.uint16), "uint16 values 0, 32768, 65535"),
    ("soft.tif", np.array([[0.0, 0.25, 1.0]], np.float32), "float32 values 0, 0.25, 1"),
])
def test_other_trimap_values_are_refused_naming_file_and_values(tmp_path, name, stored, found):
    path = tmp_path / name
    assert cv2.imwrite(str(path), stored)
    with pytest.raises(DataError, match=rf"{name}: not a trimap: {found}; expected one of uint8 0/128/255; "
                                        r"uint8 class index 0/1/2; float 0/0\.5/1"):
        read_trimap(path)


def test_float_tiff_out_of_range_is_an_error_not_clipped(tmp_path):
    path = tmp_path / "hdr.tiff"
    cv2.imwrite(str(path), np.full((4, 5, 3), 1.5, np.float32))
    with pytest.raises(DataError, match=r"hdr\.tiff.*\[0, 1\]"):
        read_image(path)
    ok = tmp_path / "ok.tiff"
    cv2.imwrite(str(ok), np.full((4, 5, 3), 0.25, np.float32))
    assert np.allclose(read_image(ok), 0.25)
    holes = np.full((4, 5), 0.5, np.float32)
    holes[1, 2] = np.nan  # one NaN among valid values: not a silent NaN pixel
    cv2.imwrite(str(tmp_path / "nan.tiff"), holes)
    with pytest.raises(DataError, match=r"nan\.tiff: float image holds NaN or infinite values"):
        read_alpha(tmp_path / "nan.tiff")


def test_atomic_path_renames_on_success_and_deletes_on_failure(tmp_path):
    target = tmp_path / "sub" / "notes.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            assert tmp.parent == target.parent and tmp.name.startswith(".notes.txt.") and tmp.suffix == ".tmp"
            raise RuntimeError("boom")
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["notes.txt"]
    with atomic_path(target, fsync=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and len(list(target.parent.iterdir())) == 1


def test_atomic_path_keeps_the_extension_and_writes_whole_folders(tmp_path):
    with atomic_path(tmp_path / "clip.mp4", keep_extension=True) as tmp:
        assert tmp.name.endswith(".tmp.mp4")  # encoders pick the container from the name
        tmp.write_bytes(b"video")
    assert (tmp_path / "clip.mp4").read_bytes() == b"video"
    folder = tmp_path / "set"
    with pytest.raises(KeyError):
        with atomic_path(folder, directory=True, owner="host-12") as tmp:
            assert tmp.is_dir() and tmp.name.startswith(temporary_prefix(folder, "host-12"))
            (tmp / "a.txt").write_text("a")
            raise KeyError("interrupted")
    assert not folder.exists() and not list(tmp_path.glob(".set.*"))
    with atomic_path(folder, directory=True) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (folder / "a.txt").read_text() == "a"
    with pytest.raises(OSError):  # a complete folder is never replaced
        with atomic_path(folder, directory=True) as tmp:
            (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt"] and not list(tmp_path.glob(".set.*"))


def test_to_float_is_the_inverse_of_to_uint8():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    as_float = to_float(values)
    assert as_float.dtype == np.float32 and np.array_equal(to_uint8(as_float), values)
    np.testing.assert_array_equal(as_float, values.astype(np.float32) / 255.0)  # division, not a reciprocal
    with pytest.raises(DataError, match="frame 3: float image values must lie in"):
        to_float(np.full((2, 2), 1.5, np.float32), "frame 3")


def test_atomic_files_get_the_permissions_of_a_plain_write(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_text(tmp_path / "atomic.txt", "x")
    with atomic_path(tmp_path / "folder", directory=True) as tmp:
        (tmp / "f").write_text("x")
    (tmp_path / "plain_folder").mkdir()
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "atomic.txt") == mode(plain)  # shared datasets stay readable by the group
    assert mode(tmp_path / "folder") == mode(tmp_path / "plain_folder")


# ------------------------------------------------------------------------------------------- the pixel limit
@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp"])
def test_headers_give_the_stored_size_of_every_format(ext):
    data = cv2.imencode(ext, np.zeros((23, 37, 3), np.uint8))[1].tobytes()
    header = read_header(data)
    assert (header.width, header.height, header.orientation) == (37, 23, 1)
    assert read_header(b"P6 37 23 255\n" + bytes(37 * 23 * 3)) is None  # a format OpenCV reads, not ours


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb_header(30000, 30000))  # 149 bytes declaring 2.7 GB of pixels
    with pytest.raises(DataError) as error:
        read_image(bomb)
    assert str(error.value) == (f"{bomb}: image is 30000x30000 (900,000,000 pixels), above the limit of "
                                f"{DEFAULT_MAX_PIXELS:,} pixels (raise it with {MAX_PIXELS_VARIABLE}=N or "
                                "max_pixels=N)")
    for reader in (read_alpha, read_trimap, read_rgba):
        with pytest.raises(DataError, match="30000x30000"):
            reader(bomb)
    with pytest.raises(DataError, match=r"^upload: image is 20000x9000 \(180,000,000 pixels\)"):
        image_from_bytes(jpeg_declaring(20000, 9000), "upload")


def test_the_pixel_limit_comes_from_the_argument_the_context_or_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    write_image(path, np.zeros((30, 40, 3)))
    assert read_image(path, max_pixels=1200).shape == (30, 40, 3)  # the limit itself is allowed
    with pytest.raises(DataError, match=r"small\.png: image is 40x30 \(1,200 pixels\), above the limit of 1,199"):
        read_image(path, max_pixels=1199)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "1000")
    with pytest.raises(DataError, match="above the limit of 1,000 pixels"):
        read_image(path)
    with image_pixel_limit(500):
        assert max_image_pixels() == 500 and read_image(path, max_pixels=2000).shape == (30, 40, 3)
    assert max_image_pixels() == 1000
    for bad in ("0", "lots", "-5"):
        monkeypatch.setenv(MAX_PIXELS_VARIABLE, bad)
        with pytest.raises(DataError, match=rf"^{MAX_PIXELS_VARIABLE}: the image pixel limit must be a positive "
                                            rf"integer, got '{bad}'$"):
            read_image(path)
    with pytest.raises(DataError, match=r"^max_pixels: .* got 2\.5$"):
        read_image(path, max_pixels=2.5)


def test_the_limit_follows_a_memory_budget():
    assert pixel_limit_for_memory(2**30) == 2**30 // 16  # float32 RGBA: 16 bytes a pixel
    assert pixel_limit_for_memory(2**30, channels=3) == 2**30 // 12
    assert pixel_limit_for_memory(1e12) == DEFAULT_MAX_PIXELS  # a budget never raises the limit
    with image_pixel_limit(pixel_limit_for_memory(16 * 1000)), pytest.raises(DataError, match="limit of 1,000"):
        image_from_bytes(cv2.imencode(".png", np.zeros((40, 40), np.uint8))[1].tobytes(), "frame")
    with pytest.raises(DataError, match="memory budget must be positive"):
        pixel_limit_for_memory(0)


def test_a_video_frame_size_is_checked_before_its_frames_are_read(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
    for _ in range(2):
        writer.write(np.zeros((24, 32, 3), np.uint8))
    writer.release()
    capture = cv2.VideoCapture(str(path))
    try:
        check_video_size(capture, path)
        with pytest.raises(DataError, match=r"clip\.avi: video frame is 32x24 \(768 pixels\), above the limit of 700"):
            check_video_size(capture, path, max_pixels=700)
    finally:
        capture.release()


def test_formats_whose_size_cannot_be_read_first_are_refused(tmp_path):
    path = tmp_path / "photo.png"
    assert cv2.imwrite(str(tmp_path / "real.ppm"), np.zeros((4, 5, 3), np.uint8))
    path.write_bytes((tmp_path / "real.ppm").read_bytes())  # OpenCV decodes it, but no header of ours says its size
    with pytest.raises(DataError, match=r"photo\.png: cannot decode image .*not a PNG, JPEG, BMP, TIFF or WebP file"):
        read_image(path)


# --------------------------------------------------------------------------------------------- orientation
@pytest.mark.parametrize("writer", [jpeg_with_orientation, png_with_orientation, webp_with_orientation],
                         ids=["jpeg", "png", "webp"])
def test_exif_orientation_turns_the_pixels_upright(tmp_path, writer):
    card = marked()  # 12 x 20, white block top-left, red block top-right
    path = tmp_path / "rotated.img"
    path.write_bytes(writer(card, 6))  # 6: the camera was turned; the viewer rotates 90 degrees clockwise
    upright = read_image(path)
    assert upright.shape == (20, 12, 3)
    assert np.allclose(upright[2, 10], 1.0, atol=0.1)  # white: now top-right
    assert np.allclose(upright[17, 10], (1.0, 0.0, 0.0), atol=0.1)  # red: now bottom-right
    for orientation in range(1, 9):  # every orientation as OpenCV's own EXIF handling turns it
        data = writer(card, orientation)
        expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1] / 255.0
        np.testing.assert_allclose(image_from_bytes(data, "x"), expected, atol=1e-6, err_msg=str(orientation))



def test_mattes_are_turned_like_their_images(tmp_path):
    gray = marked()[:, :, 0]  # white block top-left (255), the rest 90 or 0
    path = tmp_path / "alpha.png"
    path.write_bytes(png_with_orientation(gray, 8))  # 8: the viewer rotates 90 degrees counter-clockwise
    alpha = read_alpha(path)
    assert alpha.shape == (20, 12) and np.all(alpha[-6:, :4] == 1.0) and np.sum(alpha == 1.0) == 24
