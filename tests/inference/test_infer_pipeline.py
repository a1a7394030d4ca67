"""Matter: the original mode equals the documented crop -> network -> clean-up -> uncrop, the full mode's
resolution handling, batching, and input errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from infer_helpers import disc_alpha, paste_subject, photo, tiny_generator
from torch import nn

from bgmatting.inference import CropBox, Matter, composite_over, crop_to_network, subject_box, uncrop
from bgmatting.inference.postprocess import postprocess_matte
from bgmatting.models import MattingModel, matte_from_raw
from bgmatting.preprocess.segment import postprocess_segmentation
from bgmatting.space import to_network


class ProbeGenerator(nn.Module):
    """Stands in for the network: alpha_raw = the image's red channel, F_raw = the background; records inputs."""

    motion_uses_background_feature = False

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # so .to(device) and memory formats have something to move
        self.calls: list[dict[str, torch.Tensor]] = []

    def forward(self, image, background, segmentation, motion):
        self.calls.append({"image": image, "background": background, "segmentation": segmentation, "motion": motion})
        return image[:, 0:1] + self.anchor, background


def _smooth_frame(height, width):
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 0.6 + 0.3 * np.sin(xs / 11.0) * np.cos(ys / 13.0)  # in [0.3, 0.9]: one component, never opaque
    return np.dstack([red, 0.5 * np.ones_like(red), 0.2 * np.ones_like(red)]).astype(np.float32)


def test_original_mode_crops_the_documented_box_and_uncrops_into_zeros():
    height, width = 100, 200
    image = _smooth_frame(height, width)
    background = np.full((height, width, 3), 0.25, np.float32)
    segmentation = np.zeros((height, width), np.float32)
    segmentation[20:60, 50:80] = 1.0  # the documented box of this subject: CropBox(16, 46, 47, 47)
    probe = ProbeGenerator()
    result = Matter(probe, mode="original", size=32, precision="fp32", device="cpu").matte(
        image, background, segmentation
    )
    assert result.box == CropBox(16, 46, 47, 47)
    call = probe.calls[0]
    assert call["image"].shape == (1, 3, 32, 32) and call["motion"].shape == (1, 4, 32, 32)
    # The network saw the box resized to 32 x 32, in network space, and the post-processed segmentation.
    expected_image = crop_to_network(image, result.box, 32)
    np.testing.assert_allclose(call["image"][0].permute(1, 2, 0).numpy(), expected_image * 2 - 1, atol=1e-6)
    expected_seg = postprocess_segmentation(crop_to_network(segmentation, result.box, 32), scale=32 / 512)
    np.testing.assert_allclose(call["segmentation"][0, 0].numpy(), expected_seg * 2 - 1, atol=1e-6)
    # Default motion cues: 4 x gray(I).
    gray = 0.299 * expected_image[..., 0] + 0.587 * expected_image[..., 1] + 0.114 * expected_image[..., 2]
    np.testing.assert_allclose(call["motion"][0, 2].numpy(), gray * 2 - 1, atol=1e-5)
    # Alpha is the red channel inside the box (through the 32 x 32 round trip) and exactly 0 outside.
    rows, cols = result.box.slices
    inside = np.zeros((height, width), bool)
    inside[rows, cols] = True
    assert np.all(result.alpha[~inside] == 0) and np.all(result.foreground[~inside] == 0)
    assert np.abs(result.alpha[inside] - image[..., 0][inside]).max() < 0.05
    np.testing.assert_allclose(result.foreground[inside], 0.25, atol=1e-6)  # F = B' (no pixel is opaque)


