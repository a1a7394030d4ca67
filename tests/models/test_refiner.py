"""The patch refiner: selection, crop and paste, the two stages, and the refining MattingModel."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bgmatting.models import Generator, GeneratorOutputs, MattingModel, Refiner
from bgmatting.models.blocks import resize_bilinear
from bgmatting.models.refiner import (
    clamp_passing_gradient,
    crop_windows,
    error_on_patch_grid,
    paste_patches,
    paste_patches_,
    sample_windows,
    select_patches,
)

HIDDEN = 3


def _randomise_last_conv(refiner: Refiner, seed: int = 0) -> Refiner:
    """The last conv starts at zero (identity refiner); give it weights so that refinement changes values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        refiner.fine_stage[-1].weight.normal_(0.0, 0.1, generator=g)
        refiner.fine_stage[-1].bias.normal_(0.0, 0.1, generator=g)
    return refiner


def _base(batch: int, height: int, width: int, seed: int = 0) -> GeneratorOutputs:
    g = torch.Generator().manual_seed(seed)
    rand = lambda c: torch.rand(batch, c, height, width, generator=g)  # noqa: E731
    return GeneratorOutputs(rand(1) * 2 - 1, rand(3) * 2 - 1, rand(1), rand(HIDDEN))


def _frames(batch: int, height: int, width: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(batch, 3, height, width, generator=g) * 2 - 1 for _ in range(2))


def _refining_model(tiny_config, **options) -> MattingModel:
    generator = Generator(**tiny_config, refine_head=True, refine_hidden=HIDDEN)
    return MattingModel(generator, _randomise_last_conv(Refiner(HIDDEN, channels=(6, 5, 4))), **options)


def _image_inputs(batch: int, height: int, width: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, c, height, width, generator=g) for c in (3, 3, 1, 4)]


def _upsampled_base(base: GeneratorOutputs, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    return resize_bilinear(base.alpha_raw, size), resize_bilinear(base.foreground_raw, size)


# ----------------------------------------------------------------------------------------------- selection


def test_error_on_patch_grid_keeps_peaks_and_resizes():
    error = torch.zeros(1, 1, 16, 24)
    error[0, 0, 5, 17] = 0.9  # one pixel: 4x downsampling by bilinear sampling alone would miss it
    grid = error_on_patch_grid(error, (4, 6))
    assert grid.shape == (1, 1, 4, 6) and grid[0, 0, 1, 4] == pytest.approx(0.9) and grid.sum() == pytest.approx(0.9)
    coarse = torch.rand(2, 1, 3, 5)
    assert error_on_patch_grid(coarse, (6, 10)).shape == (2, 1, 6, 10)
    assert torch.equal(error_on_patch_grid(coarse, (3, 5)), coarse)
    assert error_on_patch_grid(torch.rand(1, 1, 10, 7), (4, 5)).shape == (1, 1, 4, 5)  # non-integer factor


def test_select_patches_modes():
    error = torch.rand(3, 1, 5, 7, generator=torch.Generator().manual_seed(0))
    assert select_patches(error, "full", 0, 0.0).all()
    sampled = select_patches(error, "sampling", 16 * 6, 0.0)
    assert sampled.shape == (3, 5, 7) and sampled.sum((1, 2)).tolist() == [6, 6, 6]
    for b in range(3):  # the six highest errors of each image
        assert error[b, 0][sampled[b]].min() >= error[b, 0][~sampled[b]].max()
    assert select_patches(error, "sampling", 10**6, 0.0).all()
    assert not select_patches(error, "sampling", 15, 0.0).any()
    assert torch.equal(select_patches(error, "thresholding", 0, 0.6), error[:, 0] > 0.6)
    with pytest.raises(ValueError, match="refine mode"):
        select_patches(error, "everywhere", 0, 0.0)


# ----------------------------------------------------------------------------------------------- crop, paste


def test_crop_and_paste_round_trip():
    x = torch.randn(2, 5, 12, 16)
    mask = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(3)) > 0.5
    index = mask.nonzero(as_tuple=True)
    patches = crop_windows(x, index, 4, 0)
    assert patches.shape == (int(mask.sum()), 5, 4, 4)
    assert torch.equal(paste_patches(x, patches, index), x)
    b, r, c = (t[0].item() for t in index)
    torch.testing.assert_close(patches[0], x[b, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4], rtol=0, atol=0)

    changed = paste_patches(x, torch.zeros_like(patches), index)
    cell_mask = mask.repeat_interleave(4, 1).repeat_interleave(4, 2).unsqueeze(1).expand_as(x)
    assert torch.equal(changed[cell_mask], torch.zeros(int(cell_mask.sum())))
    assert torch.equal(changed[~cell_mask], x[~cell_mask])


