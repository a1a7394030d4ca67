"""Tiny networks and inputs shared by the model tests."""
from __future__ import annotations

import pytest
import torch

from bgmatting.models import Generator

TINY = dict(ngf=8, nf_part=8, n_blocks1=1, n_blocks2=1)


def _make_inputs(batch: int, height: int, width: int, motion_frames: int = 4, seed: int = 0) -> list[torch.Tensor]:
    """(image, background, segmentation, motion) in network space [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, c, height, width, generator=g) * 2 - 1 for c in (3, 3, 1, motion_frames)]


@pytest.fixture
def make_inputs():
    """Factory: make_inputs(batch, height, width, motion_frames=4, seed=0) -> [I, B', S, M] in [-1, 1]."""
    return _make_inputs


@pytest.fixture
def tiny_config() -> dict:
    return dict(TINY)


@pytest.fixture
def tiny_generator() -> Generator:
    return Generator(**TINY)
