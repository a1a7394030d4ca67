"""The Context Switching Block generator of Background Matting ("ResnetConditionHR" in the public code).

Reading order follows the paper's figure: four encoders -> three selectors -> combinator and shared
residual blocks -> alpha and foreground decoders. All inputs and outputs are in network space [-1, 1]
(see :mod:`bgmatting.space`).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from bgmatting.models.blocks import (
    NormSpec,
    ResnetBlock,
    conv_norm_relu,
    init_weights,
    output_head,
    resolve_norm,
    stem,
    upsample_conv_norm_relu,
)
from bgmatting.space import from_network

# The original's rule: where alpha > 0.975 the predicted foreground is replaced by the image. It compares the
# raw tanh output with 0.95, which is the same threshold in network space: (0.95 + 1) / 2 = 0.975.
ALPHA_OPAQUE_RAW = 0.95


class Encoder(nn.Module):
    """Stem (RefPad 3, Conv 7x7) then two stride-2 Conv 3x3, each with norm and ReLU.

    B x in_channels x H x W -> B x 4·ngf x H/4 x W/4 (``features`` also returns the 2·ngf x H/2 x W/2 map).
    """

    def __init__(self, in_channels: int, ngf: int, norm: NormSpec) -> None:
        super().__init__()
        norm = resolve_norm(norm)
        self.stem = stem(in_channels, ngf, norm)
        self.down1 = conv_norm_relu(ngf, 2 * ngf, 3, norm, stride=2, padding=1)
        self.down2 = conv_norm_relu(2 * ngf, 4 * ngf, 3, norm, stride=2, padding=1)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(half-resolution map, quarter-resolution map)."""
        half = self.down1(self.stem(x))
        return half, self.down2(half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down2(self.down1(self.stem(x)))


class AlphaDecoder(nn.Module):
    """Residual blocks, two x2 upsampling steps (4·ngf -> 2·ngf -> ngf), RefPad 3 + Conv 7x7 -> 1, tanh.

    B x 4·ngf x H/4 x W/4 -> B x 1 x H x W in [-1, 1].
    """

    def __init__(self, ngf: int, n_blocks: int, norm: NormSpec) -> None:
        super().__init__()
        norm = resolve_norm(norm)
        self.blocks = nn.Sequential(*(ResnetBlock(4 * ngf, norm) for _ in range(n_blocks)))
        self.up1 = upsample_conv_norm_relu(4 * ngf, 2 * ngf, norm)
        self.up2 = upsample_conv_norm_relu(2 * ngf, ngf, norm)
        self.head = output_head(ngf, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last features before the head: B x ngf x H x W."""
        return self.up2(self.up1(self.blocks(x)))

    def output(self, features: torch.Tensor) -> torch.Tensor:
        """Head and tanh on :meth:`features`' result -> B x 1 x H x W in [-1, 1]."""
        return torch.tanh(self.head(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x))


class ForegroundDecoder(nn.Module):
    """Residual blocks, x2 upsampling to 2·ngf, concat with the image's half-resolution features (skip),
    x2 upsampling to ngf, RefPad 3 + Conv 7x7 -> 3, no activation (absolute F, not a residual).

    (B x 4·ngf x H/4 x W/4, B x 2·ngf x H/2 x W/2) -> B x 3 x H x W, roughly in [-1, 1] but unbounded.
    """

    def __init__(self, ngf: int, n_blocks: int, norm: NormSpec) -> None:
        super().__init__()
        norm = resolve_norm(norm)
        self.blocks = nn.Sequential(*(ResnetBlock(4 * ngf, norm) for _ in range(n_blocks)))
        self.up1 = upsample_conv_norm_relu(4 * ngf, 2 * ngf, norm)
        self.up2 = upsample_conv_norm_relu(4 * ngf, ngf, norm)
        self.head = output_head(ngf, 3)

    def features(self, x: torch.Tensor, image_half: torch.Tensor) -> torch.Tensor:
        """The last features before the head: B x ngf x H x W."""
        return self.up2(torch.cat([self.up1(self.blocks(x)), image_half], dim=1))

    def forward(self, x: torch.Tensor, image_half: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x, image_half))


class GeneratorOutputs(NamedTuple):
    """What :meth:`Generator.forward_with_error` returns (B x C x H x W at the generator's input size).

    ``alpha_raw``: B x 1 in [-1, 1]; ``foreground_raw``: B x 3, unbounded (as :meth:`Generator.forward`).
    ``error``: B x 1 in [0, 1] (sigmoid), the predicted |alpha - true alpha| in image units [0, 1].
    ``hidden``: B x ``refine_hidden`` features >= 0 (ReLU) for the refiner.
    """

    alpha_raw: torch.Tensor
    foreground_raw: torch.Tensor
    error: torch.Tensor
    hidden: torch.Tensor


class Generator(nn.Module):
    """Context Switching Block generator: (I, B', S, M) -> raw (alpha, F), everything in [-1, 1].

    Inputs (B x C x H x W, H and W multiples of 4, network space [-1, 1]): ``image`` I (3 ch), captured
    ``background`` B' (3), soft ``segmentation`` S (1), ``motion`` cues M (``motion_frames`` grayscale frames).
    Outputs: ``alpha_raw`` B x 1 x H x W in [-1, 1] (tanh) and ``foreground_raw`` B x 3 x H x W (no
    activation). :func:`matte_from_raw` turns them into alpha and F in [0, 1].

    Args:
        ngf: channels after the stem; the encoders reach 4·ngf channels at H/4.
        nf_part: channels of each selector output.
        n_blocks1: residual blocks shared by both decoders.
        n_blocks2: residual blocks in each decoder.
        motion_frames: channels of the motion input M.
        norm: ``"batch"`` (original), ``"sync_batch"``, ``"instance"`` or a factory ``channels -> module``.
        refine_head: add the head a :class:`bgmatting.models.Refiner` needs (module ``error_head``): a
            RefPad 1 + Conv 3x3 over the two decoders' last full-resolution features (2·ngf channels) giving an
            error map and ``refine_hidden`` hidden channels, read with :meth:`forward_with_error`. Off (the
            default), the generator has exactly the original's modules, state-dict keys, init draws and outputs,
            and ``config`` does not mention the head.
        refine_hidden: hidden channels of that head (BackgroundMattingV2 uses 32).
        motion_uses_background_feature: default **True**, the public code's behaviour: the motion
            selector receives cat(image features, *background* features) instead of the motion features
            (an author-confirmed bug). The released weights and every published number were produced this
            way, so True is the default that reproduces them. ``False`` is the paper's intended design
            (the motion selector sees the motion features).
            With True the motion encoder's output can never reach alpha or F, so ``forward`` does not run
            it at all: outputs, gradients and the other layers' BatchNorm statistics are identical to the
            original's, and one of the four encoders is saved (at 512 x 512: 779 instead of 805 GFLOP
            forward). Its parameters are kept, so checkpoints of both modes have the same keys, and frozen
            (``requires_grad=False``): they would never get a gradient anyway, and this keeps optimisers
            and DistributedDataParallel free of unused parameters. Its BatchNorm running statistics stay
            at their initial values (the original updates them, though they never affect the output).
        rng: optional torch.Generator for the initialisation; else torch's global RNG is used.

    The initialisation is the original's (see :func:`bgmatting.models.blocks.init_weights`).
    """

    def __init__(
        self,
        ngf: int = 64,
        nf_part: int = 64,
        n_blocks1: int = 7,
        n_blocks2: int = 3,
        motion_frames: int = 4,
        norm: NormSpec = "batch",
        motion_uses_background_feature: bool = True,
        refine_head: bool = False,
        refine_hidden: int = 16,
        rng: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if min(ngf, nf_part, motion_frames) < 1 or min(n_blocks1, n_blocks2, refine_hidden) < 0:
            raise ValueError(
                f"invalid generator size: ngf={ngf}, nf_part={nf_part}, motion_frames={motion_frames} must be >= 1; "
                f"n_blocks1={n_blocks1}, n_blocks2={n_blocks2}, refine_hidden={refine_hidden} must be >= 0"
            )
        self._config: dict[str, Any] = dict(
            ngf=ngf,
            nf_part=nf_part,
            n_blocks1=n_blocks1,
            n_blocks2=n_blocks2,
            motion_frames=motion_frames,
            norm=norm,
            motion_uses_background_feature=bool(motion_uses_background_feature),
        )
        if refine_head:
            self._config.update(refine_head=True, refine_hidden=refine_hidden)
        self.motion_frames = motion_frames
        self.motion_uses_background_feature = bool(motion_uses_background_feature)
        norm_layer = resolve_norm(norm)
        width = 4 * ngf  # channels at H/4

        # Encoders: image I (also gives the H/2 skip), background B', segmentation S, motion M.
        self.image_encoder = Encoder(3, ngf, norm_layer)
        self.background_encoder = Encoder(3, ngf, norm_layer)
        self.segmentation_encoder = Encoder(1, ngf, norm_layer)
        self.motion_encoder = Encoder(motion_frames, ngf, norm_layer)

        # Selectors: each looks at the image features next to one cue's features and keeps what is useful.
        self.selector_background = conv_norm_relu(2 * width, nf_part, 1, norm_layer, bias=False)
        self.selector_segmentation = conv_norm_relu(2 * width, nf_part, 1, norm_layer, bias=False)
        self.selector_motion = conv_norm_relu(2 * width, nf_part, 1, norm_layer, bias=False)

        # Combinator: image features + the three selections -> shared representation.
        self.combinator = conv_norm_relu(width + 3 * nf_part, width, 1, norm_layer, bias=False)
        self.shared_blocks = nn.Sequential(*(ResnetBlock(width, norm_layer) for _ in range(n_blocks1)))

        # Two decoders.
        self.alpha_decoder = AlphaDecoder(ngf, n_blocks2, norm_layer)
        self.foreground_decoder = ForegroundDecoder(ngf, n_blocks2, norm_layer)

        # Optional head for the refiner (registered last, so the original modules' init draws are unchanged).
        self.refine_hidden = refine_hidden if refine_head else 0
        self.error_head = output_head(2 * ngf, 1 + refine_hidden, kernel_size=3) if refine_head else None

        init_weights(self, rng)
        if self.motion_uses_background_feature:
            self.motion_encoder.requires_grad_(False)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (a copy), e.g. to store as ``model_config`` in a checkpoint."""
        return dict(self._config)

    @property
    def has_refine_head(self) -> bool:
        return self.error_head is not None

    def forward(
        self,
        image: torch.Tensor,
        background: torch.Tensor,
        segmentation: torch.Tensor,
        motion: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(I, B', S, M) in [-1, 1] -> (alpha_raw B x 1 x H x W in [-1, 1], foreground_raw B x 3 x H x W)."""
        shared, image_half = self._shared_features(image, background, segmentation, motion)
        return self.alpha_decoder(shared), self.foreground_decoder(shared, image_half)

    def forward_with_error(
        self,
        image: torch.Tensor,
        background: torch.Tensor,
        segmentation: torch.Tensor,
        motion: torch.Tensor,
    ) -> GeneratorOutputs:
        """:meth:`forward`'s outputs (bit-identical) plus the refine head's error map and hidden channels.

        Needs ``refine_head=True``. Inputs as :meth:`forward`; see :class:`GeneratorOutputs` for the outputs.
        """
        if self.error_head is None:
            raise ValueError("Generator.forward_with_error needs a generator built with refine_head=True")
        shared, image_half = self._shared_features(image, background, segmentation, motion)
        alpha_features = self.alpha_decoder.features(shared)
        foreground_features = self.foreground_decoder.features(shared, image_half)
        extra = self.error_head(torch.cat([alpha_features, foreground_features], dim=1))
        return GeneratorOutputs(
            alpha_raw=self.alpha_decoder.output(alpha_features),
            foreground_raw=self.foreground_decoder.head(foreground_features),
            error=torch.sigmoid(extra[:, :1]),
            hidden=torch.relu(extra[:, 1:]),
        )

    def _shared_features(
        self, image: torch.Tensor, background: torch.Tensor, segmentation: torch.Tensor, motion: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoders, selectors, combinator and shared blocks.

        Returns (shared features B x 4·ngf x H/4 x W/4, the image's half-resolution features B x 2·ngf x H/2 x W/2).
        """
        self._check_inputs(image, background, segmentation, motion)
        image_half, image_feat = self.image_encoder.features(image)
        background_feat = self.background_encoder(background)
        segmentation_feat = self.segmentation_encoder(segmentation)
        if self.motion_uses_background_feature:
            motion_feat = background_feat  # the original's wiring; the motion encoder's output would be unused
        else:
            motion_feat = self.motion_encoder(motion)

        selected = torch.cat(
            [
                self.selector_background(torch.cat([image_feat, background_feat], dim=1)),
                self.selector_segmentation(torch.cat([image_feat, segmentation_feat], dim=1)),
                self.selector_motion(torch.cat([image_feat, motion_feat], dim=1)),
            ],
            dim=1,
        )
        shared = self.shared_blocks(self.combinator(torch.cat([image_feat, selected], dim=1)))
        return shared, image_half

    def _check_inputs(
        self, image: torch.Tensor, background: torch.Tensor, segmentation: torch.Tensor, motion: torch.Tensor
    ) -> None:
        expected = {"image": 3, "background": 3, "segmentation": 1, "motion": self.motion_frames}
        given = {"image": image, "background": background, "segmentation": segmentation, "motion": motion}
        for name, tensor in given.items():
            if tensor.dim() != 4 or tensor.shape[1] != expected[name]:
                raise ValueError(
                    f"Generator: {name} must be B x {expected[name]} x H x W, got shape {tuple(tensor.shape)}"
                )
        batch, _, height, width = image.shape
        for name, tensor in given.items():
            if tensor.shape[0] != batch or tensor.shape[2:] != image.shape[2:]:
                raise ValueError(
                    f"Generator: {name} has shape {tuple(tensor.shape)}, but image is {tuple(image.shape)}; "
                    "batch size and H x W must match"
                )
        if height % 4 or width % 4:
            raise ValueError(f"Generator: H and W must be multiples of 4, got {height} x {width}")


def matte_from_raw(
    alpha_raw: torch.Tensor, foreground_raw: torch.Tensor, image_net: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw generator outputs -> (alpha B x 1 x H x W, foreground B x 3 x H x W), both in [0, 1].

    Applies the original's rule: where alpha > 0.975 the foreground is the input image itself
    (``image_net`` is the image in network space [-1, 1], B x 3 x H x W). Like the original, the test is
    made on the raw value (alpha_raw > 0.95, the same threshold in [-1, 1]).
    """
    opaque = alpha_raw > ALPHA_OPAQUE_RAW
    foreground = torch.where(opaque, image_net, foreground_raw)
    return from_network(alpha_raw).clamp(0.0, 1.0), from_network(foreground).clamp(0.0, 1.0)
