"""Segmenters: the public code's post-process, the background-difference backend, DeepLabV3 from local weights."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torchvision
from skimage import data

from bgmatting.preprocess import segment as segment_module
from bgmatting.preprocess.segment import (
    BackgroundDifferenceSegmenter,
    DeepLabSegmenter,
    SegmenterWeightsError,
    background_difference_matte,
    fill_holes,
    get_segmenter,
    keep_largest_components,
    postprocess_segmentation,
    segmentation_crop_scale,
)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def pasted_subject_scene(width=240, height=180, shadow=False, seed=0):
    """A person-like shape cut from astronaut() pasted on coffee(), optional soft cast shadow, sensor noise.

    Returns (image float32, background float32, subject bool)."""
    rng = np.random.default_rng(seed)
    background = cv2.resize(data.coffee(), (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    foreground = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    yy, xx = np.mgrid[:height, :width]
    head = ((xx - 0.5 * width) / (0.07 * width)) ** 2 + ((yy - 0.3 * height) / (0.1 * height)) ** 2 < 1
    body = ((xx - 0.5 * width) / (0.15 * width)) ** 2 + ((yy - 0.75 * height) / (0.35 * height)) ** 2 < 1
    subject = head | body
    image = background.copy()
    if shadow:
        cast = ((xx - 0.72 * width) / (0.12 * width)) ** 2 + ((yy - 0.9 * height) / (0.12 * height)) ** 2 < 1
        darkening = cv2.GaussianBlur(cast.astype(np.float32), (0, 0), 0.01 * width)
        image = image * (1 - 0.45 * darkening[:, :, None])
    image[subject] = foreground[subject]
    image = np.clip(image + rng.normal(0, 2 / 255, image.shape), 0, 1).astype(np.float32)
    background = np.clip(background + rng.normal(0, 2 / 255, background.shape), 0, 1).astype(np.float32)
    return image, background, subject


@pytest.fixture
def one_torch_thread():
    """DeepLab on 2 shared cores: one intra-op thread avoids OpenMP spin contention (~10x faster here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------- post-process


def test_postprocess_removes_specks_keeps_the_body_and_softens_the_edge():
    mask = np.zeros((160, 160), np.float32)
    mask[40:120, 40:120] = 1.0  # body
    mask[10:16, 140:146] = 1.0  # 6 px speck: gone after 10 erosions
    s = postprocess_segmentation(mask)
    assert s.dtype == np.float32 and s.shape == mask.shape and 0 <= s.min() and s.max() <= 1
    assert s[80, 80] == pytest.approx(1.0, abs=1e-6)
    assert s[13, 143] < 0.01
    assert s[5, 5] == 0.0
    edge = s[80, 30:50]
    assert np.all(np.diff(edge) >= -1e-6) and 0.2 < edge[10] < 0.8  # soft, monotone ramp across the edge


def test_postprocess_at_scale_one_is_the_public_codes_sequence(rng):
    mask = (cv2.GaussianBlur(rng.random((96, 128)).astype(np.float32), (0, 0), 6) > 0.5).astype(np.float32)
    expected = mask.copy()
    expected = cv2.erode(expected, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)), iterations=10)
    expected = cv2.dilate(expected, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)), iterations=5)
    expected = cv2.GaussianBlur(expected, (31, 31), 0)
    np.testing.assert_allclose(postprocess_segmentation(mask), np.clip(expected, 0, 1), atol=1e-7)


def test_postprocess_scale_shrinks_the_operations_for_small_crops():
    mask = np.zeros((64, 64), np.float32)
    mask[20:44, 20:44] = 1.0
    mask[4:10, 50:56] = 1.0
    full = postprocess_segmentation(mask)  # 10 erosions: the 6 px speck vanishes
    small = postprocess_segmentation(mask, scale=0.125)  # 1 erosion, blur 5: it survives
    assert full[7, 53] < 0.05 and small[7, 53] > 0.5


def test_postprocess_binarizes_above_0_2_and_does_not_erode_from_the_image_border():
    mask = np.zeros((100, 100), np.float32)
    mask[50:, 30:70] = 0.3  # a subject cut by the bottom of the frame, weak probability
    s = postprocess_segmentation(mask)
    assert s[99, 50] == pytest.approx(1.0, abs=1e-6)
    uint8 = postprocess_segmentation((mask > 0).astype(np.uint8) * 255)
    np.testing.assert_allclose(uint8, s, atol=1e-6)
    boolean = postprocess_segmentation(mask > 0)
    np.testing.assert_allclose(boolean, s, atol=1e-6)


def test_segmentation_crop_scale_follows_the_public_crop_rule():
    mask = np.zeros((1000, 1500), bool)
    mask[100:300, 500:700] = True  # 200 px box -> 240 px crop
    assert segmentation_crop_scale(mask) == pytest.approx(240 / 512)
    assert segmentation_crop_scale(np.zeros((100, 80))) == pytest.approx(100 / 512)