def test_original_mode_equals_the_documented_steps_with_a_real_generator(rng):
    height, width = 72, 96
    plate = photo("coffee", height, width)
    alpha_true = disc_alpha(height, width, (40.0, 30.0), 15.0)
    image = paste_subject(plate, alpha_true)
    segmentation = (alpha_true > 0.5).astype(np.float32)
    generator = tiny_generator()
    result = Matter(generator, mode="original", size=64, precision="fp32", device="cpu").matte(
        image, plate, segmentation
    )
    # The steps written out by hand.
    box = subject_box(segmentation, 0.2)
    crops = [crop_to_network(a, box, 64) for a in (image, plate)]
    seg = postprocess_segmentation(crop_to_network(segmentation, box, 64), scale=64 / 512)  # size / 512
    gray = 0.299 * crops[0][..., 0] + 0.587 * crops[0][..., 1] + 0.114 * crops[0][..., 2]

    def net(x):
        return to_network(torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float())

    with torch.no_grad():
        image_net = net(crops[0])
        raw = generator(image_net, net(crops[1]), net(seg[..., None]), net(np.repeat(gray[..., None], 4, 2)))
        alpha, fg = matte_from_raw(*raw, image_net)
    alpha, fg = postprocess_matte(alpha[0, 0].numpy(), fg[0].permute(1, 2, 0).numpy())
    expected_alpha = uncrop(alpha, box, (height, width))
    expected_fg = uncrop(fg, box, (height, width))
    expected_fg[expected_alpha <= 0.01] = 0
    np.testing.assert_allclose(result.alpha, expected_alpha, atol=1e-5)
    np.testing.assert_allclose(result.foreground, expected_fg, atol=1e-5)
    assert result.alpha.shape == (height, width) and result.foreground.shape == (height, width, 3)


def test_full_mode_runs_at_a_multiple_of_four_and_uses_the_full_resolution_image_where_opaque():
    height, width = 50, 75
    image = _smooth_frame(height, width)
    image[10:30, 10:40, 0] = 1.0  # opaque region (alpha_raw = red = 1)
    background = np.full((height, width, 3), 0.25, np.float32)
    segmentation = np.ones((height, width), np.float32)
    probe = ProbeGenerator()
    result = Matter(probe, mode="full", size=40, precision="fp32", device="cpu").matte(image, background, segmentation)
    assert probe.calls[0]["image"].shape == (1, 3, 28, 40)
    assert result.box == CropBox(0, 0, height, width)
    assert result.alpha.shape == (height, width)
    opaque = result.alpha > 0.975
    assert opaque[14:26, 14:36].all()
    np.testing.assert_array_equal(result.foreground[opaque], image[opaque])  # F = I at full resolution
    np.testing.assert_allclose(result.foreground[36:, 48:], 0.25, atol=1e-5)  # far from it: F = B' (upsampled)
    native = ProbeGenerator()
    Matter(native, mode="full", size=0, precision="fp32", device="cpu").matte(image, background, segmentation)
    assert native.calls[0]["image"].shape == (1, 3, 52, 76)


def test_batches_equal_single_frames_and_frames_may_differ_in_size():
    generator = tiny_generator()
    matter = Matter(generator, mode="original", size=32, precision="fp32", device="cpu")
    frames = []
    for k, (h, w) in enumerate([(40, 56), (48, 64), (40, 56)]):
        plate = photo("chelsea", h, w)
        alpha = disc_alpha(h, w, (20.0, 18.0 + 8 * k), 9.0)
        frames.append((paste_subject(plate, alpha), plate, (alpha > 0.5).astype(np.float32)))
    batch = matter.matte_batch(*zip(*frames))
    for (image, plate, seg), result in zip(frames, batch):
        single = matter.matte(image, plate, seg)
        np.testing.assert_allclose(result.alpha, single.alpha, atol=1e-5)
        np.testing.assert_allclose(result.foreground, single.foreground, atol=1e-5)
    full = Matter(generator, mode="full", size=32, precision="fp32", device="cpu")
    assert [r.alpha.shape for r in full.matte_batch(*zip(*frames))] == [(40, 56), (48, 64), (40, 56)]