def test_crop_windows_pad_by_replication_at_the_border():
    x = torch.arange(4 * 8, dtype=torch.float32).view(1, 1, 4, 8)
    index = (torch.tensor([0]), torch.tensor([0]), torch.tensor([0]))
    window = crop_windows(x, index, 4, 2)[0, 0]  # rows -2..5, columns -2..5 of image 0
    assert window.shape == (8, 8)
    assert torch.equal(window[2:6, 2:6], x[0, 0, :, :4])
    assert torch.equal(window[0], window[2]) and torch.equal(window[:, 0], window[:, 2])  # replicated edge
    assert torch.equal(window[6], window[5])  # below the last row


# ----------------------------------------------------------------------------------------------- refiner


@pytest.mark.parametrize("mode", ["full", "sampling", "thresholding"])
def test_untrained_refiner_returns_the_upsampled_base_exactly(mode):
    refiner = Refiner(HIDDEN)  # last conv at zero: refines to the identity
    image, background = _frames(2, 20, 28)
    base = _base(2, 6, 8)
    out = refiner(image, background, base, mode=mode, pixels=16 * 9, threshold=0.5)
    alpha, foreground = _upsampled_base(base, (20, 28))
    assert torch.equal(out.alpha_raw, alpha) and torch.equal(out.foreground_raw, foreground)
    assert out.refined.shape == (2, 1, 5, 7)
    expected = {"full": 35.0, "sampling": 9.0, "thresholding": None}[mode]
    if expected is not None:
        assert out.refined.sum((1, 2, 3)).tolist() == [expected, expected]


def test_patches_get_the_value_of_full_mode_and_the_rest_keeps_the_base():
    refiner = _randomise_last_conv(Refiner(HIDDEN)).eval()
    image, background = _frames(2, 24, 36)
    base = _base(2, 8, 12)
    with torch.no_grad():
        full = refiner(image, background, base, mode="full")
        every = refiner(image, background, base, mode="thresholding", threshold=-1.0)
        sampled = refiner(image, background, base, mode="sampling", pixels=16 * 10)
    torch.testing.assert_close(every.alpha_raw, full.alpha_raw, rtol=0, atol=1e-5)
    torch.testing.assert_close(every.foreground_raw, full.foreground_raw, rtol=0, atol=1e-5)
    assert (full.alpha_raw - _upsampled_base(base, (24, 36))[0]).abs().max() > 1e-3  # refinement changed values

    refined = sampled.refined.bool().repeat_interleave(4, 2).repeat_interleave(4, 3)
    assert sampled.refined.sum().item() == 20
    alpha, foreground = _upsampled_base(base, (24, 36))
    torch.testing.assert_close(sampled.alpha_raw[refined], full.alpha_raw[refined], rtol=0, atol=1e-5)
    assert torch.equal(sampled.alpha_raw[~refined], alpha[~refined])
    refined3 = refined.expand_as(foreground)
    torch.testing.assert_close(sampled.foreground_raw[refined3], full.foreground_raw[refined3], rtol=0, atol=1e-5)
    assert full.alpha_raw.min() >= -1 and full.alpha_raw.max() <= 1


