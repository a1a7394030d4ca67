"""``MattingModel``: the one way to run a matting network on images.

Image-space tensors in [0, 1] go in, alpha and foreground in [0, 1] come out. The model owns everything
between: the conversion to the network space [-1, 1] (:mod:`bgmatting.space`), padding to the network's
size multiple, the memory format and autocast of a :class:`bgmatting.runtime.Precision`, and the original's
rule F = I where alpha > 0.975. Training stages ask for the raw network-space outputs (``raw=True``) to
compute their losses; evaluation, inference, export and benchmarks take the matte.
"""
from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bgmatting.models.generator import Generator, matte_from_raw
from bgmatting.runtime import Precision
from bgmatting.space import to_network

#: H and W of the network input must be multiples of this (two stride-2 convolutions).
SIZE_MULTIPLE = 4


class RawMatte(NamedTuple):
    """Network-space outputs for losses (B x C x H x W at the input's size).

    ``alpha``: B x 1 in [-1, 1] (tanh). ``foreground``: B x 3, roughly [-1, 1] but unbounded, *before* the
    F = I rule (losses apply it where they need it). ``image``: the network-space input image B x 3.
    """

    alpha: torch.Tensor
    foreground: torch.Tensor
    image: torch.Tensor


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """Replicate-pad B x C x H x W at the bottom and right to multiples of ``multiple`` (unchanged if already)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return x if ph == pw == 0 else F.pad(x, (0, pw, 0, ph), mode="replicate")


class MattingModel(nn.Module):
    """A Background Matting generator in image space.

    ``forward(image, background, segmentation, motion)`` takes B x 3, B x 3, B x 1 and B x M x H x W float
    tensors in [0, 1] (the captured background B' aligned to the image, the post-processed soft segmentation
    S, M grayscale motion frames) at any H x W, and returns ``(alpha B x 1, foreground B x 3)`` in [0, 1] at
    the same size, with F = I where alpha > 0.975. ``raw=True`` returns a :class:`RawMatte` instead.

    Args:
        generator: a :class:`bgmatting.models.Generator` (network space [-1, 1]).
        precision: optional :class:`bgmatting.runtime.Precision`; see :meth:`set_precision`.
    """

    def __init__(self, generator: Generator, precision: Precision | None = None) -> None:
        super().__init__()
        self.generator = generator
        self.precision: Precision | None = None
        if precision is not None:
            self.set_precision(precision)

    @property
    def motion_frames(self) -> int:
        return self.generator.motion_frames

    @property
    def uses_motion(self) -> bool:
        """False with the original's wiring, where the motion cues cannot change the output."""
        return not self.generator.motion_uses_background_feature

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments of the networks, e.g. ``{"generator": {...}}``."""
        return {"generator": self.generator.config}

    def checkpoint_state(self) -> dict[str, Any]:
        """The checkpoint entries of the networks: ``generator`` (state dict, no wrapper prefix) and
        ``model_config`` (its constructor arguments), the keys :func:`bgmatting.models.load_generator` reads."""
        return {"generator": self.generator.state_dict(), "model_config": self.generator.config}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Load the weights of :meth:`checkpoint_state` entries (strict: every key must match)."""
        self.generator.load_state_dict(state["generator"])

    def set_precision(self, precision: Precision | None) -> MattingModel:
        """Run in ``precision``: weights (and inputs) in its memory format, forward under its autocast."""
        self.precision = precision
        if precision is not None:
            precision.prepare_module(self)
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
        inputs = [self._network_input(x) for x in (image, background, segmentation, motion)]
        with self._autocast():
            alpha_raw, foreground_raw = self.generator(*inputs)
        alpha_raw = alpha_raw.float()[..., :height, :width]
        foreground_raw = foreground_raw.float()[..., :height, :width]
        image_net = inputs[0].float()[..., :height, :width]
        if raw:
            return RawMatte(alpha_raw, foreground_raw, image_net)
        return matte_from_raw(alpha_raw, foreground_raw, image_net)

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
