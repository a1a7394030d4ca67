"""The generator's inference fast path: BatchNorm folded into the convolutions, residual adds fused into them,
the selectors that read the same features merged into one convolution, the plate's features reused while the
plate stays the same, and the output heads (a 7x7 convolution to 1 or 3 channels, which oneDNN runs barely faster
than to 16) computed as depthwise convolutions and a sum.

:class:`FoldedGenerator` is built from a :class:`~bgmatting.models.Generator` (its weights and running statistics
as they are at that moment) and computes what the generator computes in eval mode, within float rounding
(tests: 5e-5 of the outputs' scale): ``forward`` and ``forward_with_error`` with the same arguments and results,
in network space [-1, 1]. It owns no modules and holds no state-dict entries: the generator, its checkpoints and
its training path are untouched. :func:`folded_generator` keeps one per generator and rebuilds it when any
weight changes.

Only generators whose norms are BatchNorm (``norm="batch"`` or ``"sync_batch"``, the original's) can be folded
(:func:`can_fold`); InstanceNorm depends on the input.
"""
from __future__ import annotations

from itertools import chain
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bgmatting.models.blocks import ResnetBlock, fold_batchnorm, fused_conv, reflect_pad
from bgmatting.models.generator import Generator, GeneratorOutputs


class FoldedConv(NamedTuple):
    """One convolution with its norm folded in: weight out x in x k x k, bias out, stride, zero padding."""

    weight: torch.Tensor
    bias: torch.Tensor
    stride: int = 1
    padding: int = 0

    def __call__(self, x: torch.Tensor, relu: bool = False, residual: torch.Tensor | None = None) -> torch.Tensor:
        return fused_conv(x, self.weight, self.bias, stride=self.stride, padding=self.padding, relu=relu,
                          residual=residual)


class DepthwiseSum(NamedTuple):
    """A convolution with few outputs computed as, per output, a depthwise convolution (one kernel per input
    channel) and the sum over the channels (a 1x1 convolution with ones, plus the bias): the same sums in
    another order. oneDNN runs a 7x7 convolution with 1 or 3 outputs barely faster than with 16; this way the
    generator's output heads cost a small fraction of that."""

    depthwise: tuple[torch.Tensor, ...]  # per output: in x 1 x k x k
    ones: torch.Tensor  # 1 x in x 1 x 1
    bias: torch.Tensor  # out

    @classmethod
    def of(cls, conv: FoldedConv) -> DepthwiseSum:
        weight = conv.weight
        depthwise = tuple(w.unsqueeze(1).contiguous(memory_format=_format(weight)) for w in weight)
        ones = weight.new_ones(1, weight.shape[1], 1, 1).contiguous(memory_format=_format(weight))
        return cls(depthwise, ones, conv.bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.shape[1]
        outputs = [fused_conv(F.conv2d(x, w, None, groups=groups), self.ones, self.bias[o:o + 1])
                   for o, w in enumerate(self.depthwise)]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)


#: Convolutions with at most this many outputs run as :class:`DepthwiseSum`.
DEPTHWISE_MAX_OUTPUTS = 4


def _head(conv: FoldedConv) -> FoldedConv | DepthwiseSum:
    return DepthwiseSum.of(conv) if conv.weight.shape[0] <= DEPTHWISE_MAX_OUTPUTS and conv.stride == 1 \
        and conv.padding == 0 else conv


def _fold(group: nn.Module) -> FoldedConv:
    """A ``conv``/``norm`` group (conv_norm_relu, stem, upsample_conv_norm_relu, output_head) as one FoldedConv."""
    conv = group.conv
    weight, bias = fold_batchnorm(conv, getattr(group, "norm", None))
    return FoldedConv(weight, bias, conv.stride[0], conv.padding[0])


def _fold_block(block: ResnetBlock) -> tuple[FoldedConv, FoldedConv]:
    return tuple(FoldedConv(*fold_batchnorm(conv, norm)) for conv, norm in ((block.conv1, block.norm1),
                                                                             (block.conv2, block.norm2)))