def test_thresholding_refines_where_the_error_is_high():
    refiner = _randomise_last_conv(Refiner(HIDDEN)).eval()
    image, background = _frames(1, 16, 16)
    base = _base(1, 4, 4)._replace(error=torch.zeros(1, 1, 4, 4))
    base.error[0, 0, 1, 2] = 0.8
    with torch.no_grad():
        out = refiner(image, background, base, mode="thresholding", threshold=0.5)
        none = refiner(image, background, base, mode="thresholding", threshold=0.9)
    assert out.refined[0, 0].nonzero().tolist() == [[1, 2]]
    assert none.refined.sum() == 0
    assert torch.equal(none.alpha_raw, _upsampled_base(base, (16, 16))[0])  # zero patches: the base, no error


def test_thresholding_is_strict_at_the_threshold():
    """An error exactly at the threshold (0.5, exact in binary) is not refined; just above it is."""
    error = torch.zeros(1, 1, 4, 4)
    error[0, 0, 1, 2], error[0, 0, 3, 0] = 0.5, 0.5001
    assert select_patches(error, "thresholding", 0, 0.5)[0].nonzero().tolist() == [[3, 0]]
    refiner = _randomise_last_conv(Refiner(HIDDEN)).eval()
    image, background = _frames(1, 16, 16)
    with torch.no_grad():
        out = refiner(image, background, _base(1, 4, 4)._replace(error=error), mode="thresholding", threshold=0.5)
    assert out.refined[0, 0].nonzero().tolist() == [[3, 0]]


