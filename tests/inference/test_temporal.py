"""Temporal smoothing of a clip's alpha: MODNet's one-frame delay, the static-region moving average, and that
each lowers dtSSD on a static synthetic clip run through the whole pipeline."""
from __future__ import annotations

import numpy as np
import pytest
from infer_helpers import disc_alpha, paste_subject, photo

import bgmatting
from bgmatting.io import write_alpha
from bgmatting.inference.crop import CropBox
from bgmatting.inference.pipeline import Matte
from bgmatting.inference.temporal import (
    DEFAULT_TEMPORAL,
    TEMPORAL_FILTERS,
    TemporalFilter,
    TemporalOptions,
    static_mask,
)
from bgmatting.metrics import dtssd

H, W = 12, 16


def _result(alpha: np.ndarray, colour: float = 0.5) -> Matte:
    foreground = np.where(alpha[:, :, None] > 0.01, colour, 0.0).astype(np.float32)
    return Matte(alpha.astype(np.float32), foreground, CropBox.full_frame(H, W), np.zeros((H, W), np.float32))


def _stream(kind: str, images, alphas, colours=None, **options):
    smoothing = TemporalFilter(TemporalOptions(kind, **options))
    colours = colours or [0.5] * len(alphas)
    out, emitted_after = [], []
    for i, (image, alpha, colour) in enumerate(zip(images, alphas, colours)):
        ready = smoothing.push(i, image, _result(alpha, colour))
        emitted_after.append([tag for tag, _ in ready])
        out += ready
    out += smoothing.flush()
    assert [tag for tag, _ in out] == list(range(len(alphas)))  # in order, every frame once
    return [r for _, r in out], emitted_after


def test_one_frame_delay_replaces_a_one_frame_flicker():
    images = [np.full((H, W, 3), 0.5, np.float32)] * 4
    alphas = [np.full((H, W), 0.8, np.float32) for _ in range(4)]
    alphas[1][2:5, 3:6] = 0.1  # frame 1 disagrees with both neighbours, which agree with each other
    alphas[3][:, :] = 0.2  # the last frame has no successor: kept
    results, emitted = _stream("ofd", images, alphas, colours=[0.5, 0.9, 0.5, 0.5])
    assert emitted == [[], [0], [1], [2]]  # one frame of latency
    np.testing.assert_allclose(results[1].alpha[2:5, 3:6], 0.8)
    np.testing.assert_allclose(results[1].foreground[2:5, 3:6], 0.5, atol=1e-6)  # F follows the neighbours
    np.testing.assert_allclose(results[1].foreground[0, 0], 0.9, atol=1e-6)  # untouched elsewhere
    np.testing.assert_array_equal(results[0].alpha, alphas[0])
    np.testing.assert_array_equal(results[3].alpha, alphas[3])
    # A real change (frames 2 and 3 agree on it) is not flicker at frame 2.
    np.testing.assert_array_equal(results[2].alpha, alphas[2])


