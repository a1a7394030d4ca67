"""The one-call API, one return type per call: ``bgmatting.matte`` (a photo, file or array -> a Matte),
``matte_frames`` (a folder, a video, a list -> Matte per frame), ``matte_to_folder`` (-> the summary, files
written); and the README's library snippets, run exactly as written."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import bgmatting
from bgmatting.io import DataError, read_alpha, write_image
from bgmatting.inference import Matte
from bgmatting.inference.temporal import DEFAULT_TEMPORAL

sys.path.insert(0, str(Path(__file__).parent / "inference"))
from infer_helpers import disc_alpha, paste_subject, photo, save_checkpoint, tiny_generator  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
GREEN = np.array([120, 255, 155], np.float32) / 255


@pytest.fixture
def capture(tmp_path) -> dict:
    """photo.png (a disc over a photo), plate.png, a 4-frame clip.mp4, a folder of two photos, ckpt.pt."""
    plate = photo("coffee", 96, 128)
    write_image(tmp_path / "plate.png", plate)
    write_image(tmp_path / "photo.png", paste_subject(plate, disc_alpha(96, 128, (50.0, 60.0), 20.0)))
    for name, x in (("a", 40.0), ("b", 80.0)):
        write_image(tmp_path / "folder" / f"{name}.png", paste_subject(plate, disc_alpha(96, 128, (48.0, x), 18.0)))
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (128, 96))
    for i in range(4):
        frame = paste_subject(plate, disc_alpha(96, 128, (48.0, 40.0 + 10 * i), 18.0))
        writer.write(cv2.cvtColor((frame * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()
    save_checkpoint(tmp_path / "ckpt.pt", tiny_generator())
    return {"root": tmp_path, "plate": plate}


def _check(matte: Matte, target: np.ndarray) -> None:
    assert matte.alpha.shape == (96, 128) and matte.foreground.shape == matte.composite.shape == (96, 128, 3)
    assert matte.alpha.dtype == np.float32 and 0 <= matte.alpha.min() and matte.alpha.max() <= 1
    expected = matte.alpha[..., None] * matte.foreground + (1 - matte.alpha[..., None]) * target
    np.testing.assert_allclose(matte.composite, expected, atol=1e-5)
    assert matte.rgba().shape == (96, 128, 4)


def test_one_image_from_a_file_and_from_arrays(capture):
    root = capture["root"]
    from_file = bgmatting.matte(root / "photo.png", root / "plate.png", checkpoint=root / "ckpt.pt", size=64,
                                progress=False)
    _check(from_file, GREEN)
    image = cv2.cvtColor(cv2.imread(str(root / "photo.png")), cv2.COLOR_BGR2RGB)  # uint8 RGB
    from_array = bgmatting.matte(image, capture["plate"], checkpoint=root / "ckpt.pt", size=64, target=(0, 0, 255),
                                 progress=False)
    _check(from_array, np.array([0, 0, 1], np.float32))
    np.testing.assert_allclose(from_array.alpha, from_file.alpha, atol=2 / 255)
    assert from_array.name == "image"


def test_a_folder_and_a_video_in_memory_and_into_a_folder(capture):
    root = capture["root"]
    mattes = bgmatting.matte_frames(root / "folder", root / "plate.png", checkpoint=root / "ckpt.pt", size=64,
                                    target="255,255,255", progress=False)
    assert [m.name for m in mattes] == ["a", "b"]
    for m in mattes:
        _check(m, np.ones(3, np.float32))
    frames = bgmatting.matte_frames(root / "clip.mp4", root / "plate.png", checkpoint=root / "ckpt.pt", size=64,
                                    progress=False)
    assert len(frames) == 4 and frames[3].name == "00003"
    summary = bgmatting.matte_to_folder(root / "clip.mp4", root / "plate.png", checkpoint=root / "ckpt.pt", size=64,
                                        output=root / "out", target=root / "plate.png", png_sequences=True,
                                        progress=False)
    assert summary["frames"] == 4 and summary["temporal"] == DEFAULT_TEMPORAL and len(summary["plates"]) == 4
    assert json.loads((root / "out" / "summary.json").read_text())["frames"] == 4
    assert (root / "out" / "clip_composite.mp4").exists()
    assert read_alpha(root / "out" / "alpha" / "00000.png").shape == (96, 128)


def test_a_loaded_model_and_bad_arguments(capture):
    from bgmatting.models import load_matting_model

    root = capture["root"]
    model = load_matting_model(root / "ckpt.pt")
    _check(bgmatting.matte(root / "photo.png", root / "plate.png", checkpoint=model, size=64, progress=False), GREEN)
    with pytest.raises(TypeError, match="unknown options colour"):
        bgmatting.matte(root / "photo.png", root / "plate.png", checkpoint=model, colour="red")
    with pytest.raises(DataError, match="missing.png"):
        bgmatting.matte(root / "missing.png", root / "plate.png", checkpoint=model, progress=False)
    with pytest.raises(DataError, match="batch size must be a positive integer, got 0"):
        bgmatting.matte(root / "photo.png", root / "plate.png", checkpoint=model, batch_size=0, progress=False)
    with pytest.raises(DataError, match=r"folder: matte\(\) takes one photo; use bgmatting.matte_frames"):
        bgmatting.matte(root / "folder", root / "plate.png", checkpoint=model)
    with pytest.raises(DataError, match=r"a list of frames: matte\(\) takes one photo"):
        bgmatting.matte([capture["plate"]], root / "plate.png", checkpoint=model)


EMPTY_INPUTS = {  # (input, plate) that hold no pixels: a DataError naming what is empty
    "0x0 image": (np.zeros((0, 0, 3), np.uint8), None, r"image: image 0 is empty: 0x0 pixels"),
    "0x0 plate": (None, np.zeros((0, 0, 3), np.float32), r"background: a plate is empty: 0x0 pixels"),
    "array of 0 frames": (np.zeros((0, 96, 128, 3), np.uint8), None,
                          r"image: an array of shape \(0, 96, 128, 3\) holds 0 frames"),
    "list of 0 frames": ([], None, r"image: no input images"),
}


@pytest.mark.parametrize("case", sorted(EMPTY_INPUTS))
def test_empty_arrays_are_one_line_data_errors(capture, case):
    image, plate, message = EMPTY_INPUTS[case]
    image = cv2.cvtColor(cv2.imread(str(capture["root"] / "photo.png")), cv2.COLOR_BGR2RGB) if image is None else image
    plate = capture["plate"] if plate is None else plate
    with pytest.raises(DataError, match=message) as error:
        bgmatting.matte_frames(image, plate, checkpoint=capture["root"] / "ckpt.pt", size=64, progress=False)
    assert len(str(error.value).splitlines()) == 1


def test_a_bogus_device_and_an_empty_output_are_refused_before_anything_is_written(capture, monkeypatch):
    root = capture["root"]
    monkeypatch.chdir(root)
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(DataError, match=r"^device 'bogus' is not a device; use auto, cpu, cuda or cuda:N$"):
        bgmatting.matte(root / "photo.png", root / "plate.png", checkpoint=root / "ckpt.pt", device="bogus",
                        progress=False)
    with pytest.raises(DataError, match=r"^output '': an empty path; give a file or folder name"):
        bgmatting.matte_to_folder(root / "photo.png", root / "plate.png", checkpoint=root / "ckpt.pt", output="",
                                  progress=False)
    assert sorted(p.name for p in root.iterdir()) == before


def test_a_video_that_decodes_fewer_frames_than_it_declares_is_a_warning(capture):
    """The 4-frame clip as MJPG (whose frames survive a cut file), its last 40 % of bytes lost."""
    root, cut = capture["root"], capture["root"] / "cut.avi"
    clip = cv2.VideoCapture(str(root / "clip.mp4"))
    writer = cv2.VideoWriter(str(cut), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (128, 96))
    for _ in range(4):
        writer.write(clip.read()[1])
    writer.release()
    clip.release()
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    with pytest.warns(UserWarning, match=r"cut.avi: the video declares 4 frames but only \d could be decoded"):
        frames = bgmatting.matte_frames(cut, root / "plate.png", checkpoint=root / "ckpt.pt", size=64, progress=False)
    assert 0 < len(frames) < 4


def readme_snippets(section: str) -> list[str]:
    """The ```python blocks of a README section (from its heading to the next heading of any level)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(section)
    end = re.search(r"^#+ ", text[start + len(section):], re.MULTILINE)
    body = text[start: start + len(section) + (end.start() if end else len(text))]
    return re.findall(r"```python\n(.*?)```", body, re.DOTALL)


def test_the_readme_library_snippets_run_as_written(capture, monkeypatch, capsys):
    snippets = readme_snippets("### Library")
    assert len(snippets) >= 2
    monkeypatch.chdir(capture["root"])
    for snippet in snippets:
        exec(compile(snippet, str(README), "exec"), {"__name__": "readme"})
    assert (capture["root"] / "out" / "summary.json").exists()
    assert capsys.readouterr().out.strip()  # the snippets print what they got
