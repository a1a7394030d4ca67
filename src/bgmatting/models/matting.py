"""``MattingModel``: the one way to run a matting network on images.

Image-space tensors in [0, 1] go in, alpha and foreground in [0, 1] come out. The model owns everything
between: the conversion to the network space [-1, 1] (:mod:`bgmatting.space`), padding to the network's
size multiple, the memory format and autocast of a :class:`bgmatting.runtime.Precision`, and the original's
rule F = I where alpha > 0.975. Training stages ask for the raw network-space outputs (``raw=True``) to
compute their losses; evaluation, inference, export and benchmarks take the matte.

With a :class:`~bgmatting.models.refiner.Refiner` the generator (the *base*) runs on the inputs resized to a
lower resolution (:meth:`MattingModel.base_size`) and the refiner brings its outputs back to the full
resolution, refining the 4x4 patches its error map points at.
"""
from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bgmatting.models.blocks import resize_bilinear
from bgmatting.models.folded import can_fold, folded_generator
from bgmatting.models.generator import ALPHA_OPAQUE_RAW, Generator, matte_from_raw
from bgmatting.models.refiner import REFINE_MODES, Refiner
from bgmatting.runtime import Precision
from bgmatting.space import to_network

#: H and W of the network input must be multiples of this (two stride-2 convolutions).
SIZE_MULTIPLE = 4


class NonFiniteOutputError(ValueError):
    """A matting model produced NaN or infinite alpha or foreground; the message names the input (sample, frame).
    ``index``: the input's place in its batch, where the raiser knows it (0 otherwise)."""

    def __init__(self, message: str, index: int = 0) -> None:
        super().__init__(message)
        self.index = index


