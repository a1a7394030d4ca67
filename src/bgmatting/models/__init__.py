"""The Background Matting networks and their checkpoints.

``Generator`` (Context Switching Block generator), ``Refiner`` (full-resolution patch refiner),
``MultiscaleDiscriminator`` (pix2pixHD PatchGAN), ``matte_from_raw`` (raw outputs -> alpha and foreground
in [0, 1]), ``MattingModel`` (the image-space wrapper every caller uses, optionally base + refiner), and
loaders that read our checkpoints and the original release's state dicts.
"""
from __future__ import annotations

from bgmatting.models.blocks import init_weights
from bgmatting.models.checkpoints import (
    CheckpointError,
    load_discriminator,
    load_generator,
    load_matting_model,
    load_refiner,
    original_to_ours,
    ours_to_original,
)
from bgmatting.models.discriminator import MultiscaleDiscriminator
from bgmatting.models.generator import Generator, GeneratorOutputs, matte_from_raw
from bgmatting.models.matting import MattingModel, NonFiniteOutputError, RawMatte, pad_to_multiple, to_base_resolution
from bgmatting.models.refiner import Refiner, RefinerOutputs

__all__ = [
    "CheckpointError",
    "Generator",
    "GeneratorOutputs",
    "MattingModel",
    "RawMatte",
    "Refiner",
    "RefinerOutputs",
    "MultiscaleDiscriminator",
    "NonFiniteOutputError",
    "init_weights",
    "load_discriminator",
    "load_generator",
    "load_matting_model",
    "load_refiner",
    "matte_from_raw",
    "original_to_ours",
    "ours_to_original",
    "pad_to_multiple",
    "to_base_resolution",
]
