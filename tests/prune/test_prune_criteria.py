"""Contract tests over every registered criterion, and the meaning of the built-in ones."""

from __future__ import annotations

import pytest
import torch

from deepshrink.errors import UnknownNameError
from deepshrink.prune.criteria import CRITERIA, score

WEIGHT = torch.randn(6, 5, 3, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", CRITERIA.names())
@pytest.mark.parametrize("dims", [(), (1,), (1, 2), (0,)])
def test_every_criterion_gives_finite_scores_of_the_reduced_shape(name, dims) -> None:
    scores = score(name, WEIGHT, dims, torch.Generator().manual_seed(0))
    expected = [s for i, s in enumerate(WEIGHT.shape) if i not in dims]
    assert list(scores.shape) == expected
    assert torch.isfinite(scores).all() and (scores >= 0).all()
    assert not scores.requires_grad


@pytest.mark.parametrize("name", CRITERIA.names())
def test_every_criterion_is_deterministic_for_a_seed(name) -> None:
    first = score(name, WEIGHT, (), torch.Generator().manual_seed(5))
    again = score(name, WEIGHT, (), torch.Generator().manual_seed(5))
    assert torch.equal(first, again)


def test_builtin_criteria() -> None:
    w = torch.tensor([[3.0, -4.0], [-1.0, 0.0]])
    assert torch.equal(score("magnitude", w), w.abs())
    assert torch.equal(score("l2", w), w.abs())
    assert torch.equal(score("l1", w, (1,)), torch.tensor([7.0, 1.0]))
    assert torch.equal(score("magnitude", w, (1,)), torch.tensor([7.0, 1.0]))
    assert torch.equal(score("l2", w, (1,)), torch.tensor([5.0, 1.0]))
    random = score("random", w, (), torch.Generator().manual_seed(0))
    assert ((random >= 0) & (random < 1)).all()


def test_unknown_criterion_suggests_a_name() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'magnitude'"):
        score("magnitud", WEIGHT)
