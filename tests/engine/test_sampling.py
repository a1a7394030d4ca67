"""Resumable data order and per-sample seeding."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bgmatting.engine.sampling import ResumableDistributedSampler, SampleError, SeededSamples, collate_skipping_none


def test_sampler_resumes_mid_epoch_and_partitions_ranks():
    data = list(range(10))
    full = ResumableDistributedSampler(data, num_replicas=1, rank=0, seed=3)
    full.set_epoch(2)
    order = list(full)
    assert sorted(i for _, i in order) == data and all(e == 2 for e, _ in order)
    resumed = ResumableDistributedSampler(data, num_replicas=1, rank=0, seed=3)
    resumed.set_epoch(2)
    resumed.set_start(4)
    assert list(resumed) == order[4:] and len(resumed) == 6
    resumed.set_epoch(3)  # a new epoch starts from its beginning
    assert len(list(resumed)) == 10
    ranks = [ResumableDistributedSampler(data, num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(2)
    assert sorted(i for s in ranks for _, i in s) == data


class GlobalRandom:
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return {"x": torch.tensor([np.random.rand(), torch.rand(1).item()])}


def test_seeded_samples_depend_only_on_seed_epoch_index():
    data = SeededSamples(GlobalRandom(), seed=5)
    a = data[(1, 2)]["x"]
    np.random.seed(123), torch.manual_seed(123)
    assert torch.equal(data[(1, 2)]["x"], a)
    assert not torch.equal(data[(2, 2)]["x"], a)
    assert not torch.equal(SeededSamples(GlobalRandom(), seed=6)[(1, 2)]["x"], a)
    # the caller's global RNG is left untouched
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    data[(0, 0)]
    assert torch.equal(torch.rand(1), expected)


class Broken:
    def __len__(self):
        return 3

    def __getitem__(self, index):
        if index == 1:
            raise OSError("/data/fg/0001.png: cannot decode image")
        return {"x": torch.tensor([float(index)])}


def test_bad_sample_is_reported_with_its_path_or_skipped():
    with pytest.raises(SampleError, match=r"sample 1 .*0001\.png: cannot decode"):
        SeededSamples(Broken(), name="train")[(0, 1)]
    skipping = SeededSamples(Broken(), on_error="skip")
    batches = list(DataLoader(skipping, batch_size=3, collate_fn=collate_skipping_none))
    assert batches[0]["x"].flatten().tolist() == [0.0, 2.0]
    assert collate_skipping_none([None, None]) is None