def test_static_regions_take_a_moving_average_and_moving_ones_do_not():
    still = np.full((H, W, 3), 0.5, np.float32)
    moved = still.copy()
    moved[:, W // 2:] = 0.9  # the right half of the picture changes
    alphas = [np.full((H, W), 0.2, np.float32), np.full((H, W), 0.6, np.float32)]
    results, emitted = _stream("static", [still, moved], alphas)
    assert emitted == [[0], [1]]  # no latency
    w = TemporalOptions().static_weight
    np.testing.assert_allclose(results[1].alpha[:, :2], w * 0.2 + (1 - w) * 0.6, atol=1e-6)
    np.testing.assert_allclose(results[1].alpha[:, -2:], 0.6)


def test_static_average_carries_the_smoothed_past_with_its_weight():
    """Three still frames, weight 0.25 of the past: a'[1] = 0.25 * 0.2 + 0.75 * 0.6 = 0.5 and a'[2] = 0.25 * 0.5 +
    0.75 * 1.0 = 0.875 (from the raw past 0.6 it would be 0.9; with the weights swapped a'[1] would be 0.3).
    The premultiplied aF follows the same recurrence: aF = 0.2, 0.3, 0.5 -> 0.2, 0.275, 0.44375."""
    still = [np.full((H, W, 3), 0.5, np.float32)] * 3
    alphas = [np.full((H, W), a, np.float32) for a in (0.2, 0.6, 1.0)]
    results, _ = _stream("static", still, alphas, colours=[1.0, 0.5, 0.5], static_weight=0.25)
    np.testing.assert_allclose([r.alpha[0, 0] for r in results], [0.2, 0.5, 0.875], atol=1e-6)
    np.testing.assert_allclose([r.alpha[0, 0] * r.foreground[0, 0, 0] for r in results], [0.2, 0.275, 0.44375],
                               atol=1e-6)


def test_ofd_before_the_average_compares_with_the_raw_previous_frame():
    """ofd+static on still frames with alphas 0, 0.6, 0.6, 0.3 (weight 0.5): frame 1 is smoothed to 0.3. Frame 2
    is no flicker, since the raw frame 1 (0.6) and frame 3 (0.3) disagree; against the smoothed frame 1 (0.3)
    it would be, and be replaced by 0.3. Averages: 0, 0.3, 0.5 * 0.3 + 0.5 * 0.6 = 0.45, 0.5 * 0.45 + 0.5 * 0.3."""
    still = [np.full((H, W, 3), 0.5, np.float32)] * 4
    alphas = [np.full((H, W), a, np.float32) for a in (0.0, 0.6, 0.6, 0.3)]
    results, _ = _stream("ofd+static", still, alphas)
    np.testing.assert_allclose([r.alpha[0, 0] for r in results], [0.0, 0.3, 0.45, 0.375], atol=1e-6)


def test_ofd_threshold_boundaries():
    """threshold 0.25, differences of exactly 0.25 (exact in binary): neighbours that differ by the threshold
    agree (pixel 0: frame 1 takes their mean); a frame that differs from one neighbour by exactly the threshold
    is not flicker (pixel 1: from the previous frame, pixel 2: from the next one)."""
    images = [np.full((H, W, 3), 0.5, np.float32)] * 3
    alphas = [np.zeros((H, W), np.float32) for _ in range(3)]
    for i, (before, now, after) in enumerate([(0.5, 0.0, 0.75), (0.625, 0.875, 0.5), (0.5, 0.875, 0.625)]):
        alphas[0][0, i], alphas[1][0, i], alphas[2][0, i] = before, now, after
    results, _ = _stream("ofd", images, alphas, threshold=0.25)
    np.testing.assert_array_equal(results[1].alpha[0, :3], np.float32([0.625, 0.875, 0.875]))


def test_none_passes_results_through_and_bad_options_are_refused():
    images = [np.zeros((H, W, 3), np.float32)] * 2
    alphas = [np.full((H, W), 0.3, np.float32), np.full((H, W), 0.7, np.float32)]
    results, _ = _stream("none", images, alphas)
    np.testing.assert_array_equal(results[1].alpha, alphas[1])
    assert DEFAULT_TEMPORAL in TEMPORAL_FILTERS
    with pytest.raises(ValueError, match="unknown temporal filter"):
        TemporalOptions("blur")
    with pytest.raises(ValueError, match="static_weight"):
        TemporalOptions("static", static_weight=1.0)


def _static_clip(count: int = 8, noise: float = 0.03):
    """A static scene and subject; only the sensor noise changes from frame to frame."""
    rng = np.random.default_rng(3)
    plate = photo("coffee", 48, 64)
    alpha = disc_alpha(48, 64, (24.0, 30.0), 12.0)
    clean = paste_subject(plate, alpha)
    frames = [np.clip(clean + rng.normal(0, noise, clean.shape), 0, 1).astype(np.float32) for _ in range(count)]
    return frames, plate, alpha


def test_each_filter_lowers_dtssd_on_a_static_clip(tmp_path, tiny_checkpoint):
    frames, plate, alpha = _static_clip()
    for i in range(len(frames)):  # one segmentation: the flicker is the network's, not the crop box's
        write_alpha(tmp_path / "segmentation" / f"{i:03d}.png", (alpha > 0.5).astype(np.float32))
    truth = np.stack([alpha] * len(frames))
    scores = {}
    for kind in TEMPORAL_FILTERS:
        mattes = bgmatting.matte_frames(frames, plate, checkpoint=tiny_checkpoint, sequence=True, temporal=kind,
                                        size=32, alignment="none", segmentation=tmp_path / "segmentation", progress=False)
        assert len(mattes) == len(frames)
        scores[kind] = dtssd(np.stack([m.alpha for m in mattes]), truth)
    assert scores["none"] > 0
    for kind in ("ofd", "static", "ofd+static"):
        assert scores[kind] < scores["none"], scores


def _reference(kind: str, images, alphas, foregrounds, options: TemporalOptions):
    """The filters over whole frames, straight from the module docstring (the filter works inside boxes)."""
    alphas = [a.copy() for a in alphas]
    premultiplied = [f * a[:, :, None] for f, a in zip(foregrounds, alphas)]
    raw_alphas, raw_premultiplied = [a.copy() for a in alphas], [p.copy() for p in premultiplied]
    out = []
    for t in range(len(alphas)):
        if "ofd" in kind and 0 < t < len(alphas) - 1:
            a0, a1, a2 = raw_alphas[t - 1], alphas[t], alphas[t + 1]
            t_ = options.threshold
            flicker = (np.abs(a0 - a2) <= t_) & (np.abs(a1 - a0) > t_) & (np.abs(a1 - a2) > t_)
            alphas[t] = np.where(flicker, 0.5 * (a0 + a2), a1)
            premultiplied[t] = np.where(flicker[:, :, None], 0.5 * (raw_premultiplied[t - 1] + premultiplied[t + 1]),
                                        premultiplied[t])
        raw_alphas[t], raw_premultiplied[t] = alphas[t].copy(), premultiplied[t].copy()
        if "static" in kind and t > 0:
            static = static_mask(images[t - 1], images[t], options.static_level, options.static_blur)
            w = options.static_weight
            alphas[t] = np.where(static, w * alphas[t - 1] + (1 - w) * alphas[t], alphas[t])
            premultiplied[t] = np.where(static[:, :, None], w * premultiplied[t - 1] + (1 - w) * premultiplied[t],
                                        premultiplied[t])
        alpha = np.clip(alphas[t], 0, 1)
        foreground = np.zeros_like(premultiplied[t])
        np.divide(premultiplied[t], alpha[:, :, None], out=foreground, where=alpha[:, :, None] > 0.01)
        out.append((alpha, np.clip(foreground, 0, 1)))
    return out


@pytest.mark.parametrize("kind", ["ofd", "static", "ofd+static"])
def test_filters_working_in_boxes_equal_whole_frame_filtering(kind):
    rng = np.random.default_rng(7)
    height, width, count = 40, 56, 6
    scene = rng.random((height, width, 3)).astype(np.float32)
    images, alphas, foregrounds = [], [], []
    for t in range(count):
        image = scene.copy()
        image[:, 30 + t:34 + t] = rng.random((height, 4, 3))  # a moving stripe: not static there
        alpha = np.zeros((height, width), np.float32)
        alpha[8 + t:30, 10 + 2 * t:26 + t] = 0.8 + 0.02 * rng.random((22 - t, 16 - t))
        if t == 3:
            alpha[12:16, 16:20] = 0.02  # a one-frame flicker: frames 2 and 4 agree there
        images.append(image)
        alphas.append(alpha)
        foregrounds.append(np.where(alpha[:, :, None] > 0.01, rng.random((height, width, 3)), 0).astype(np.float32))
    options = TemporalOptions(kind)
    smoothing = TemporalFilter(options)
    out = []
    for t in range(count):
        result = Matte(alphas[t], foregrounds[t], CropBox.full_frame(height, width), alphas[t])
        out += [r for _, r in smoothing.push(t, images[t], result)]
    out += [r for _, r in smoothing.flush()]
    for got, (alpha, foreground) in zip(out, _reference(kind, images, alphas, foregrounds, options)):
        np.testing.assert_allclose(got.alpha, alpha, rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.foreground, foreground, rtol=0, atol=1e-5)
    assert not np.array_equal(out[3].alpha, alphas[3])  # the filter did change frames
