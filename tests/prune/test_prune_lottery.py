"""Lottery tickets: rewinding restores the stored weights with the mask applied."""

from __future__ import annotations

import pytest
import torch

from deepshrink.errors import ConfigError
from deepshrink.prune import MagnitudePruning, iter_masks, lottery_ticket, prune_, rewind_
from deepshrink.prune.lottery import snapshot


def test_rewinding_to_init_gives_initial_weights_times_the_mask(mlp, tiny_data) -> None:
    initial = snapshot(mlp)
    ticket = lottery_ticket(
        mlp, tiny_data, MagnitudePruning(sparsity=0.8), rounds=2,
        train={"epochs": 1, "batch_size": 16, "lr": 0.1},
    )  # fmt: skip
    assert ticket.rewind_state is not None
    assert all(torch.equal(initial[k], v) for k, v in ticket.rewind_state.items())
    # rewind once more: exactly the stored initial values where the mask keeps, zero elsewhere
    rewind_(mlp, ticket.rewind_state)
    for module_name, module, name, mask in iter_masks(mlp):
        start = initial[f"{module_name}.{name}"]
        assert torch.equal(getattr(module, name), start * mask)
    expected = [0.0, 1 - 0.2**0.5, 0.8]  # each round keeps the same share
    assert [r.sparsity for r in ticket.rounds] == pytest.approx(expected, abs=0.005)


def test_without_training_the_ticket_is_the_pruned_initialisation(mlp, tiny_data) -> None:
    initial = snapshot(mlp)
    lottery_ticket(mlp, tiny_data, MagnitudePruning(sparsity=0.5), rounds=1, train={"epochs": 0})
    for module_name, module, name, mask in iter_masks(mlp):
        start = initial[f"{module_name}.{name}"]
        assert torch.equal(getattr(module, name), start * mask)
        assert torch.equal(
            mask, start.abs() >= start.abs().flatten().sort().values[start.numel() // 2]
        )


def test_rewind_to_an_epoch_and_lr_rewinding(mlp, tiny_data) -> None:
    train = {"epochs": 2, "batch_size": 16}
    ticket = lottery_ticket(
        mlp, tiny_data, MagnitudePruning(sparsity=0.5), rounds=1, train=train,
        rewind="epoch", rewind_epoch=1,
    )  # fmt: skip
    assert ticket.rewind_state is not None
    assert not torch.equal(ticket.rewind_state["1.weight"], snapshot(mlp)["1.weight"])
    other = type(mlp)(*[m for m in mlp])  # same modules; LR rewinding keeps trained weights
    ticket = lottery_ticket(
        other, tiny_data, MagnitudePruning(sparsity=0.75), rounds=1, train=train,
        rewind="lr", rewind_epoch=1,
    )  # fmt: skip
    assert ticket.rewind_state is None
    assert ticket.rounds[-1].sparsity == pytest.approx(0.75, abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rewind": "start"}, "rewind must be 'init', 'epoch' or 'lr'"),
        ({"rewind": "init", "rewind_epoch": 1}, "rewind='init' rewinds to epoch 0"),
        ({"rewind": "epoch", "rewind_epoch": 5}, r"rewind_epoch must be in \[0, epochs=2\)"),
        ({"rounds": 0}, "rounds must be a positive number"),
    ],
)
def test_bad_lottery_settings(mlp, tiny_data, kwargs, message) -> None:
    settings = {"rounds": 1, **kwargs}
    with pytest.raises(ConfigError, match=message):
        lottery_ticket(
            mlp, tiny_data, MagnitudePruning(sparsity=0.5), train={"epochs": 2}, **settings
        )


def test_rewind_refuses_unknown_tensors(mlp) -> None:
    prune_(mlp, MagnitudePruning(sparsity=0.5))
    with pytest.raises(ConfigError, match="no tensors"):
        rewind_(mlp, {"9.weight": torch.zeros(1)})
