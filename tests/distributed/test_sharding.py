"""Each rank's share of the global batches, and refusals, checked in one process (no group)."""

from __future__ import annotations

import pytest
import torch

from deepshrink.data.dataset import ArrayDataset
from deepshrink.data.transforms import RandomCropPad
from deepshrink.errors import ConfigError
from deepshrink.train.batches import train_batches
from deepshrink.train.distributed import World, join, synced_range, timeout_seconds


def _dataset(size: int, shift: int = 0) -> ArrayDataset:
    images = torch.arange(size * 16, dtype=torch.uint8).reshape(size, 1, 4, 4)
    data = ArrayDataset(images, torch.arange(size) % 3)
    if shift:
        data.transform = RandomCropPad(4, shift)
    return data


@pytest.mark.parametrize(("size", "shift"), [(70, 0), (70, 1), (5, 0)])
def test_ranks_together_see_the_single_process_batches(size: int, shift: int) -> None:
    data, processes, per_rank = _dataset(size, shift), 2, 8
    single = list(train_batches(data, per_rank * processes, torch.Generator().manual_seed(3)))
    ranks = [
        list(train_batches(data, per_rank, torch.Generator().manual_seed(3), World(r, 2)))
        for r in range(processes)
    ]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for whole, *parts in zip(single, *ranks, strict=True):
        assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])  # augmented alike too
        assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])


def test_a_dataset_smaller_than_the_world_is_refused() -> None:
    with pytest.raises(ConfigError, match="holds 2 samples, too few .* 3 processes"):
        list(train_batches(_dataset(2), 4, torch.Generator(), World(0, 3)))


def test_distributed_true_outside_torchrun_says_how_to_launch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="torchrun --nproc_per_node N"):
        join(True)
    assert join(None) is None and join(False) is None


def test_the_timeout_variable_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSHRINK_DIST_TIMEOUT", "90")
    assert timeout_seconds() == 90
    monkeypatch.setenv("DEEPSHRINK_DIST_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="DEEPSHRINK_DIST_TIMEOUT='soon': must be a number"):
        timeout_seconds()


def test_ranges_are_left_alone_outside_data_parallel_training() -> None:
    low, high = torch.tensor([-1.0]), torch.tensor([2.0])
    assert synced_range(low, high) == (low, high)


def test_any_map_dataset_is_shared_out_like_the_single_process_loader() -> None:
    data = torch.utils.data.TensorDataset(torch.arange(40.0).reshape(20, 2), torch.arange(20))
    single = list(train_batches(data, 8, torch.Generator().manual_seed(5)))
    ranks = [list(train_batches(data, 4, torch.Generator().manual_seed(5), World(r, 2)))
             for r in range(2)]  # fmt: skip
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 2
    for whole, *parts in zip(single, *ranks, strict=True):
        assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])
