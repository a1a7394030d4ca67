"""The full-resolution patch refiner, after BackgroundMattingV2's (Lin et al., CVPR 2021).

The base generator runs at a reduced resolution and predicts, besides alpha and F, an error map and a few
hidden channels (``Generator(refine_head=True).forward_with_error``). The refiner brings alpha and F to the
full resolution H x W and re-predicts the 4x4 patches where the base is likely wrong:

1. upsample: the base's alpha and F, bilinearly, to H x W (what every patch not refined keeps);
2. select: the error map is resampled to the grid of 4x4 patches (H/4 x W/4) and patches are chosen by the
   mode: ``full`` (every patch), ``sampling`` (the ``pixels // 16`` highest-error patches of each image) or
   ``thresholding`` (every patch whose error exceeds ``threshold``);
3. coarse stage, at H/2: per patch an 8 x 8 window (its 2 x 2 half-resolution pixels and 3 of context on each
   side) of the base's hidden channels, alpha and F and of I and B', through two valid 3x3 convs -> 4 x 4;
4. fine stage, at H: those features upsampled x2 (nearest) to 8 x 8, next to the full-resolution 8 x 8 window
   of I and B' (the patch and 2 of context), through two valid 3x3 convs -> 4 x 4: a residual added to the
   upsampled alpha and F of the patch (it reads I - B' at full resolution, where thin strands are visible);
5. paste: refined patches replace the upsampled base output.

Mode ``full`` runs the same two stages as convolutions over the whole frame (no crop, no paste): every patch
gets the value patch-wise refinement would give it, at a quarter of the cost. Frame borders are replicate
padded in both cases. All tensors are in network space [-1, 1] (see :mod:`bgmatting.space`), like the
generator's.

Export: modes ``full`` and ``thresholding`` trace (``torch.jit.trace``, ONNX with dynamic H and W): selection
is a comparison and ``nonzero``, crops are gathers and the paste an ``index_put``, with no Python branch on
data (zero selected patches is a valid, empty batch). ``sampling`` uses ``topk``, with ``k`` fixed at trace
time.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bgmatting.models.blocks import cat_channels_last, fused_conv, init_weights, resize_bilinear, tracing
from bgmatting.models.generator import GeneratorOutputs
from bgmatting.space import to_network

REFINE_MODES = ("full", "sampling", "thresholding")
PATCH = 4  # full-resolution side of a refined patch; the patch grid is H/4 x W/4
COARSE_MARGIN = 3  # context of a patch's coarse-stage window, in half-resolution pixels
FINE_MARGIN = 2  # context of a patch's fine-stage window, in full-resolution pixels

PatchIndex = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (batch, row, column) on the patch grid, each (P,)


class RefinerOutputs(NamedTuple):
    """Full-resolution outputs of :class:`Refiner` (H x W of its input image).

    ``alpha_raw``: B x 1 x H x W in [-1, 1]. ``foreground_raw``: B x 3 x H x W, unbounded (as the generator's).
    ``refined``: B x 1 x H/4 x W/4, 1.0 where the 4x4 patch was refined and 0.0 where it is the upsampled base.
    """

    alpha_raw: torch.Tensor
    foreground_raw: torch.Tensor
    refined: torch.Tensor


# ---------------------------------------------------------------------------------------------------- selection


def error_on_patch_grid(error: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """Error map B x 1 x h x w in [0, 1] -> B x 1 x gh x gw on the patch grid.

    A finer map is first max-pooled by the integer factor ceil(h / gh) (exact for factors 1, 2, 4: no
    peak is lost between samples); the result is then resized bilinearly to the grid if it differs.
    """
    factor = math.ceil(max(error.shape[-2] / grid_size[0], error.shape[-1] / grid_size[1]))
    if factor > 1:
        error = F.max_pool2d(error, factor, ceil_mode=True)
    if tuple(error.shape[-2:]) != tuple(grid_size):
        error = F.interpolate(error, size=grid_size, mode="bilinear", align_corners=False)
    return error


def select_patches(error_grid: torch.Tensor, mode: str, pixels: int, threshold: float) -> torch.Tensor:
    """Which patches to refine: B x 1 x gh x gw error on the patch grid -> B x gh x gw bool.

    ``full``: all. ``sampling``: the ``pixels // 16`` highest errors of each image (all when the image has
    fewer patches). ``thresholding``: error > ``threshold``.
    """
    flat = error_grid.flatten(1)  # B x (gh·gw)
    if mode == "full":
        selected = torch.ones_like(flat, dtype=torch.bool)
    elif mode == "sampling":
        k = min(pixels // PATCH**2, flat.shape[1])
        top = flat.topk(k, dim=1, sorted=False).indices
        selected = torch.zeros_like(flat, dtype=torch.bool).scatter(1, top, True)
    elif mode == "thresholding":
        selected = flat > threshold
    else:
        raise ValueError(f"refine mode must be one of {', '.join(REFINE_MODES)}, got {mode!r}")
    return selected.view(error_grid.shape[0], *error_grid.shape[-2:])


# ---------------------------------------------------------------------------------------------------- crop, paste


def crop_windows(x: torch.Tensor, index: PatchIndex, stride: int, margin: int) -> torch.Tensor:
    """Windows around patches: B x C x H x W -> P x C x (stride + 2·margin) x (stride + 2·margin).

    Patch (b, r, c) covers rows ``stride·r ... stride·r + stride - 1`` of image b (and likewise columns);
    its window adds ``margin`` on each side, replicate padded at the frame border. A gather: traceable. Without
    gradient (and not traced) the same values are read without a padded copy of the frame: clamped pixel
    positions through :func:`sample_windows` (nearest), or a view of the patch grid when ``margin`` is 0.
    """
    batch, row, column = index
    size = stride + 2 * margin
    if not x.requires_grad and not tracing():
        if margin == 0 and stride == PATCH and x.shape[-2] % PATCH == 0 and x.shape[-1] % PATCH == 0:
            return _patch_grid(x)[batch, :, row, :, column, :]
        offsets = torch.arange(-margin, size - margin, device=x.device, dtype=torch.float32)
        rows = ((row * stride).unsqueeze(1) + offsets).clamp_(0, x.shape[-2] - 1)
        columns = ((column * stride).unsqueeze(1) + offsets).clamp_(0, x.shape[-1] - 1)
        return sample_windows(x, batch, rows, columns, "nearest")
    if margin:
        x = F.pad(x, (margin,) * 4, mode="replicate")
    offsets = torch.arange(size, device=x.device)
    rows = (row * stride).unsqueeze(1) + offsets  # P x k
    columns = (column * stride).unsqueeze(1) + offsets
    windows = x.permute(0, 2, 3, 1)[batch.view(-1, 1, 1), rows.unsqueeze(2), columns.unsqueeze(1)]  # P x k x k x C
    return windows.permute(0, 3, 1, 2)


def sample_windows(x: torch.Tensor, batch: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor,
                   mode: str = "bilinear") -> torch.Tensor:
    """P x C x k x k: ``x`` (B x C x H x W) read at image ``batch[p]`` (P,), pixel rows ``rows[p]`` and columns
    ``columns[p]`` (P x k float, pixel centres at integers), bilinearly or ``nearest``; positions outside the
    frame read its border (replicate padding). One ``grid_sample`` per image: no copy of the frame.

    Bilinear reading at ``(i + 0.5) · h / H - 0.5`` gives what :func:`resize_bilinear` to H gives at i, and at
    ``2i + 0.5`` the 2 x 2 mean of ``avg_pool2d`` (within float rounding, ~1e-4 of a pixel in position)."""
    count, k = rows.shape
    height, width = x.shape[-2:]
    grid = torch.stack([((2 * columns + 1) / width - 1).unsqueeze(1).expand(count, k, k),
                        ((2 * rows + 1) / height - 1).unsqueeze(2).expand(count, k, k)], dim=-1).to(x.dtype)

    def sample(image: int, part: torch.Tensor) -> torch.Tensor:  # C x P' x k² -> P' x C x k x k
        sampled = F.grid_sample(x[image:image + 1], part.reshape(1, part.shape[0], k * k, 2), mode=mode,
                                padding_mode="border", align_corners=False)
        return sampled[0].unflatten(2, (k, k)).transpose(0, 1)

    if x.shape[0] == 1:
        return sample(0, grid)
    out = x.new_empty(count, x.shape[1], k, k)
    for image in range(x.shape[0]):
        chosen = (batch == image).nonzero(as_tuple=True)[0]
        out[chosen] = sample(image, grid[chosen])
    return out


def _patch_grid(x: torch.Tensor) -> torch.Tensor:
    """B x C x H x W (H, W multiples of 4) viewed as B x C x H/4 x 4 x W/4 x 4: indexing it at (b, :, r, :, c, :)
    reads (or writes) whole 4x4 patches as P x C x 4 x 4."""
    return x.unflatten(3, (x.shape[-1] // PATCH, PATCH)).unflatten(2, (x.shape[-2] // PATCH, PATCH))


def paste_patches(x: torch.Tensor, patches: torch.Tensor, index: PatchIndex) -> torch.Tensor:
    """``x`` (B x C x H x W, H and W multiples of 4) with its 4x4 patches at ``index`` replaced by ``patches``
    (P x C x 4 x 4). Out of place, differentiable with respect to both; an ``index_put``: traceable."""
    b, c, h, w = x.shape
    grid = x.reshape(b, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 2, 4, 1, 3, 5)  # B x gh x gw x C x 4 x 4
    grid = grid.index_put(index, patches.to(x.dtype))
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def paste_patches_(x: torch.Tensor, patches: torch.Tensor, index: PatchIndex) -> torch.Tensor:
    """:func:`paste_patches` in place (inference: no gradient, ``x`` in any memory format, no copy of the frame)."""
    _patch_grid(x)[index[0], :, index[1], :, index[2], :] = patches.to(x.dtype)
    return x


# ---------------------------------------------------------------------------------------------------- network


def clamp_passing_gradient(alpha_raw: torch.Tensor) -> torch.Tensor:
    """Clamp to [-1, 1]; when ``alpha_raw`` requires grad, the gradient passes as if unclamped (straight-through).

    The refined alpha is the upsampled base plus a residual. Far from the subject the base says -1 and the
    residual may drift below it; a plain clamp would then give a strand pixel there no gradient at all. Without
    grad (inference, tracing) this is exactly ``clamp``.
    """
    clamped = alpha_raw.clamp(-1.0, 1.0)
    return alpha_raw + (clamped - alpha_raw).detach() if alpha_raw.requires_grad else clamped


def _every_patch(mode: str, pixels: int, grid_size: tuple[int, int]) -> bool:
    """Whether ``mode`` refines every patch of the grid (full, or a sampling budget that covers the frame)."""
    return mode == "full" or (mode == "sampling" and pixels // PATCH**2 >= grid_size[0] * grid_size[1])


def _owned(resized: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``resized``, copied when resizing returned ``source`` itself (the caller writes into it)."""
    return resized.clone() if resized is source else resized