def test_channels_last_precision_matches_fp32():
    image = paste_subject(photo("rocket", 48, 64), disc_alpha(48, 64, (24.0, 30.0), 12.0))
    plate = photo("rocket", 48, 64)
    seg = (disc_alpha(48, 64, (24.0, 30.0), 12.0) > 0.5).astype(np.float32)
    generator = tiny_generator()
    reference = Matter(generator, mode="full", size=0, precision="fp32", device="cpu").matte(image, plate, seg)
    channels_last = Matter(generator, mode="full", size=0, precision="fp32_cl", device="cpu").matte(image, plate, seg)
    np.testing.assert_allclose(channels_last.alpha, reference.alpha, atol=1e-5)


def test_a_matting_model_is_used_as_given_and_a_generator_is_wrapped():
    image = paste_subject(photo("rocket", 48, 64), disc_alpha(48, 64, (24.0, 30.0), 12.0))
    plate = photo("rocket", 48, 64)
    seg = (disc_alpha(48, 64, (24.0, 30.0), 12.0) > 0.5).astype(np.float32)
    generator = tiny_generator()
    model = MattingModel(generator)
    given = Matter(model, mode="original", size=32, precision="fp32", device="cpu")
    wrapped = Matter(generator, mode="original", size=32, precision="fp32", device="cpu")
    assert given.model is model and isinstance(wrapped.model, MattingModel) and wrapped.model.generator is generator
    np.testing.assert_array_equal(given.matte(image, plate, seg).alpha, wrapped.matte(image, plate, seg).alpha)


def test_segmenter_is_used_when_no_segmentation_is_given():
    calls = []

    def segmenter(image, background):
        calls.append(image.shape)
        return (np.abs(image - background).sum(axis=2) > 0.1).astype(np.float32)

    plate = photo("coffee", 40, 48)
    image = paste_subject(plate, disc_alpha(40, 48, (20.0, 20.0), 8.0))
    result = Matter(ProbeGenerator(), size=16, segmenter=segmenter, device="cpu").matte(image, plate)
    assert calls == [(40, 48, 3)]
    assert result.segmentation.shape == (40, 48) and result.segmentation.max() == 1.0


def test_empty_segmentation_falls_back_to_the_whole_frame():
    image = _smooth_frame(24, 32)
    with pytest.warns(UserWarning, match="no subject"):
        result = Matter(ProbeGenerator(), size=16, device="cpu").matte(image, image, np.zeros((24, 32), np.float32))
    assert result.box == CropBox(0, 0, 24, 32)


def test_input_errors_are_clear():
    probe = ProbeGenerator()
    matter = Matter(probe, size=16, device="cpu")
    image = _smooth_frame(24, 32)
    with pytest.raises(ValueError, match="background is 16x24 but the image is 32x24"):
        matter.matte(image, image[:, :16], np.ones((24, 32), np.float32))
    with pytest.raises(ValueError, match="no segmenter"):
        matter.matte(image, image)
    with pytest.raises(ValueError, match="motion cues"):
        matter.matte(image, image, np.ones((24, 32), np.float32), np.zeros((4, 10, 10), np.float32))
    with pytest.raises(ValueError, match="unknown mode"):
        Matter(probe, mode="crop")
    with pytest.raises(ValueError, match="multiple of 4"):
        Matter(probe, mode="original", size=30)


def test_composite_over_colour_and_resized_image():
    alpha = np.array([[0.0, 0.5, 1.0]], np.float32)
    fg = np.array([[[1.0, 0.0, 0.0]] * 3], np.float32)
    out = composite_over(alpha, fg, (0.0, 1.0, 0.0))
    np.testing.assert_allclose(out[0], [[0, 1, 0], [0.5, 0.5, 0], [1, 0, 0]])
    target = np.full((10, 30, 3), 0.2, np.float32)
    np.testing.assert_allclose(composite_over(alpha, fg, target)[0, 0], [0.2, 0.2, 0.2], atol=1e-6)
