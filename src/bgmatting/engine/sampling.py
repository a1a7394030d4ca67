"""Resumable, seeded data order for training.

* :class:`ResumableDistributedSampler` is torch's ``DistributedSampler`` (the same per-epoch shuffle and
  rank partition, so DDP behaves as usual) that can start mid-epoch and yields ``(epoch, index)`` keys.
* :class:`SeededSamples` wraps a dataset so that the random augmentation of a sample depends only on
  ``(seed, epoch, index)``: the dataset's ``set_epoch`` is called when it has one (datasets of
  ``bgmatting.data`` seed themselves from (seed, epoch, index)), and python, numpy and torch global RNGs
  are seeded for that one call and restored afterwards (for datasets that use them). Augmentation therefore does not depend on worker count, order, or where a run was resumed.
  It also names the failing sample when a dataset raises, or skips it when asked (``on_error="skip"``).

Together they make a resumed run see exactly the batches the uninterrupted run would have seen.
"""
from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, default_collate

log = logging.getLogger(__name__)


class SampleError(RuntimeError):
    """Loading one sample failed; the message names the sample and the underlying problem (file, reason)."""


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` yielding ``(epoch, index)``, able to skip the first ``start`` samples of an epoch."""

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples (of this rank) of the current epoch; reset by :meth:`set_epoch`."""
        if start < 0:
            raise ValueError("start must be >= 0")
        self.start = start

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.start = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self.start :]
        return iter([(self.epoch, int(i)) for i in indices])

    def __len__(self) -> int:
        return max(0, super().__len__() - self.start)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed derived from (seed, epoch, index) with numpy's SeedSequence (well mixed, stable)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_global_rngs(seed: int):
    """Seed python/numpy/torch global RNGs for the block, then restore their previous states."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class SeededSamples(Dataset):
    """Dataset wrapper taking ``(epoch, index)`` keys (plain integers mean epoch 0).

    ``on_error``: ``"raise"`` re-raises a failing sample as :class:`SampleError` naming index and cause;
    ``"skip"`` logs it and returns None (drop it with :func:`collate_skipping_none`).
    """

    def __init__(self, dataset: Dataset, seed: int = 0, on_error: str = "raise", name: str = "dataset"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.dataset = dataset
        self.seed = seed
        self.on_error = on_error
        self.name = name

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, int(key))
        if hasattr(self.dataset, "set_epoch") and getattr(self.dataset, "epoch", None) != epoch:
            self.dataset.set_epoch(epoch)  # datasets that seed themselves from (seed, epoch, index)
        try:
            with seeded_global_rngs(sample_seed(self.seed, epoch, index)):
                return self.dataset[index]
        except Exception as exc:  # noqa: BLE001 - reported with the sample's identity
            message = f"{self.name}: sample {index} ({type(self.dataset).__name__}) failed: {exc}"
            if self.on_error == "skip":
                log.warning("skipping bad sample: %s", message)
                return None
            raise SampleError(message) from exc


def collate_skipping_none(samples: list):
    """Default collate after dropping samples that failed to load; None when nothing is left."""
    kept = [s for s in samples if s is not None]
    return default_collate(kept) if kept else None