def _stacked(first: FoldedConv, second: FoldedConv) -> FoldedConv:
    """Two convolutions over the same input as one with both outputs, ``first``'s channels first."""
    return FoldedConv(torch.cat([first.weight, second.weight]), torch.cat([first.bias, second.bias]))


def can_fold(generator: nn.Module) -> bool:
    """Whether ``generator`` is a :class:`Generator` whose norms are all BatchNorm (foldable)."""
    if not isinstance(generator, Generator):
        return False
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    return all(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None for m in norms)


class FoldedGenerator:
    """Eval-mode :class:`Generator` computation with folded weights (module docstring). Same inputs and outputs as
    the generator's ``forward`` / ``forward_with_error``: B x C x H x W in [-1, 1], H and W multiples of 4."""

    def __init__(self, generator: Generator) -> None:
        if not can_fold(generator):
            raise ValueError("FoldedGenerator needs a generator whose norms are all BatchNorm")
        self.generator = generator
        self.motion_is_background = generator.motion_uses_background_feature
        self.encoders = {name: tuple(_fold(getattr(encoder, part)) for part in ("stem", "down1", "down2"))
                         for name, encoder in (("image", generator.image_encoder),
                                               ("background", generator.background_encoder),
                                               ("segmentation", generator.segmentation_encoder),
                                               ("motion", generator.motion_encoder))}
        selectors = [_fold(generator.selector_background), _fold(generator.selector_segmentation),
                     _fold(generator.selector_motion)]
        combinator = _fold(generator.combinator)
        if self.motion_is_background:
            # both the background and the motion selector read cat(image, background features): one convolution,
            # whose outputs come in the order (background, motion); the combinator's columns follow that order
            self.selectors = (_stacked(selectors[0], selectors[2]), selectors[1])
            width = combinator.weight.shape[1] - 3 * selectors[0].weight.shape[0]
            parts = combinator.weight.split([width] + [selectors[0].weight.shape[0]] * 3, dim=1)
            weight = torch.cat([parts[0], parts[1], parts[3], parts[2]], dim=1)
            combinator = FoldedConv(weight.contiguous(memory_format=_format(combinator.weight)), combinator.bias)
        else:
            self.selectors = tuple(selectors)
        self.combinator = combinator
        self.shared = [_fold_block(b) for b in generator.shared_blocks]
        alpha, foreground = generator.alpha_decoder, generator.foreground_decoder
        self.alpha_blocks = [_fold_block(b) for b in alpha.blocks]
        self.alpha_up = (_fold(alpha.up1), _fold(alpha.up2))
        self.alpha_head = _head(_fold(alpha.head))
        self.foreground_blocks = [_fold_block(b) for b in foreground.blocks]
        self.foreground_up = (_fold(foreground.up1), _fold(foreground.up2))
        self.foreground_head = _head(_fold(foreground.head))
        self.error_head = _fold(generator.error_head) if generator.error_head is not None else None
        self._plate: tuple[torch.Tensor, torch.Tensor] | None = None  # (background input, its features)

    # ------------------------------------------------------------------------------------------------ pieces
    def _encode(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(half-resolution features, quarter-resolution features) of one encoder."""
        stem, down1, down2 = self.encoders[name]
        half = down1(stem(reflect_pad(x, 3), relu=True), relu=True)
        return half, down2(half, relu=True)

    def _plate_features(self, background: torch.Tensor) -> torch.Tensor:
        """The background encoder's features, reused while the background input stays the same (a fixed camera's
        plate is one array for the whole clip): an equality test at the base's size instead of an encoder."""
        if self._plate is not None and self._plate[0].shape == background.shape \
                and self._plate[0].dtype == background.dtype and torch.equal(self._plate[0], background):
            return self._plate[1]
        features = self._encode("background", background)[1]
        self._plate = (background.clone(), features)
        return features

    @staticmethod
    def _blocks(x: torch.Tensor, blocks: list[tuple[FoldedConv, FoldedConv]]) -> torch.Tensor:
        for conv1, conv2 in blocks:
            x = conv2(reflect_pad(conv1(reflect_pad(x, 1), relu=True), 1), residual=x)
        return x

    @staticmethod
    def _up(x: torch.Tensor, conv: FoldedConv) -> torch.Tensor:
        """x2 bilinear upsampling (align_corners=True, as the generator's) then the folded conv and ReLU."""
        return conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True), relu=True)

    def _shared(self, image, background, segmentation, motion) -> tuple[torch.Tensor, torch.Tensor]:
        """(shared features B x 4·ngf x H/4 x W/4, image half-resolution features)."""
        self.generator._check_inputs(image, background, segmentation, motion)
        image_half, image_feat = self._encode("image", image)
        background_feat = self._plate_features(background)
        segmentation_feat = self._encode("segmentation", segmentation)[1]
        if self.motion_is_background:
            selector_bm, selector_s = self.selectors
            selected = [selector_bm(torch.cat([image_feat, background_feat], 1), relu=True),
                        selector_s(torch.cat([image_feat, segmentation_feat], 1), relu=True)]
        else:
            motion_feat = self._encode("motion", motion)[1]
            selected = [selector(torch.cat([image_feat, cue], 1), relu=True)
                        for selector, cue in zip(self.selectors, (background_feat, segmentation_feat, motion_feat))]
        shared = self.combinator(torch.cat([image_feat, *selected], 1), relu=True)
        return self._blocks(shared, self.shared), image_half

    def _features(self, image, background, segmentation, motion) -> tuple[torch.Tensor, torch.Tensor]:
        """The two decoders' last full-resolution features (alpha's, foreground's), B x ngf x H x W each."""
        shared, image_half = self._shared(image, background, segmentation, motion)
        alpha = self._blocks(shared, self.alpha_blocks)
        alpha = self._up(self._up(alpha, self.alpha_up[0]), self.alpha_up[1])
        foreground = self._up(self._blocks(shared, self.foreground_blocks), self.foreground_up[0])
        foreground = self._up(torch.cat([foreground, image_half], 1), self.foreground_up[1])
        return alpha, foreground

    # ------------------------------------------------------------------------------------------------ API
    def forward(self, image, background, segmentation, motion) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`Generator.forward`: (alpha_raw B x 1 x H x W in [-1, 1], foreground_raw B x 3 x H x W)."""
        alpha, foreground = self._features(image, background, segmentation, motion)
        return torch.tanh(self.alpha_head(reflect_pad(alpha, 3))), self.foreground_head(reflect_pad(foreground, 3))

    def forward_with_error(self, image, background, segmentation, motion) -> GeneratorOutputs:
        """As :meth:`Generator.forward_with_error` (needs the refine head)."""
        if self.error_head is None:
            raise ValueError("Generator.forward_with_error needs a generator built with refine_head=True")
        alpha, foreground = self._features(image, background, segmentation, motion)
        extra = self.error_head(reflect_pad(torch.cat([alpha, foreground], 1), 1))
        return GeneratorOutputs(
            alpha_raw=torch.tanh(self.alpha_head(reflect_pad(alpha, 3))),
            foreground_raw=self.foreground_head(reflect_pad(foreground, 3)),
            error=torch.sigmoid(extra[:, :1]),
            hidden=torch.relu(extra[:, 1:]),
        )


def _format(weight: torch.Tensor) -> torch.memory_format:
    channels_last = weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last and not weight.is_contiguous() else torch.contiguous_format


def _weights_key(generator: Generator) -> tuple:
    """Identity of every parameter and buffer as it is now (storage and in-place version): changes when the
    weights are loaded, trained, moved or converted."""
    return tuple((t.data_ptr(), t._version, t.dtype) for t in chain(generator.parameters(), generator.buffers()))


def folded_generator(generator: Generator) -> FoldedGenerator:
    """The :class:`FoldedGenerator` of ``generator``'s current weights: built once and kept on the generator (as a
    plain attribute, not a module or buffer) until a parameter or buffer changes."""
    key = _weights_key(generator)
    cached = generator.__dict__.get("_folded_cache")
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, FoldedGenerator(generator))
        generator.__dict__["_folded_cache"] = cached
    return cached[1]
