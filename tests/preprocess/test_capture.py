"""The capture reader's plates: the cheap misalignment measure, the automatic alignment (none / once / per frame
as needed), the exposure correction where it helps, greyscale plates, the original release's folder layout,
and real-capture preparation deciding the same way. Scenes are real photos (scikit-image) seen through known
homographies, plates with another exposure."""
from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
from skimage import data

from bgmatting.io import DataError, read_image, write_image
from bgmatting.data.clip_preparation import prepare_clip
from bgmatting.preprocess.align import AlignmentWarning, align_background
from bgmatting.preprocess.capture import (
    DEFAULT_ALIGNMENT,
    BackgroundPlates,
    CapturedBackgrounds,
    Frame,
    ImageFrames,
    is_gray,
    open_input,
    resolve_alignment,
)
from bgmatting.preprocess.misalignment import (Misalignment, correct_exposure, measure_misalignment,
                                                 tolerance_px)

HEIGHT, WIDTH = 240, 320


def _scene(name: str = "astronaut") -> np.ndarray:
    """A photo 1.3 x the frame size, float32 RGB in [0, 1]."""
    image = getattr(data, name)()
    return cv2.resize(image, (int(WIDTH * 1.3), int(HEIGHT * 1.3)), interpolation=cv2.INTER_AREA) / np.float32(255)


def _pose(dx: float = 0.0, dy: float = 0.0, angle: float = 0.0) -> np.ndarray:
    """Scene px -> frame px: the frame window at the scene's centre, rotated by ``angle`` and shifted."""
    scene_h, scene_w = int(HEIGHT * 1.3), int(WIDTH * 1.3)
    to_centre = np.array([[1, 0, -scene_w / 2], [0, 1, -scene_h / 2], [0, 0, 1.0]])
    a = np.deg2rad(angle)
    rotate = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    to_frame = np.array([[1, 0, WIDTH / 2 + dx], [0, 1, HEIGHT / 2 + dy], [0, 0, 1.0]])
    return to_frame @ rotate @ to_centre


