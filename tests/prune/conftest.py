"""Tiny models and data shared by the pruning tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from deepshrink.data.dataset import ArrayDataset


def tiny_mlp(activation: type[nn.Module] = nn.ReLU, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(16, 24),
        activation(),
        nn.Linear(24, 12),
        activation(),
        nn.Linear(12, 3),
    )


@pytest.fixture
def mlp() -> nn.Sequential:
    return tiny_mlp()


@pytest.fixture
def tiny_data() -> ArrayDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 4, 4, generator=generator)
    y = (x.flatten(1)[:, :3].argmax(1)).long()
    return ArrayDataset(x, y)


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and lose a lot on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
