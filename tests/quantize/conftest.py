"""Tiny models and data shared by the quantization tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepshrink.data.dataset import ArrayDataset


def tiny_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 6 * 6, 20),
        nn.ReLU(),
        nn.Linear(20, 3),
    )


@pytest.fixture
def cnn() -> nn.Sequential:
    return tiny_cnn()


@pytest.fixture
def images() -> ArrayDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 8, 8, generator=generator)
    y = (x.mean((1, 2, 3)) * 30).long() % 3
    return ArrayDataset(x, y)


def distinct_nonzeros(weight: torch.Tensor) -> int:
    return len(weight[weight != 0].unique())