def _conv3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3)  # valid: each conv trims one pixel per side


class Refiner(nn.Module):
    """Refines a base generator's outputs at full resolution, patch by patch (see the module docstring).

    Args:
        hidden_channels: hidden channels the base provides (``Generator(refine_hidden=...)``).
        channels: widths (coarse conv 1, coarse conv 2, fine conv 1). BackgroundMattingV2: 32 hidden
            channels and (24, 16, 12).
        rng: optional torch.Generator for the initialisation (the original's, see
            :func:`~bgmatting.models.blocks.init_weights`). The last conv starts at zero, so an untrained
            refiner returns the upsampled base exactly (a base trained alone keeps its quality at step 0).

    No normalisation layers: the output of a patch depends on its windows only, never on which other
    patches are refined, in training and in eval alike.
    """

    def __init__(
        self,
        hidden_channels: int = 16,
        channels: tuple[int, int, int] | list[int] = (24, 16, 16),
        rng: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 3 or min(channels) < 1 or hidden_channels < 0:
            raise ValueError(
                f"invalid refiner size: channels={channels} must be three widths >= 1, "
                f"hidden_channels={hidden_channels} must be >= 0"
            )
        self._config: dict[str, Any] = dict(hidden_channels=hidden_channels, channels=list(channels))
        self.hidden_channels = hidden_channels
        coarse1, coarse2, fine = channels
        images = 6  # I and B'
        self.coarse_stage = nn.Sequential(
            _conv3(hidden_channels + 1 + 3 + images, coarse1),  # hidden, alpha, F of the base; I and B' at H/2
            nn.ReLU(inplace=True),
            _conv3(coarse1, coarse2),
            nn.ReLU(inplace=True),
        )
        self.fine_stage = nn.Sequential(
            _conv3(coarse2 + images, fine),  # coarse features upsampled to H, I and B' at H
            nn.ReLU(inplace=True),
            _conv3(fine, 1 + 3),  # residual of alpha and F
        )
        init_weights(self, rng)
        nn.init.zeros_(self.fine_stage[-1].weight)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (a copy), e.g. to store as ``refiner_config`` in a checkpoint."""
        return {key: list(value) if isinstance(value, list) else value for key, value in self._config.items()}

    def forward(
        self,
        image: torch.Tensor,
        background: torch.Tensor,
        base: GeneratorOutputs,
        mode: str = "sampling",
        pixels: int = 80_000,
        threshold: float = 0.1,
        *,
        image_space: bool = False,
    ) -> RefinerOutputs:
        """Refine ``base`` (the generator's outputs at h x w) to the size of ``image``.

        Args:
            image, background: I and B', B x 3 x H x W in [-1, 1], H and W multiples of 4 (MattingModel pads).
            base: :class:`GeneratorOutputs` at any h x w covering the same frame (alpha, F, error, hidden).
            mode: ``full``, ``sampling`` or ``thresholding`` (see :func:`select_patches`).
            pixels: sampling budget in full-resolution pixels per image (patches = pixels // 16).
            threshold: thresholding limit on the error map, in [0, 1].
            image_space: ``image`` and ``background`` are in [0, 1] and the call runs the inference path
                (:meth:`_forward_inference`; without gradient only); the outputs are the same.
        """
        if image_space:
            if torch.is_grad_enabled():
                raise ValueError("Refiner: image_space=True is the inference path; call it without gradient")
            return self._forward_inference(image, background, base, (mode, pixels, threshold))
        self._check_inputs(image, background, base)
        height, width = image.shape[-2:]
        grid_size = (height // PATCH, width // PATCH)
        coarse = resize_bilinear(torch.cat([base.alpha_raw, base.foreground_raw], dim=1), (height, width))
        frame = torch.cat([image, background], dim=1)
        base_maps = torch.cat([base.hidden, base.alpha_raw, base.foreground_raw], dim=1)
        context = torch.cat([resize_bilinear(base_maps, (height // 2, width // 2)), F.avg_pool2d(frame, 2)], dim=1)
        if _every_patch(mode, pixels, grid_size):
            refined = coarse + self._refine_frame(context, frame)
            selected = torch.ones(image.shape[0], 1, *grid_size, dtype=image.dtype, device=image.device)
        else:
            mask = select_patches(error_on_patch_grid(base.error, grid_size), mode, pixels, threshold)
            refined = self._refine_selected(coarse, context, frame, mask)
            selected = mask.unsqueeze(1).to(image.dtype)
        return RefinerOutputs(clamp_passing_gradient(refined[:, :1]), refined[:, 1:], selected)

    def _forward_inference(self, image: torch.Tensor, background: torch.Tensor, base: GeneratorOutputs,
                           options: tuple[str, int, float]) -> RefinerOutputs:
        """:meth:`forward` for inference (no gradient) with ``image`` and ``background`` in **image space** [0, 1]
        (B x 3 x H x W, H and W multiples of 4) and ``options`` (mode, pixels, threshold): the same outputs within
        float rounding, in network space.

        Modes sampling and thresholding touch the full-resolution frame only where it is needed: the base's
        alpha and F are upsampled once, the windows of the selected patches are read from I, B' and the base's
        maps directly (no full-frame concatenation, padding, pooling or [-1, 1] copy) and the refined patches
        are pasted in place. Mode full runs :meth:`forward`'s whole-frame convolutions.
        """
        self._check_inputs(image, background, base)
        height, width = image.shape[-2:]
        grid_size = (height // PATCH, width // PATCH)
        mode, pixels, threshold = options
        if _every_patch(mode, pixels, grid_size):
            return self.forward(to_network(image), to_network(background), base, "full")
        alpha = _owned(resize_bilinear(base.alpha_raw, (height, width)), base.alpha_raw)
        foreground = _owned(resize_bilinear(base.foreground_raw, (height, width)), base.foreground_raw)
        mask = select_patches(error_on_patch_grid(base.error, grid_size), mode, pixels, threshold)
        index: PatchIndex = tuple(mask.nonzero(as_tuple=True))
        if index[0].numel():
            residual = self._stages(self._context_windows(image, background, base, index),
                                    to_network(cat_channels_last([crop_windows(x, index, PATCH, FINE_MARGIN)
                                                                  for x in (image, background)])))
            coarse = torch.cat([crop_windows(alpha, index, PATCH, 0), crop_windows(foreground, index, PATCH, 0)], 1)
            patches = coarse + residual
            paste_patches_(alpha, patches[:, :1].clamp_(-1.0, 1.0), index)
            paste_patches_(foreground, patches[:, 1:], index)
        return RefinerOutputs(alpha, foreground, mask.unsqueeze(1).to(alpha.dtype))

    @staticmethod
    def _context_windows(image: torch.Tensor, background: torch.Tensor, base: GeneratorOutputs,
                         index: PatchIndex) -> torch.Tensor:
        """The coarse stage's windows (P x (hidden + 10) x 8 x 8 at H/2) as :meth:`forward` cuts them from its
        context map, read at the windows only (:func:`sample_windows`); ``image`` and ``background`` in [0, 1]."""
        half = (image.shape[-2] // 2, image.shape[-1] // 2)
        batch, row, column = index
        offsets = torch.arange(-COARSE_MARGIN, PATCH // 2 + COARSE_MARGIN, device=image.device, dtype=torch.float32)
        rows = ((row * (PATCH // 2)).unsqueeze(1) + offsets).clamp_(0, half[0] - 1)  # replicate padding at H/2
        columns = ((column * (PATCH // 2)).unsqueeze(1) + offsets).clamp_(0, half[1] - 1)
        maps = torch.cat([base.hidden, base.alpha_raw, base.foreground_raw], dim=1)
        height, width = maps.shape[-2:]
        windows = [sample_windows(maps, batch, (rows + 0.5) * (height / half[0]) - 0.5,
                                  (columns + 0.5) * (width / half[1]) - 0.5),  # resize_bilinear to H/2
                   *(to_network(sample_windows(x, batch, 2 * rows + 0.5, 2 * columns + 0.5))  # avg_pool2d(x, 2)
                     for x in (image, background))]
        return cat_channels_last([w.to(windows[0].dtype) for w in windows])

    def _stages(self, context_windows: torch.Tensor, frame_windows: torch.Tensor) -> torch.Tensor:
        """Both stages on windows (or whole padded frames): context N x (hidden + 10) x (2n + 6) x (2n + 6) at
        H/2 and frame N x 6 x (4n + 4) x (4n + 4) at H -> residual N x 4 x 4n x 4n (n patches per side).
        Each conv and its ReLU run as one call where :func:`fused_conv` can (the same values)."""
        coarse1, _, coarse2, _ = self.coarse_stage
        fine1, _, fine2 = self.fine_stage
        features = fused_conv(fused_conv(context_windows, coarse1.weight, coarse1.bias, relu=True),
                              coarse2.weight, coarse2.bias, relu=True)
        features = F.interpolate(features, scale_factor=2, mode="nearest")
        if torch.is_grad_enabled() or tracing():
            stacked = torch.cat([features, frame_windows], dim=1)
        else:  # straight into the layout the convolution reads
            stacked = cat_channels_last([features, frame_windows.to(features.dtype)])
        features = fused_conv(stacked, fine1.weight, fine1.bias, relu=True)
        return fused_conv(features, fine2.weight, fine2.bias)

    def _refine_frame(self, context: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Mode full: the residual for every pixel, B x 4 x H x W."""
        padded_context = F.pad(context, (COARSE_MARGIN,) * 4, mode="replicate")
        return self._stages(padded_context, F.pad(frame, (FINE_MARGIN,) * 4, mode="replicate"))

    def _refine_selected(
        self, coarse: torch.Tensor, context: torch.Tensor, frame: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """``coarse`` (B x 4 x H x W) with the patches of ``mask`` (B x H/4 x W/4 bool) refined."""
        index: PatchIndex = tuple(mask.nonzero(as_tuple=True))
        residual = self._stages(
            crop_windows(context, index, PATCH // 2, COARSE_MARGIN), crop_windows(frame, index, PATCH, FINE_MARGIN)
        )
        return paste_patches(coarse, crop_windows(coarse, index, PATCH, 0) + residual, index)

    def _check_inputs(self, image: torch.Tensor, background: torch.Tensor, base: GeneratorOutputs) -> None:
        if image.dim() != 4 or image.shape[1] != 3 or background.shape != image.shape:
            raise ValueError(
                f"Refiner: image and background must both be B x 3 x H x W, got {tuple(image.shape)} and "
                f"{tuple(background.shape)}"
            )
        if image.shape[-2] % PATCH or image.shape[-1] % PATCH:
            raise ValueError(f"Refiner: H and W must be multiples of {PATCH}, got {tuple(image.shape[-2:])}")
        expected = {"alpha_raw": 1, "foreground_raw": 3, "error": 1, "hidden": self.hidden_channels}
        for name, channels in expected.items():
            tensor = getattr(base, name)
            fits = tensor.dim() == 4 and tensor.shape[:2] == (image.shape[0], channels)
            if not fits or tensor.shape[-2:] != base.alpha_raw.shape[-2:]:
                raise ValueError(
                    f"Refiner: base {name} must be {image.shape[0]} x {channels} x h x w like alpha_raw "
                    f"{tuple(base.alpha_raw.shape)}, got {tuple(tensor.shape)}"
                )

