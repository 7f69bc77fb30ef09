"""Fixtures of the ``auto`` tests: a trained digits_mlp, and a clock that only moves
when a stubbed call runs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import deepshrink as ds


class Ticks:
    """A clock (seconds) that moves only by the cost of the stubbed calls that ran."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def cost(self, seconds: float) -> Callable[[], None]:
        """A call that 'takes' ``seconds``."""

        def run() -> None:
            self.now += seconds

        return run


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture(scope="session")
def trained() -> tuple[torch.nn.Module, object]:
    """digits_mlp trained to ~99 % on digits (the tests never change it). Seeded, so that it is
    the same model whichever tests ran before it in the worker; trained well, because a barely
    trained model (one epoch, ~60 %) moves by 5-25 pp in a one-epoch fine-tune and makes
    accuracy-drop budgets a coin toss."""
    torch.manual_seed(0)
    data = ds.data.load("digits")
    model = ds.zoo.create("digits_mlp")
    ds.fit(model, data, epochs=8, batch_size=64, progress=False)
    return model, data