def test_component_and_hole_helpers():
    mask = np.zeros((50, 50), bool)
    mask[5:30, 5:30] = True
    mask[40:45, 40:45] = True
    mask[15:18, 15:18] = False  # small hole
    kept = keep_largest_components(mask)
    assert kept[10, 10] and not kept[42, 42]
    assert keep_largest_components(mask, max_components=2)[42, 42]
    assert fill_holes(kept)[16, 16]
    assert not fill_holes(kept, max_hole_ratio=0.01)[16, 16]  # 9 px hole > 1 % of 616 px
    assert not keep_largest_components(np.zeros((5, 5), bool)).any()


# ---------------------------------------------------------------------------------------------- background difference


def test_registry_builds_backends_and_names_the_choices():
    assert isinstance(get_segmenter("background_difference"), BackgroundDifferenceSegmenter)
    with pytest.raises(ValueError, match="background_difference.*deeplabv3"):
        get_segmenter("sam")


def test_background_difference_finds_a_pasted_subject():
    image, background, subject = pasted_subject_scene()
    s = get_segmenter("background_difference").segment(image, background)
    assert s.dtype == np.float32 and s.shape == subject.shape and 0 <= s.min() and s.max() <= 1
    assert iou(s > 0.5, subject) > 0.9
    raw = get_segmenter("background_difference", postprocess=False).segment(image, background)
    assert set(np.unique(raw)) <= {0.0, 1.0} and iou(raw > 0.5, subject) > 0.9
    uint8 = get_segmenter("background_difference").segment((image * 255).round().astype(np.uint8),
                                                           (background * 255).round().astype(np.uint8))
    assert iou(uint8 > 0.5, subject) > 0.9


def test_background_difference_work_resolution_matches_full_resolution():
    image, background, subject = pasted_subject_scene(width=480, height=360)
    reduced = BackgroundDifferenceSegmenter(work_side=240).segment(image, background)
    full = BackgroundDifferenceSegmenter(work_side=None).segment(image, background)
    assert reduced.shape == full.shape == subject.shape
    assert iou(reduced > 0.5, full > 0.5) > 0.95 and iou(reduced > 0.5, subject) > 0.9


def test_shadow_suppression_keeps_a_cast_shadow_out_of_the_subject():
    image, background, subject = pasted_subject_scene(shadow=True)
    with_suppression = BackgroundDifferenceSegmenter().segment(image, background)
    without = BackgroundDifferenceSegmenter(shadow_suppression=False).segment(image, background)
    assert iou(with_suppression > 0.5, subject) > 0.9
    assert iou(with_suppression > 0.5, subject) > iou(without > 0.5, subject) + 0.05


def test_otsu_and_fixed_thresholds():
    image, background, subject = pasted_subject_scene()
    d = BackgroundDifferenceSegmenter().difference(image, background)
    otsu = BackgroundDifferenceSegmenter(threshold="otsu")
    noise_floor = BackgroundDifferenceSegmenter()
    assert 0.06 <= otsu.pick_threshold(d) <= 0.2
    assert noise_floor.pick_threshold(d) < otsu.pick_threshold(d)  # Otsu splits subject colours too
    otsu_iou = iou(otsu.segment(image, background) > 0.5, subject)
    assert 0.5 < otsu_iou < iou(noise_floor.segment(image, background) > 0.5, subject)
    assert BackgroundDifferenceSegmenter(threshold=0.1).pick_threshold(d) == 0.1
    with pytest.raises(ValueError, match="threshold"):
        BackgroundDifferenceSegmenter(threshold="kmeans")


def test_no_subject_gives_an_empty_segmentation():
    _, background, _ = pasted_subject_scene()
    noisy = np.clip(background + np.random.default_rng(1).normal(0, 2 / 255, background.shape), 0, 1)
    assert get_segmenter("background_difference").segment(noisy.astype(np.float32), background).max() == 0.0


def test_background_difference_needs_a_matching_background():
    image, background, _ = pasted_subject_scene()
    segmenter = get_segmenter("background_difference")
    with pytest.raises(ValueError, match="needs the"):
        segmenter.segment(image)
    with pytest.raises(ValueError, match="align the background"):
        segmenter.segment(image, background[:-4])
    with pytest.raises(ValueError, match="H x W x 3"):
        segmenter.segment(image[:, :, 0], background)


def test_background_difference_matte_is_a_usable_soft_baseline():
    image, background, subject = pasted_subject_scene()
    alpha = background_difference_matte(image, background)
    assert alpha.dtype == np.float32 and alpha.shape == subject.shape and 0 <= alpha.min() and alpha.max() <= 1
    assert np.abs(alpha - subject).mean() < 0.03
    assert alpha[:10, :10].max() == 0.0  # nothing far from the subject
    assert 0 < ((alpha > 0.01) & (alpha < 0.99)).sum() < 0.1 * subject.sum()  # soft only near edges


# ---------------------------------------------------------------------------------------------- DeepLabV3


