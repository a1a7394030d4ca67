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

from bgmatting.models.blocks import init_weights, resize_bilinear
from bgmatting.models.generator import GeneratorOutputs

MODES = ("full", "sampling", "thresholding")
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
        raise ValueError(f"refine mode must be one of {', '.join(MODES)}, got {mode!r}")
    return selected.view(error_grid.shape[0], *error_grid.shape[-2:])


# ---------------------------------------------------------------------------------------------------- crop, paste


def crop_windows(x: torch.Tensor, index: PatchIndex, stride: int, margin: int) -> torch.Tensor:
    """Windows around patches: B x C x H x W -> P x C x (stride + 2·margin) x (stride + 2·margin).

    Patch (b, r, c) covers rows ``stride·r ... stride·r + stride - 1`` of image b (and likewise columns);
    its window adds ``margin`` on each side, replicate padded at the frame border. A gather: traceable.
    """
    if margin:
        x = F.pad(x, (margin,) * 4, mode="replicate")
    batch, row, column = index
    offsets = torch.arange(stride + 2 * margin, device=x.device)
    rows = (row * stride).unsqueeze(1) + offsets  # P x k
    columns = (column * stride).unsqueeze(1) + offsets
    windows = x.permute(0, 2, 3, 1)[batch.view(-1, 1, 1), rows.unsqueeze(2), columns.unsqueeze(1)]  # P x k x k x C
    return windows.permute(0, 3, 1, 2)


def paste_patches(x: torch.Tensor, patches: torch.Tensor, index: PatchIndex) -> torch.Tensor:
    """``x`` (B x C x H x W, H and W multiples of 4) with its 4x4 patches at ``index`` replaced by ``patches``
    (P x C x 4 x 4). Out of place, differentiable with respect to both; an ``index_put``: traceable."""
    b, c, h, w = x.shape
    grid = x.reshape(b, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 2, 4, 1, 3, 5)  # B x gh x gw x C x 4 x 4
    grid = grid.index_put(index, patches.to(x.dtype))
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


# ---------------------------------------------------------------------------------------------------- network


def clamp_passing_gradient(alpha_raw: torch.Tensor) -> torch.Tensor:
    """Clamp to [-1, 1]; when ``alpha_raw`` requires grad, the gradient passes as if unclamped (straight-through).

    The refined alpha is the upsampled base plus a residual. Far from the subject the base says -1 and the
    residual may drift below it; a plain clamp would then give a strand pixel there no gradient at all. Without
    grad (inference, tracing) this is exactly ``clamp``.
    """
    clamped = alpha_raw.clamp(-1.0, 1.0)
    return alpha_raw + (clamped - alpha_raw).detach() if alpha_raw.requires_grad else clamped


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
    ) -> RefinerOutputs:
        """Refine ``base`` (the generator's outputs at h x w) to the size of ``image``.

        Args:
            image, background: I and B', B x 3 x H x W in [-1, 1], H and W multiples of 4 (MattingModel pads).
            base: :class:`GeneratorOutputs` at any h x w covering the same frame (alpha, F, error, hidden).
            mode: ``full``, ``sampling`` or ``thresholding`` (see :func:`select_patches`).
            pixels: sampling budget in full-resolution pixels per image (patches = pixels // 16).
            threshold: thresholding limit on the error map, in [0, 1].
        """
        self._check_inputs(image, background, base)
        height, width = image.shape[-2:]
        grid_size = (height // PATCH, width // PATCH)
        coarse = resize_bilinear(torch.cat([base.alpha_raw, base.foreground_raw], dim=1), (height, width))
        frame = torch.cat([image, background], dim=1)
        base_maps = torch.cat([base.hidden, base.alpha_raw, base.foreground_raw], dim=1)
        context = torch.cat([resize_bilinear(base_maps, (height // 2, width // 2)), F.avg_pool2d(frame, 2)], dim=1)
        if mode == "full" or (mode == "sampling" and pixels // PATCH**2 >= grid_size[0] * grid_size[1]):
            refined = coarse + self._refine_frame(context, frame)
            selected = torch.ones(image.shape[0], 1, *grid_size, dtype=image.dtype, device=image.device)
        else:
            mask = select_patches(error_on_patch_grid(base.error, grid_size), mode, pixels, threshold)
            refined = self._refine_selected(coarse, context, frame, mask)
            selected = mask.unsqueeze(1).to(image.dtype)
        return RefinerOutputs(clamp_passing_gradient(refined[:, :1]), refined[:, 1:], selected)

    def _stages(self, context_windows: torch.Tensor, frame_windows: torch.Tensor) -> torch.Tensor:
        """Both stages on windows (or whole padded frames): context N x (hidden + 10) x (2n + 6) x (2n + 6) at
        H/2 and frame N x 6 x (4n + 4) x (4n + 4) at H -> residual N x 4 x 4n x 4n (n patches per side)."""
        features = F.interpolate(self.coarse_stage(context_windows), scale_factor=2, mode="nearest")
        return self.fine_stage(torch.cat([features, frame_windows], dim=1))

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

