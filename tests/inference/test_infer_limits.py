"""Inference within the image-size limit: --max-memory-gb bounds decoding too, and video frames (input clips and
target-background videos) are checked by their declared size before a frame is decoded."""
from __future__ import annotations

from bad_input import assert_refused, files_under, run_argparse_main
from infer_helpers import disc_alpha, paste_subject, photo

from bgmatting.io import MAX_PIXELS_VARIABLE, write_image
from bgmatting.infer import main


def _refused(tmp_path, capsys, argv, expected):
    before = files_under(tmp_path)
    code = run_argparse_main(main, argv)
    assert_refused(code, capsys.readouterr().err, expected, tmp_path, before)


def test_max_memory_gb_limits_decoding_too(tmp_path, capsys, photo_folder, tiny_checkpoint):
    image = photo_folder["images"] / "coffee.png"  # 96 x 128 = 12,288 pixels
    budget = 16 * 10_000 / 2**30  # decoding to float32 RGBA: 16 bytes a pixel -> 10,000 pixels
    _refused(tmp_path, capsys, ["--input", str(image), "--background", str(photo_folder["plates"] / "coffee.png"),
                                "--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "out"),
                                "--max-memory-gb", f"{budget:.12f}", "--no-progress"],
             r"^error: .*coffee\.png: image is 128x96 \(12,288 pixels\), above the limit of 10,000 pixels "
             r"\(what --max-memory-gb .* allows for decoding it\)$")


def test_a_video_above_the_pixel_limit_is_refused_by_its_declared_size(tmp_path, capsys, monkeypatch,
                                                                       synthetic_clip, tiny_checkpoint):
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "3000")  # the clip's frames are 64 x 48 = 3,072 pixels
    _refused(tmp_path, capsys, ["--input", str(synthetic_clip["video"]), "--background",
                                str(synthetic_clip["plate"]), "--checkpoint", str(tiny_checkpoint),
                                "--output", str(tmp_path / "out"), "--no-progress"],
             r"^error: .*clip\.avi: video frame is 64x48 \(3,072 pixels\), above the limit of 3,000 pixels")


def test_a_target_video_above_the_pixel_limit_is_refused(tmp_path, capsys, monkeypatch, synthetic_clip,
                                                         tiny_checkpoint):
    height, width = 40, 48  # 1,920 pixels: within the limit, the 64 x 48 target video is not
    plate = photo("coffee", height, width)
    write_image(tmp_path / "in" / "photo.png", paste_subject(plate, disc_alpha(height, width, (20.0, 24.0), 10.0)))
    write_image(tmp_path / "in" / "plate.png", plate)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "3000")
    _refused(tmp_path, capsys, ["--input", str(tmp_path / "in" / "photo.png"), "--background",
                                str(tmp_path / "in" / "plate.png"), "--checkpoint", str(tiny_checkpoint),
                                "--output", str(tmp_path / "out"), "--no-progress", "--size", "48",
                                "--target-background", str(synthetic_clip["video"])],
             r"^error: .*clip\.avi: video frame is 64x48 \(3,072 pixels\), above the limit of 3,000 pixels")


def test_the_limit_holds_on_the_reader_thread_too(tmp_path, capsys, tiny_checkpoint):
    """A folder's later images are decoded ahead, on the runner's reader thread: the --max-memory-gb limit of the
    run holds there as well."""
    for name, (height, width) in {"a_small": (40, 48), "b_large": (400, 400)}.items():
        plate = photo("coffee", height, width)
        write_image(tmp_path / "in" / f"{name}.png", paste_subject(plate, disc_alpha(height, width, (20.0, 24.0), 10.0)))
        write_image(tmp_path / "plates" / f"{name}.png", plate)
    budget = 16 * 150_000 / 2**30  # 150,000 pixels: the first image (1,920) decodes, the second (160,000) does not;
    # the network (a 48 x 48 crop) fits
    before = files_under(tmp_path)
    code = run_argparse_main(main, ["--input", str(tmp_path / "in"), "--background", str(tmp_path / "plates"),
                                    "--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "out"),
                                    "--size", "48", "--no-progress", "--max-memory-gb", f"{budget:.12f}"])
    err = capsys.readouterr().err
    assert code == 2 and "b_large.png: image is 400x400 (160,000 pixels), above the limit of 149,99" in err, err
    assert not [n for n in files_under(tmp_path) if n not in before and not n.startswith("out/.")], err