@pytest.fixture(scope="module")
def random_deeplab_file(tmp_path_factory):
    """A DeepLabV3-ResNet101 state dict with random weights (the torchvision release layout, aux head)."""
    torch.manual_seed(0)
    model = torchvision.models.segmentation.deeplabv3_resnet101(weights=None, weights_backbone=None, aux_loss=True)
    path = tmp_path_factory.mktemp("deeplab") / "deeplabv3_random.pth"
    torch.save(model.state_dict(), path)
    return path, model.eval()


def test_deeplab_loads_local_weights_and_returns_the_person_probability(random_deeplab_file, one_torch_thread):
    path, reference = random_deeplab_file
    segmenter = get_segmenter("deeplabv3", weights_path=path, input_side=32, device="cpu", postprocess=False)
    image = np.random.default_rng(0).random((40, 30, 3)).astype(np.float32)
    prob = segmenter.segment(image)
    assert prob.dtype == np.float32 and prob.shape == (40, 30) and 0 <= prob.min() and prob.max() <= 1
    # the same computation by hand with the model the file came from
    x = torch.from_numpy(image.transpose(2, 0, 1))[None]
    x = torch.nn.functional.interpolate(x, size=(32, 24), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.softmax(reference((x - mean) / std)["out"], dim=1)[:, 15:16]
    expected = torch.nn.functional.interpolate(expected, size=(40, 30), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(prob, expected[0, 0].numpy(), atol=1e-4)
    segmenter.postprocess = True
    soft = segmenter.segment(image)
    assert soft.shape == (40, 30) and 0 <= soft.min() and soft.max() <= 1


def test_deeplab_accepts_wrapped_and_prefixed_state_dicts(tmp_path, one_torch_thread):
    model = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None)
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    segmenter = DeepLabSegmenter(weights_path=path, arch="mobilenet_v3_large", input_side=32, device="cpu")
    assert segmenter.segment(np.zeros((20, 20, 3), np.uint8)).shape == (20, 20)


def test_deeplab_without_weights_offline_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("must not touch the network without download=True")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    expected_path = tmp_path / "checkpoints" / "deeplabv3_resnet101_coco-586e9e4e.pth"
    assert segment_module.deeplab_cache_path() == expected_path
    with pytest.raises(SegmenterWeightsError) as error:
        get_segmenter("deeplabv3")
    message = str(error.value)
    assert str(expected_path) in message and "weights_path" in message and "download.pytorch.org" in message


def test_deeplab_download_failure_is_reported_not_raised_raw(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(SegmenterWeightsError, match="downloading it failed.*name resolution"):
        DeepLabSegmenter(download=True)


def test_deeplab_bad_weight_files_name_the_file(tmp_path):
    with pytest.raises(SegmenterWeightsError, match="missing.pth: DeepLabV3 weights file does not exist"):
        DeepLabSegmenter(weights_path=tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(SegmenterWeightsError, match=r"corrupt\.pth: cannot be read as a weights-only PyTorch checkpoint"):
        DeepLabSegmenter(weights_path=corrupt)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, wrong)
    with pytest.raises(SegmenterWeightsError, match="wrong.pth: not a DeepLabV3-mobilenet_v3_large state dict"):
        DeepLabSegmenter(weights_path=wrong, arch="mobilenet_v3_large")


def test_get_segmenter_gives_the_device_only_to_backends_that_run_a_network(monkeypatch):
    # background difference has no network: the device is ignored instead of failing as an unknown option
    assert isinstance(get_segmenter("background_difference", device="cuda:7"), BackgroundDifferenceSegmenter)
    seen = {}

    class Probe(segment_module.Segmenter):
        runs_on_device = True

        def __init__(self, device: str = "auto") -> None:
            seen["device"] = device

        def segment(self, image, background=None):
            return np.zeros(image.shape[:2], np.float32)

    monkeypatch.setitem(segment_module.SEGMENTERS, "probe", Probe)
    get_segmenter("probe", device=torch.device("cpu"))
    assert seen["device"] == "cpu"
    assert DeepLabSegmenter.runs_on_device


class _Payload:
    """Unpickling it runs code (prints a marker): what a tampered weights file would do."""

    def __reduce__(self):
        return (print, ("PAYLOAD RAN",))


def test_downloaded_weights_are_never_unpickled_with_code(tmp_path, monkeypatch, capsys):
    """The download goes through torch.hub; a file holding pickled code is refused, its code never runs."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(segment_module, "deeplab_weights_url", lambda arch="resnet101": "https://example.invalid/w.pth")

    def tampered_download(url, dst, hash_prefix=None, progress=True):
        torch.save({"classifier.4.weight": _Payload()}, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", tampered_download)
    with pytest.raises(SegmenterWeightsError, match=r"w\.pth.*holds pickled code or objects \(print\)"):
        DeepLabSegmenter(download=True)
    assert "PAYLOAD RAN" not in capsys.readouterr().out