def _view(scene: np.ndarray, pose: np.ndarray, gain: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    view = cv2.warpPerspective(scene, pose, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.clip(gain * np.power(view, gamma), 0, 1).astype(np.float32)


def _with_subject(image: np.ndarray, centre=(120, 150), radius=40) -> tuple[np.ndarray, np.ndarray]:
    """The image with an opaque red disc pasted on; and the disc's mask."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    mask = np.hypot(ys - centre[0], xs - centre[1]) <= radius
    out = image.copy()
    out[mask] = (0.85, 0.15, 0.1)
    return out, mask


def _plates(plate: np.ndarray, alignment: str = DEFAULT_ALIGNMENT, **kwargs) -> BackgroundPlates:
    return BackgroundPlates(CapturedBackgrounds.from_array(plate, "plate.png"), alignment, **kwargs)


def _run(plates: BackgroundPlates, images: list[np.ndarray]) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlignmentWarning)
        return [plates.for_frame(Frame(i, f"{i:05d}", image), image) for i, image in enumerate(images)]


# ------------------------------------------------------------------------------------------------ the measure
@pytest.mark.parametrize("shift", [(0.0, 0.0), (2.0, -1.0), (9.0, 5.0)])
def test_measure_reads_a_known_shift_under_an_exposure_change(shift):
    scene = _scene()
    plate = _view(scene, _pose(), gain=1.2, gamma=0.8)
    image, subject = _with_subject(_view(scene, _pose(*shift)))
    measured = measure_misalignment(image, plate)
    assert measured.pixels == pytest.approx(np.hypot(*shift), abs=0.3)
    assert measured.inliers >= 12 and measured.reason is None
    # The plate as an alignment would use it (the true homography): registered.
    true = _pose(*shift) @ np.linalg.inv(_pose())
    assert measure_misalignment(image, plate, true, subject).pixels < 0.3


def test_measure_says_why_it_cannot_measure():
    flat = np.full((HEIGHT, WIDTH, 3), 0.5, np.float32)
    measured = measure_misalignment(_view(_scene(), _pose()), flat)
    assert measured.pixels is None and "too few trackable corners" in measured.reason
    assert not measured.within(1e9)
    with pytest.raises(ValueError, match="H x W x 3"):
        measure_misalignment(flat[:, :, 0], flat)


def test_tolerance_is_a_share_of_the_long_side_and_at_least_a_pixel():
    assert tolerance_px((1080, 1920)) == tolerance_px((1920, 1080)) == pytest.approx(1.5)  # 1920 / 1280
    assert tolerance_px((2160, 3840)) == pytest.approx(3.0)
    assert tolerance_px((HEIGHT, WIDTH)) == 1.0  # 320 / 1280 = 0.25 px, raised to one pixel
    assert tolerance_px((1080, 1920), tolerance=0.01) == pytest.approx(19.2)
    assert Misalignment(1.5).within(1.5) and not Misalignment(1.5001).within(1.5)


# ------------------------------------------------------------------------------------ automatic alignment
def test_a_registered_plate_is_used_as_captured():
    scene = _scene()
    plate = _view(scene, _pose(), gain=0.8)
    plates = _plates(plate)
    outputs = _run(plates, [_with_subject(_view(scene, _pose()))[0] for _ in range(3)])
    assert [r.action for r in plates.records] == ["none", "reused", "reused"]
    assert not plates.reports  # no AKAZE alignment was run
    assert all(r.misalignment_px < tolerance_px((HEIGHT, WIDTH)) for r in plates.records)
    assert outputs[1] is outputs[0]


def test_the_tolerance_option_decides_what_counts_as_registered():
    """A plate about 7 px off (aligned under the default tolerance, see below) is used as captured when the
    tolerance is 5 % of the long side (16 px at 320)."""
    scene = _scene("coffee")
    plates = _plates(_view(scene, _pose(-6.0, 4.0)), tolerance=0.05)
    _run(plates, [_with_subject(_view(scene, _pose()))[0]])
    assert plates.records[0].action == "none" and 5 < plates.records[0].misalignment_px < 16


def test_a_fixed_camera_plate_is_aligned_once_and_a_moving_camera_per_frame():
    scene = _scene("coffee")
    plate = _view(scene, _pose(-6.0, 4.0, 0.5), gain=1.15)
    fixed = _plates(plate)
    images = [_with_subject(_view(scene, _pose()))[0] for _ in range(3)]
    aligned = _run(fixed, images)
    assert [r.action for r in fixed.records] == ["aligned", "reused", "reused"]
    assert fixed.records[0].misalignment_px > 5 and fixed.records[0].residual_px < 0.5
    inner = (slice(30, -30), slice(30, 90))  # background, away from the subject and the borders
    before = np.abs(plate[inner] - images[0][inner]).mean()
    assert np.abs(aligned[0][inner] - images[0][inner]).mean() < 0.3 * before

    moving = _plates(plate)
    _run(moving, [_with_subject(_view(scene, _pose(dx, 0.0)))[0] for dx in (0.0, 0.0, 7.0, 7.0, -5.0)])
    assert [r.action for r in moving.records] == ["aligned", "reused", "aligned", "reused", "aligned"]
    assert moving.summary()["actions"] == {"aligned": 3, "reused": 2}


@pytest.mark.parametrize("mode, expected", [("none", ["none"] * 3), ("once", ["aligned", "reused", "reused"]),
                                            ("per_frame", ["aligned"] * 3)])
def test_explicit_modes_do_what_they_say(mode, expected):
    scene = _scene("coffee")
    plates = _plates(_view(scene, _pose(-6.0, 4.0)), mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run(plates, [_with_subject(_view(scene, _pose(dx, 0.0)))[0] for dx in (0.0, 8.0, -8.0)])
    told = [str(w.message) for w in caught if "px off the frames" in str(w.message)]
    assert len(told) == (1 if mode == "none" else 0)  # --no-align on a plate that is visibly off: said once
    assert [r.action for r in plates.records] == expected
    assert all(r.misalignment_px is not None for r in plates.records)  # measured and reported in every mode


def test_a_plate_that_can_be_neither_measured_nor_aligned_is_not_retried_on_every_frame():
    flat_scene = np.full((HEIGHT, WIDTH, 3), 0.4, np.float32)
    plates = _plates(flat_scene * 1.1)
    _run(plates, [_with_subject(flat_scene)[0] for _ in range(3)])
    assert [r.action for r in plates.records] == ["fell_back", "reused", "reused"] and len(plates.reports) == 1
    assert "too few" in plates.records[0].note


def test_resolve_alignment_picks_the_layout_of_real_capture_preparation():
    scene = _scene("coffee")
    cases = {"none": (_pose(), [(0, 0)] * 4), "once": (_pose(-6.0, 4.0), [(0, 0)] * 4),
             "per_frame": (_pose(-6.0, 4.0), [(0, 0), (5, 0), (10, 0), (15, 0)])}
    for expected, (plate_pose, shifts) in cases.items():
        frames = [Frame(i, f"{i:05d}", _with_subject(_view(scene, _pose(*s)))[0]) for i, s in enumerate(shifts)]
        captured = CapturedBackgrounds.from_array(_view(scene, plate_pose, gain=1.1), "plate.png")
        assert resolve_alignment(frames, len(frames), captured) == expected


# --------------------------------------------------------------------------------------- exposure and colour
def test_exposure_correction_only_where_it_helps():
    scene = _scene()
    image, subject = _with_subject(_view(scene, _pose()))
    darker = _view(scene, _pose(), gain=0.75, gamma=1.1)
    corrected, report = correct_exposure(image, darker, ~subject)
    assert report.applied and report.residual_after < 0.5 * report.residual_before
    assert np.abs(corrected - image)[~subject].mean() < 0.5 * np.abs(darker - image)[~subject].mean()
    same, report = correct_exposure(image, _view(scene, _pose()), ~subject)
    assert not report.applied
    np.testing.assert_array_equal(same, _view(scene, _pose()))

    plates = _plates(darker)
    _run(plates, [image])
    assert plates.records[0].exposure is not None and plates.records[0].exposure["residual_after"] < 0.02
    off = _plates(darker, exposure="off")
    np.testing.assert_array_equal(_run(off, [image])[0], darker)


def test_greyscale_image_with_a_colour_plate_is_converted_the_same_way():
    scene = _scene()
    colour = _view(scene, _pose())
    gray = np.repeat(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    assert is_gray(gray) and not is_gray(colour) and not is_gray(np.zeros((8, 8, 3)))
    plates = _plates(colour, exposure="off")
    with pytest.warns(UserWarning, match="plate.png: the frames are greyscale and the plate is colour"):
        plate = plates.for_frame(Frame(0, "gray", gray), gray)
    assert is_gray(plate) and np.abs(plate - gray).max() < 2 / 255
    with pytest.raises(DataError, match="plate.png: the plate is greyscale but the frames are colour"):
        _plates(gray).for_frame(Frame(0, "colour", colour), colour)


def test_a_plate_of_another_scene_is_warned_about():
    image = _view(_scene("astronaut"), _pose())
    other = _view(_scene("chelsea"), _pose())
    with pytest.warns(UserWarning, match="differ grossly"):
        _run(_plates(other, "none"), [image])


# ------------------------------------------------------------------------------------------ folder layouts
def test_original_layout_folder_mattes_only_the_img_files(tmp_path):
    pixels = np.full((8, 8, 3), 0.5, np.float32)
    for name in ("0001_img", "0001_back", "0001_masksDL", "0002_img", "0002_back"):
        write_image(tmp_path / f"{name}.png", pixels)
    frames = open_input(tmp_path)
    assert [f.name for f in frames] == ["0001_img", "0002_img"]
    captured = CapturedBackgrounds(tmp_path)
    assert [captured.for_frame(f)[1].name for f in frames] == ["0001_back.png", "0002_back.png"]
    (tmp_path / "0002_back.png").unlink()
    with pytest.raises(DataError, match="no captured background for frame '0002_img'"):
        CapturedBackgrounds(tmp_path).for_frame(list(frames)[1])  # never the input itself


def test_two_files_of_one_stem_become_two_frames(tmp_path):
    write_image(tmp_path / "in" / "a.png", np.full((8, 8, 3), 0.25, np.float32))
    write_image(tmp_path / "in" / "a.jpg", np.full((8, 8, 3), 0.75, np.float32))
    write_image(tmp_path / "in" / "b.png", np.full((8, 8, 3), 0.5, np.float32))
    frames = list(open_input(tmp_path / "in"))
    assert [f.name for f in frames] == ["a_jpg", "a_png", "b"]
    write_image(tmp_path / "plates" / "a.png", np.zeros((8, 8, 3), np.float32))
    captured = CapturedBackgrounds(tmp_path / "plates")
    assert captured.for_frame(frames[0])[1].name == "a.png"  # matched by the file's stem
    assert isinstance(open_input(tmp_path / "in"), ImageFrames)


# ---------------------------------------------------------------------------------- real-capture preparation
def _handheld_capture(tmp_path, shifts):
    scene = _scene("astronaut")
    plate_pose = _pose(-6.0, 4.0, 0.5)
    write_image(tmp_path / "plate.png", _view(scene, plate_pose, gain=1.1))
    truths = []
    for i, shift in enumerate(shifts):
        image, _ = _with_subject(_view(scene, _pose(*shift)))
        write_image(tmp_path / "frames" / f"{i:03d}.png", image)
        truths.append(_view(scene, _pose(*shift), gain=1.1))  # the plate as seen from this frame's pose
    return truths


class _Subject:
    """A segmenter that knows where the disc is (the test is about the plates, not segmentation)."""

    def __call__(self, image, background):
        return _with_subject(np.zeros_like(image))[1].astype(np.float32)


def test_clip_preparation_handheld_aligns_each_frame_to_a_known_warp(tmp_path):
    shifts = [(0.0, 0.0), (6.0, -3.0), (-5.0, 4.0)]
    truths = _handheld_capture(tmp_path, shifts)
    manifest = prepare_clip(tmp_path / "frames", tmp_path / "plate.png", tmp_path / "out", name="hand",
                            alignment="per_frame", segmenter=_Subject(), progress=False)
    background = ~_with_subject(np.zeros((HEIGHT, WIDTH, 3), np.float32), radius=50)[1]
    background[:20], background[-20:], background[:, :20], background[:, -20:] = False, False, False, False
    unaligned = read_image(tmp_path / "plate.png")
    for i, truth in enumerate(truths):
        aligned = read_image(tmp_path / "out" / "clips" / "hand" / "aligned_background" / f"{i:06d}.png")
        error = np.abs(aligned - truth)[background].mean()
        assert error < 0.4 * np.abs(unaligned - truth)[background].mean() and error < 0.02
    # The default (automatic) comes to the same layout on this clip.
    prepare_clip(tmp_path / "frames", tmp_path / "plate.png", tmp_path / "out", name="auto",
                 segmenter=_Subject(), progress=False)
    clips = {c["name"]: c for c in json.loads(manifest.read_text())["clips"]}
    assert clips["auto"]["handheld"] and clips["hand"]["handheld"]


# ----------------------------------------------------------------------------- every fallback of the aligner
@pytest.mark.parametrize("options, reason", [
    ({}, "too few keypoints"),
    ({"match_fraction": 0.001}, "too few matches"),
    ({"min_inliers": 100000}, "too few RANSAC inliers"),
])
def test_each_alignment_fallback_reason(options, reason):
    scene = _scene()
    plate = _view(scene, _pose(-6.0, 4.0))
    image = _view(scene, _pose())
    if not options:
        plate = np.full_like(plate, 0.5)
    with pytest.warns(AlignmentWarning, match=reason):
        aligned, report = align_background(image, plate, **options)
    assert report.fell_back and reason in report.reason
    np.testing.assert_allclose(aligned, plate, atol=1e-6)  # the unaligned plate (same size here)