class RawMatte(NamedTuple):
    """Network-space outputs for losses (B x C x H x W at the input's size).

    ``alpha``: B x 1 in [-1, 1] (tanh). ``foreground``: B x 3, roughly [-1, 1] but unbounded, *before* the
    F = I rule (losses apply it where they need it). ``image``: the network-space input image B x 3.
    With a refiner these three are the refined full-resolution outputs, and the base's are added (else None),
    at the base resolution h x w (:meth:`MattingModel.base_size` of the frame padded to multiples of 4; the
    ground truth at that size is :func:`to_base_resolution`): ``coarse_alpha`` B x 1 in [-1, 1],
    ``coarse_foreground`` B x 3 (unbounded), ``coarse_image`` B x 3 in [-1, 1] (the base's input image),
    ``error`` B x 1 in [0, 1] (the predicted |coarse alpha - true alpha| in image units, regress it on that)
    and ``refined`` B x 1 x ceil(H/4) x ceil(W/4), 1.0 where a 4x4 patch was refined, else 0.0.
    """

    alpha: torch.Tensor
    foreground: torch.Tensor
    image: torch.Tensor
    coarse_alpha: torch.Tensor | None = None
    coarse_foreground: torch.Tensor | None = None
    coarse_image: torch.Tensor | None = None
    error: torch.Tensor | None = None
    refined: torch.Tensor | None = None

    def truth(self, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Targets for the full-resolution outputs: image-space B x C x H x W tensors in [0, 1] (true alpha,
        foreground, background ...) in network space [-1, 1]."""
        return tuple(to_network(x) for x in images)

    def coarse_truth(self, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Targets for the base's coarse outputs: image-space B x C x H x W tensors in [0, 1] brought to what the
        base saw (:meth:`at_base_resolution`), in network space [-1, 1]."""
        return tuple(to_network(x) for x in self.at_base_resolution(*images))

    def at_base_resolution(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Full-resolution B x C x H x W tensors (any value range) padded and resized as the base's input was
        (:func:`to_base_resolution`), to the size of ``coarse_alpha``; a model without a refiner has no base."""
        if self.coarse_alpha is None:
            raise ValueError("at_base_resolution: these outputs have no base (the model has no refiner)")
        size = tuple(self.coarse_alpha.shape[-2:])
        return tuple(to_base_resolution(x, size) for x in tensors)


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """Replicate-pad B x C x H x W at the bottom and right to multiples of ``multiple`` (unchanged if already)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return x if ph == pw == 0 else F.pad(x, (0, pw, 0, ph), mode="replicate")


def to_base_resolution(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """What the base of a refining :class:`MattingModel` sees of a full-resolution B x C x H x W tensor: padded
    like the network input (:func:`pad_to_multiple`), then resized bilinearly to ``size`` (h, w). Use it for
    the ground truth of the coarse outputs: ``to_base_resolution(alpha_true, raw.coarse_alpha.shape[-2:])``."""
    return resize_bilinear(pad_to_multiple(x), size)


class MattingModel(nn.Module):
    """A Background Matting generator in image space.

    ``forward(image, background, segmentation, motion)`` takes B x 3, B x 3, B x 1 and B x M x H x W float
    tensors in [0, 1] (the captured background B' aligned to the image, the post-processed soft segmentation
    S, M grayscale motion frames) at any H x W, and returns ``(alpha B x 1, foreground B x 3)`` in [0, 1] at
    the same size, with F = I where alpha > 0.975. ``raw=True`` returns a :class:`RawMatte` instead.

    Args:
        generator: a :class:`bgmatting.models.Generator` (network space [-1, 1]); with a refiner it must be
            built with ``refine_head=True`` and ``refine_hidden`` equal to the refiner's ``hidden_channels``.
        refiner: optional :class:`bgmatting.models.Refiner`. Without it the generator runs on the full frame
            as before: ``downsample_ratio`` must be None and the other refine options are kept but unused.
        precision: optional :class:`bgmatting.runtime.Precision`; see :meth:`set_precision`.
        downsample_ratio, base_long_side, refine_mode, refine_pixels, refine_threshold: how the refiner runs,
            see :meth:`set_refine_options`.
    """

    def __init__(
        self,
        generator: Generator,
        refiner: Refiner | None = None,
        *,
        precision: Precision | None = None,
        downsample_ratio: float | None = None,
        base_long_side: int = 512,
        refine_mode: str = "sampling",
        refine_pixels: int = 80_000,
        refine_threshold: float = 0.1,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.refiner = _checked_refiner(generator, refiner)
        if refiner is None and downsample_ratio is not None:
            raise ValueError("MattingModel: downsample_ratio needs a refiner (without one, the full frame is used)")
        self.set_refine_options(downsample_ratio, base_long_side, refine_mode, refine_pixels, refine_threshold)
        self.precision: Precision | None = None
        if precision is not None:
            self.set_precision(precision)
        self.fast_inference = False

    @property
    def motion_frames(self) -> int:
        return self.generator.motion_frames

    @property
    def uses_motion(self) -> bool:
        """False with the original's wiring, where the motion cues cannot change the output."""
        return not self.generator.motion_uses_background_feature

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments of the networks, e.g. ``{"generator": {...}}``; with a refiner also
        ``"refiner"`` (its constructor arguments) and ``"refine_options"`` (:attr:`refine_options`)."""
        config: dict[str, Any] = {"generator": self.generator.config}
        if self.refiner is not None:
            config.update(refiner=self.refiner.config, refine_options=self.refine_options)
        return config

    @property
    def refine_options(self) -> dict[str, Any]:
        """The :meth:`set_refine_options` arguments in force, as a dict (keyword names of the constructor)."""
        return dict(
            downsample_ratio=self.downsample_ratio,
            base_long_side=self.base_long_side,
            refine_mode=self.refine_mode,
            refine_pixels=self.refine_pixels,
            refine_threshold=self.refine_threshold,
        )

    def set_refine_options(
        self,
        downsample_ratio: float | None = None,
        base_long_side: int = 512,
        refine_mode: str = "sampling",
        refine_pixels: int = 80_000,
        refine_threshold: float = 0.1,
    ) -> MattingModel:
        """How a refining model runs (ignored without a refiner); may change between calls.

        Args:
            downsample_ratio: base resolution / full resolution, in (0, 1]; None: automatic, see :meth:`base_size`.
            base_long_side: the automatic rule's target for the base's longer side, in pixels (>= 4).
            refine_mode: ``full`` (every 4x4 patch), ``sampling`` (the highest-error patches, ``refine_pixels``
                full-resolution pixels per image) or ``thresholding`` (patches whose error > ``refine_threshold``).
            refine_pixels: the sampling budget (>= 0); a budget covering the frame runs mode ``full``.
            refine_threshold: the thresholding limit on the error map, in [0, 1].
        """
        if downsample_ratio is not None and not 0.0 < downsample_ratio <= 1.0:
            raise ValueError(f"downsample_ratio must be in (0, 1] or None (automatic), got {downsample_ratio}")
        if int(base_long_side) < SIZE_MULTIPLE:
            raise ValueError(f"base_long_side must be at least {SIZE_MULTIPLE}, got {base_long_side}")
        if refine_mode not in REFINE_MODES:
            raise ValueError(f"refine_mode must be one of {', '.join(REFINE_MODES)}, got {refine_mode!r}")
        if int(refine_pixels) < 0 or not 0.0 <= refine_threshold <= 1.0:
            raise ValueError(
                f"refine_pixels must be >= 0 and refine_threshold in [0, 1], got {refine_pixels} and {refine_threshold}"
            )
        self.downsample_ratio = None if downsample_ratio is None else float(downsample_ratio)
        self.base_long_side = int(base_long_side)
        self.refine_mode = refine_mode
        self.refine_pixels = int(refine_pixels)
        self.refine_threshold = float(refine_threshold)
        return self

    def base_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) the base runs at for a frame of ``height`` x ``width`` (already padded to multiples of 4).

        Each side times the ratio, rounded (halves up) to a multiple of 4, at least 4. The ratio is
        ``downsample_ratio``, or when None: min(1, base_long_side / longer side), so that frames up to
        ``base_long_side`` run the base at full resolution and larger ones at that long side
        (1920 x 1080 with 512 -> 288 x 512, about BackgroundMattingV2's 1/4 for HD).
        """
        ratio = self.downsample_ratio
        if ratio is None:
            ratio = min(1.0, self.base_long_side / max(height, width))
        multiple = SIZE_MULTIPLE
        return tuple(max(multiple, multiple * int(side * ratio / multiple + 0.5)) for side in (height, width))

    def checkpoint_state(self) -> dict[str, Any]:
        """The checkpoint entries of the networks: ``generator`` (state dict, no wrapper prefix) and
        ``model_config`` (its constructor arguments), the keys :func:`bgmatting.models.load_generator` reads;
        with a refiner also ``refiner`` (state dict), ``refiner_config`` and ``refine_options``, which
        :func:`bgmatting.models.load_matting_model` reads."""
        state = {"generator": self.generator.state_dict(), "model_config": self.generator.config}
        if self.refiner is not None:
            state.update(
                refiner=self.refiner.state_dict(),
                refiner_config=self.refiner.config,
                refine_options=self.refine_options,
            )
        return state

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Load the weights of :meth:`checkpoint_state` entries (strict: every key must match, and a refiner
        is in the entries exactly when this model has one)."""
        if (self.refiner is None) != ("refiner" not in state):
            raise ValueError(
                f"the checkpoint {'has a' if 'refiner' in state else 'has no'} refiner entry but the model "
                f"{'has a refiner' if self.refiner is not None else 'has none'}"
            )
        self.generator.load_state_dict(state["generator"])
        if self.refiner is not None:
            self.refiner.load_state_dict(state["refiner"])

    def set_precision(self, precision: Precision | None) -> MattingModel:
        """Run in ``precision``: weights (and inputs) in its memory format, forward under its autocast."""
        self.precision = precision
        if precision is not None:
            precision.prepare_module(self)
        return self

    def set_fast_inference(self, enabled: bool = True) -> MattingModel:
        """Take the inference fast path (:meth:`forward` without ``raw``, in eval mode, without gradient): BatchNorm
        folded into the convolutions (:mod:`bgmatting.models.folded`), the refiner on the selected patches' windows
        only (``Refiner(..., image_space=True)``), the outputs brought to [0, 1] in place. The same alpha and F within
        float rounding; off (the default), eval outputs are bit for bit the generator's. Training, ``raw=True`` and
        gradients never take it. Returns the model."""
        self.fast_inference = bool(enabled)
        return self

    def _autocast(self) -> contextlib.AbstractContextManager:
        return self.precision.autocast() if self.precision is not None else contextlib.nullcontext()

    def _network_input(self, x: torch.Tensor) -> torch.Tensor:
        x = to_network(pad_to_multiple(x))
        return self.precision.prepare_input(x) if self.precision is not None else x

    def forward(
        self,
        image: torch.Tensor,
        background: torch.Tensor,
        segmentation: torch.Tensor,
        motion: torch.Tensor,
        raw: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor] | RawMatte:
        """(I, B', S, M) in [0, 1] -> (alpha, F) in [0, 1], or a :class:`RawMatte` with ``raw=True``."""
        height, width = image.shape[-2:]
        if self.fast_inference and not raw and not self.training and not torch.is_grad_enabled():
            alpha, foreground = self._fast_matte(image, background, segmentation, motion)
            return alpha[..., :height, :width], foreground[..., :height, :width]
        inputs = [self._network_input(x) for x in (image, background, segmentation, motion)]
        with self._autocast():
            if self.refiner is None:
                alpha_raw, foreground_raw = self.generator(*inputs)
                coarse = {}
            else:
                alpha_raw, foreground_raw, coarse = self._refine(inputs)
        alpha_raw = alpha_raw.float()[..., :height, :width]
        foreground_raw = foreground_raw.float()[..., :height, :width]
        image_net = inputs[0].float()[..., :height, :width]
        if raw:
            return RawMatte(alpha_raw, foreground_raw, image_net, **coarse)
        return matte_from_raw(alpha_raw, foreground_raw, image_net)

    def _refine(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Base at :meth:`base_size`, refiner at the padded full resolution: (alpha_raw, foreground_raw, the
        coarse :class:`RawMatte` fields)."""
        size = self.base_size(*inputs[0].shape[-2:])
        small = [to_base_resolution(x, size) for x in inputs]
        base = self.generator.forward_with_error(*small)
        refined = self.refiner(
            inputs[0], inputs[1], base, self.refine_mode, self.refine_pixels, self.refine_threshold
        )
        coarse = dict(
            coarse_alpha=base.alpha_raw,
            coarse_foreground=base.foreground_raw,
            coarse_image=small[0],
            error=base.error,
            refined=refined.refined,
        )
        return refined.alpha_raw, refined.foreground_raw, {k: v.float() for k, v in coarse.items()}

    def _fast_matte(self, image: torch.Tensor, background: torch.Tensor, segmentation: torch.Tensor,
                    motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`set_fast_inference`'s path: (alpha B x 1, F B x 3) in [0, 1] at the padded size."""
        generator = folded_generator(self.generator) if can_fold(self.generator) else self.generator
        prepare = self.precision.prepare_input if self.precision is not None else (lambda x: x)
        with self._autocast():
            if self.refiner is None:
                inputs = [self._network_input(x) for x in (image, background, segmentation, motion)]
                alpha_raw, foreground_raw = generator.forward(*inputs)
                return matte_from_raw(alpha_raw.float(), foreground_raw.float(), inputs[0].float())
            frame = [prepare(pad_to_multiple(x)) for x in (image, background)]
            size = self.base_size(*frame[0].shape[-2:])
            small = [prepare(to_network(to_base_resolution(x, size))) for x in (image, background, segmentation)]
            if self.uses_motion:
                small.append(prepare(to_network(to_base_resolution(motion, size))))
            else:  # the original wiring never reads the motion cues: a zero tensor of the right shape, no memory
                small.append(small[2].new_zeros(1, 1, 1, 1).expand(image.shape[0], self.motion_frames, *size))
            base = generator.forward_with_error(*small)
            refined = self.refiner(*frame, base, self.refine_mode, self.refine_pixels, self.refine_threshold,
                                   image_space=True)
        return _image_space_matte(refined.alpha_raw.float(), refined.foreground_raw.float(), frame[0])

    @torch.inference_mode()
    def predict(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Matte a collated batch (``image``, ``background``, ``segmentation``, ``motion`` in [0, 1]) in eval
        mode on the model's device; returns float32 (alpha, F) there. The training mode is restored after."""
        device = next(self.parameters()).device
        inputs = [batch[key].to(device=device, dtype=torch.float32) for key in ("image", "background", "segmentation", "motion")]
        was_training = self.training
        self.eval()
        try:
            return self(*inputs)
        finally:
            self.train(was_training)


def _image_space_matte(alpha_raw: torch.Tensor, foreground_raw: torch.Tensor,
                       image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`matte_from_raw` in place on tensors the caller owns, F = I taken from the image-space ``image``
    (B x 3 x H x W in [0, 1]): (alpha B x 1, F B x 3) in [0, 1]."""
    opaque = alpha_raw > ALPHA_OPAQUE_RAW
    alpha = alpha_raw.add_(1.0).mul_(0.5).clamp_(0.0, 1.0)
    foreground = foreground_raw.add_(1.0).mul_(0.5).clamp_(0.0, 1.0)
    return alpha, torch.where(opaque, image.to(foreground.dtype), foreground, out=foreground)


def _checked_refiner(generator: Generator, refiner: Refiner | None) -> Refiner | None:
    """``refiner`` if it fits ``generator`` (a refine head with as many hidden channels), else a clear error."""
    if refiner is None:
        return None
    if not isinstance(refiner, Refiner):
        raise TypeError(f"MattingModel: refiner must be a Refiner or None, got {type(refiner).__name__}")
    if generator.refine_hidden != refiner.hidden_channels or not generator.has_refine_head:
        raise ValueError(
            "MattingModel: the refiner needs Generator(refine_head=True, "
            f"refine_hidden={refiner.hidden_channels}); the generator has "
            + (f"refine_hidden={generator.refine_hidden}" if generator.has_refine_head else "no refine head")
        )
    return refiner
