"""The one place where images move between image space [0, 1] and network space [-1, 1].

The original network takes and returns tensors in [-1, 1]; everything outside the network
(data, metrics, files) is float in [0, 1].
"""
from __future__ import annotations

import torch


def to_network(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] (any shape)."""
    return x * 2.0 - 1.0


def from_network(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (any shape). No clamping: callers clamp where the value must be a valid image."""
    return (x + 1.0) * 0.5
