"""The Background Matting networks and their checkpoints.

``Generator`` (Context Switching Block generator), ``MultiscaleDiscriminator`` (pix2pixHD PatchGAN),
``matte_from_raw`` (raw outputs -> alpha and foreground in [0, 1]), ``MattingModel`` (the image-space
wrapper every caller uses), and loaders that read our checkpoints
and the original release's state dicts.
"""
from __future__ import annotations

from bgmatting.models.blocks import init_weights
from bgmatting.models.checkpoints import (
    CheckpointError,
    load_discriminator,
    load_generator,
    load_matting_model,
    original_to_ours,
    ours_to_original,
)
from bgmatting.models.discriminator import MultiscaleDiscriminator
from bgmatting.models.generator import Generator, matte_from_raw
from bgmatting.models.matting import MattingModel, RawMatte, pad_to_multiple

__all__ = [
    "CheckpointError",
    "Generator",
    "MattingModel",
    "RawMatte",
    "MultiscaleDiscriminator",
    "init_weights",
    "load_discriminator",
    "load_generator",
    "load_matting_model",
    "matte_from_raw",
    "original_to_ours",
    "ours_to_original",
    "pad_to_multiple",
]
