"""distillation_loss: the total loss in fit equals α·T²·KL + (1−α)·CE, computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.prune import distillation_loss
from deepshrink.train import StepContext


class Fixed(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def _softmax(values: list[float], t: float) -> list[float]:
    exps = [math.exp(v / t) for v in values]
    return [e / sum(exps) for e in exps]


def test_total_loss_matches_the_hand_computation() -> None:
    student = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    teacher = [[2.0, 1.0, 0.0], [0.5, 0.5, 2.0]]
    targets = [1, 2]
    t, alpha = 3.0, 0.7
    kl = 0.0
    ce = 0.0
    for s, te, y in zip(student, teacher, targets, strict=True):
        p, q = _softmax(te, t), _softmax(s, t)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
        ce += -math.log(_softmax(s, 1.0)[y])
    kl, ce = kl / 2, ce / 2
    expected = alpha * t * t * kl + (1 - alpha) * ce

    logits = torch.tensor(student, requires_grad=True)
    y = torch.tensor(targets)
    loss = nn.functional.cross_entropy(logits, y)
    context = StepContext(Fixed(logits), torch.zeros(2, 1), y, logits, loss, epoch=1, step=0)
    hook = distillation_loss(Fixed(torch.tensor(teacher)), temperature=t, alpha=alpha)
    total = loss + hook(context)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6)
    total.backward()
    assert logits.grad is not None


def test_alpha_zero_is_plain_cross_entropy() -> None:
    logits = torch.tensor([[0.3, -0.2]])
    loss = nn.functional.cross_entropy(logits, torch.tensor([0]))
    context = StepContext(Fixed(logits), torch.zeros(1), torch.tensor([0]), logits, loss, 1, 0)
    assert float(distillation_loss(Fixed(logits * 5), alpha=0.0)(context)) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    ],
)
def test_bad_settings(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        distillation_loss(nn.Linear(2, 2), **kwargs)