def test_refined_alpha_is_clamped_but_passes_gradient():
    raw = torch.tensor([-1.5, -0.2, 1.0, 1.25], requires_grad=True)
    alpha = clamp_passing_gradient(raw)
    assert alpha.tolist() == [-1.0, pytest.approx(-0.2), 1.0, 1.0]
    (alpha * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert raw.grad.tolist() == [1.0, 2.0, 3.0, 4.0]  # a strand under a residual that drifted below -1 still learns
    with torch.no_grad():
        assert torch.equal(clamp_passing_gradient(raw), raw.clamp(-1, 1))


def test_refiner_rejects_bad_inputs():
    refiner = Refiner(HIDDEN)
    image, background = _frames(1, 16, 16)
    with pytest.raises(ValueError, match="multiples of 4"):
        refiner(image[..., :15], background[..., :15], _base(1, 4, 4))
    with pytest.raises(ValueError, match="base hidden must be 1 x 3"):
        refiner(image, background, _base(1, 4, 4)._replace(hidden=torch.zeros(1, 2, 4, 4)))
    with pytest.raises(ValueError, match="channels"):
        Refiner(HIDDEN, channels=(4, 4))
    assert Refiner(5, channels=[7, 6, 5]).config == {"hidden_channels": 5, "channels": [7, 6, 5]}


# ----------------------------------------------------------------------------------------------- in MattingModel


@pytest.mark.parametrize("mode", ["full", "sampling", "thresholding"])
@pytest.mark.parametrize("batch,height,width,ratio", [(1, 37, 51, 0.5), (2, 30, 22, None), (1, 21, 63, 0.25)])
def test_refining_model_shapes_at_odd_sizes(tiny_config, mode, batch, height, width, ratio):
    model = _refining_model(tiny_config, downsample_ratio=ratio, refine_mode=mode, refine_pixels=16 * 7).eval()
    inputs = _image_inputs(batch, height, width)
    with torch.no_grad():
        raw = model(*inputs, raw=True)
        alpha, foreground = model(*inputs)
    padded = (-(-height // 4) * 4, -(-width // 4) * 4)
    base = model.base_size(*padded)
    assert alpha.shape == (batch, 1, height, width) and foreground.shape == (batch, 3, height, width)
    assert 0 <= alpha.min() and alpha.max() <= 1 and 0 <= foreground.min() and foreground.max() <= 1
    assert raw.alpha.shape == (batch, 1, height, width) and raw.image.shape == (batch, 3, height, width)
    assert raw.coarse_alpha.shape == (batch, 1, *base) and raw.coarse_foreground.shape == (batch, 3, *base)
    assert raw.coarse_image.shape == (batch, 3, *base) and raw.error.shape == (batch, 1, *base)
    assert raw.refined.shape == (batch, 1, padded[0] // 4, padded[1] // 4)
    assert 0 <= raw.error.min() and raw.error.max() <= 1
    if mode == "sampling":
        assert raw.refined.sum((1, 2, 3)).tolist() == [7.0] * batch


def test_gradients_reach_base_and_refiner_in_sampling_mode(tiny_config):
    torch.manual_seed(0)
    generator = Generator(**tiny_config, refine_head=True, refine_hidden=HIDDEN, motion_uses_background_feature=False)
    model = MattingModel(
        generator, Refiner(HIDDEN), downsample_ratio=0.5, refine_mode="sampling", refine_pixels=16 * 12
    )
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs = _image_inputs(2, 32, 40)
    for step in range(2):  # the refiner's last conv starts at zero: its other layers get gradients from step 2
        optimiser.zero_grad()
        raw = model(*inputs, raw=True)
        error_target = (raw.coarse_alpha.detach() - 0.3).abs() / 2
        loss = raw.alpha.abs().mean() + raw.foreground.square().mean() + (raw.error - error_target).square().mean()
        loss.backward()
        if step == 0:
            optimiser.step()
    assert raw.refined.sum((1, 2, 3)).tolist() == [12.0, 12.0]
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        if name.endswith("weight") or name.startswith("refiner."):
            assert parameter.grad.abs().sum() > 0, name


def test_traced_thresholding_model_follows_the_data(tiny_config):
    """torch.jit.trace of the refining model in thresholding mode: selection is data, not control flow, so the
    trace refines other patches (and other numbers of them) on other inputs exactly like the eager model."""
    model = _refining_model(tiny_config, downsample_ratio=0.5, refine_mode="thresholding", refine_threshold=0.5).eval()
    with torch.no_grad():
        model.generator.error_head.conv.bias[0] = 0.0  # errors spread around 0.5: some patches in, some out
        traced = torch.jit.trace(model, tuple(_image_inputs(1, 32, 24, seed=0)), check_trace=False)
        counts = set()
        for seed in (1, 2):
            inputs = _image_inputs(1, 32, 24, seed=seed)
            expected = model(*inputs, raw=True)
            counts.add(int(expected.refined.sum()))
            for got, want in zip(traced(*inputs), model(*inputs)):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert len(counts) == 2 and 0 < min(counts) and max(counts) < 48


@pytest.mark.parametrize("mode", ["full", "thresholding"])
def test_full_and_thresholding_modes_export_to_onnx(tiny_config, tmp_path, mode):
    """Trace-based ONNX export (no TopK); thresholding's graph selects per input (NonZero, GatherND, ScatterND)."""
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = _refining_model(tiny_config, downsample_ratio=0.5, refine_mode=mode, refine_threshold=0.5).eval()
    path = tmp_path / "refine.onnx"
    with torch.no_grad():
        model.generator.error_head.conv.bias[0] = 0.0  # errors around 0.5
        torch.onnx.export(model, tuple(_image_inputs(1, 24, 32)), str(path), dynamo=False, opset_version=17)
    onnx.checker.check_model(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    counts = set()
    for seed in (1, 2):
        inputs = _image_inputs(1, 24, 32, seed=seed)
        with torch.no_grad():
            expected = model(*inputs)
            counts.add(int(model(*inputs, raw=True).refined.sum()))
        feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
        for got, want in zip(session.run(None, feeds), expected):
            torch.testing.assert_close(torch.from_numpy(got), want, rtol=0, atol=1e-5)
    assert len(counts) == (2 if mode == "thresholding" else 1)


def test_refining_model_under_bf16_autocast(tiny_config):
    from bgmatting.runtime import Precision

    model = _refining_model(tiny_config, downsample_ratio=0.5, refine_mode="sampling", refine_pixels=16 * 5).eval()
    inputs = _image_inputs(1, 24, 28)
    with torch.no_grad():
        alpha32, _ = model(*inputs)
        model.set_precision(Precision("bf16", "cpu", torch.bfloat16, channels_last=True))
        raw = model(*inputs, raw=True)
        alpha16, _ = model(*inputs)
    assert raw.alpha.dtype == torch.float32 and raw.coarse_alpha.dtype == torch.float32
    assert (alpha16 - alpha32).abs().mean() < 0.02


def test_generator_and_refiner_must_fit(tiny_config):
    with pytest.raises(ValueError, match="no refine head"):
        MattingModel(Generator(**tiny_config), Refiner(HIDDEN))
    with pytest.raises(ValueError, match="refine_hidden=3"):
        MattingModel(Generator(**tiny_config, refine_head=True, refine_hidden=4), Refiner(HIDDEN))
    with pytest.raises(TypeError, match="Refiner or None"):
        MattingModel(Generator(**tiny_config), nn.Identity())


# ----------------------------------------------------------------------------------------------- inference path


@pytest.mark.parametrize("mode, options", [("sampling", dict(pixels=16 * 12)), ("thresholding", dict(threshold=0.5)),
                                           ("full", {})])
def test_inference_path_equals_forward_on_image_space_frames(mode, options):
    refiner = _randomise_last_conv(Refiner(HIDDEN)).eval()
    image, background = (x.contiguous(memory_format=torch.channels_last) for x in _frames(2, 28, 44))
    base = _base(2, 12, 20)  # a base ratio that is not a power of two: bilinear sampling between pixels
    with torch.inference_mode():
        expected = refiner(image, background, base, mode, **options)
        got = refiner((image + 1) / 2, (background + 1) / 2, base, mode, **options, image_space=True)
    assert torch.equal(got.refined, expected.refined)
    if mode != "full":
        assert 0 < got.refined.sum() < got.refined.numel()  # some patches refined, some kept
    torch.testing.assert_close(got.alpha_raw, expected.alpha_raw, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.foreground_raw, expected.foreground_raw, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="without gradient"):
        refiner(image, background, base, mode, image_space=True)


def test_window_reads_without_a_padded_frame_equal_the_padded_gather():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 16, 24, generator=g)
    index = (torch.tensor([0, 1, 1, 0]), torch.tensor([0, 3, 1, 2]), torch.tensor([5, 0, 2, 0]))  # borders included
    for stride, margin in ((4, 2), (2, 3), (4, 0)):
        padded = crop_windows(x.requires_grad_(), index, stride, margin)  # with gradient: the padded frame
        with torch.no_grad():
            assert torch.equal(crop_windows(x, index, stride, margin), padded)
    batch, rows, columns = index[0], index[1][:, None] + torch.arange(4.0), index[2][:, None] + torch.arange(4.0)
    with torch.no_grad():
        resized = resize_bilinear(x, (40, 60)).permute(0, 2, 3, 1)[batch[:, None, None], rows.long()[:, :, None],
                                                                    columns.long()[:, None, :]].permute(0, 3, 1, 2)
        sampled = sample_windows(x, batch, (rows + 0.5) * 16 / 40 - 0.5, (columns + 0.5) * 24 / 60 - 0.5)
        torch.testing.assert_close(sampled, resized, rtol=0, atol=1e-5)
        pooled = torch.nn.functional.avg_pool2d(x, 2).permute(0, 2, 3, 1)[
            batch[:, None, None], rows.long()[:, :, None], columns.long()[:, None, :]].permute(0, 3, 1, 2)
        torch.testing.assert_close(sample_windows(x, batch, 2 * rows + 0.5, 2 * columns + 0.5), pooled,
                                   rtol=0, atol=1e-5)


def test_paste_in_place_equals_paste():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(2, 3, 12, 16, generator=g).contiguous(memory_format=torch.channels_last)
    index = (torch.tensor([1, 0]), torch.tensor([2, 0]), torch.tensor([3, 1]))
    patches = torch.rand(2, 3, 4, 4, generator=g)
    expected = paste_patches(x, patches, index)
    assert paste_patches_(x, patches, index) is x and torch.equal(x, expected)
