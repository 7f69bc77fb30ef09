"""Sparse execution of pruned dense layers: same outputs, converted only where measured faster."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.errors import ConfigError
from deepshrink.eval.timing import Speed
from deepshrink.prune import SparseLinear, sparse_linear_
from deepshrink.prune.sparse_exec import _timed


def _pruned_mlp(sparsity: float = 0.9) -> nn.Module:
    torch.manual_seed(0)
    model = ds.zoo.create("lenet300").eval()
    ds.prune_(model, ds.MagnitudePruning(sparsity=sparsity, scope="layer"))
    return ds.prune.finalize_(model)


def _verdicts(**by_layer: str):
    """A timer that answers each layer's verdict from ``by_layer`` (fc1=... etc.)."""
    ratios = {"faster": 2.0, "slower": 0.5, "no measurable change": 1.0}
    seen = []

    def timer(dense, sparse, x, rounds):
        name = next(k for k, v in by_layer.items() if v[1] == dense.in_features)
        seen.append((name, tuple(x.shape)))
        verdict = by_layer[name][0]
        r = ratios[verdict]
        return Speed(r, r * 0.95, r * 1.05, verdict, 1.0, 1.0, 1.0, rounds)

    return timer, seen


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 40), (2, 3, 40)])
def test_sparse_linear_gives_the_dense_layers_outputs(bias: bool, shape: tuple) -> None:
    torch.manual_seed(1)
    layer = nn.Linear(40, 24, bias=bias)
    with torch.no_grad():
        layer.weight[torch.rand(24, 40) < 0.8] = 0
    sparse = SparseLinear.from_linear(layer)
    x = torch.randn(*shape)
    assert torch.allclose(sparse(x), layer(x), atol=1e-5)
    back = sparse.dense()
    assert torch.equal(back.weight, layer.weight)
    assert (back.bias is None) == (not bias)


def test_only_the_layers_measured_faster_are_converted() -> None:
    model = _pruned_mlp()
    x = torch.rand(64, 1, 28, 28)
    expected = model(x)
    timer, seen = _verdicts(
        fc1=("faster", 784), fc2=("slower", 300), fc3=("no measurable change", 100)
    )
    decisions = sparse_linear_(model, x, timer=timer)
    assert [(d.layer, d.converted) for d in decisions] == [("fc1", True), ("fc2", False),
                                                           ("fc3", False)]  # fmt: skip
    assert isinstance(model.fc1, SparseLinear) and type(model.fc2) is nn.Linear
    assert seen[0] == ("fc1", (64, 784))  # timed on the input the layer really receives
    assert torch.allclose(model(x), expected, atol=1e-5)
    assert "slower" in decisions[1].speed


def test_when_no_layer_is_faster_the_model_is_unchanged_and_the_call_says_why() -> None:
    model = _pruned_mlp()
    timer, _ = _verdicts(
        fc1=("slower", 784), fc2=("no measurable change", 300), fc3=("slower", 100)
    )
    with pytest.raises(ConfigError, match=r"no layer runs measurably faster.*fc1: 2\.00× slower"):
        sparse_linear_(model, torch.rand(1, 1, 28, 28), timer=timer)
    assert all(type(m) is nn.Linear for m in (model.fc1, model.fc2, model.fc3))


def test_layers_below_min_sparsity_are_reported_not_timed() -> None:
    model = _pruned_mlp(sparsity=0.3)
    timer, seen = _verdicts(fc1=("faster", 784), fc2=("faster", 300), fc3=("faster", 100))
    with pytest.raises(ConfigError, match="below min_sparsity 50%"):
        sparse_linear_(model, torch.rand(1, 1, 28, 28), timer=timer)
    assert seen == []
    decisions = sparse_linear_(model, torch.rand(1, 1, 28, 28), timer=timer, min_sparsity=0.2)
    assert all(d.converted for d in decisions)


def test_settings_and_models_it_cannot_serve_are_refused() -> None:
    with pytest.raises(ConfigError, match="no nn.Linear layer"):
        sparse_linear_(nn.Sequential(nn.Conv2d(1, 2, 3)), torch.rand(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="min_sparsity"):
        sparse_linear_(_pruned_mlp(), torch.rand(1, 1, 28, 28), min_sparsity=1.0)


def test_the_default_timer_measures_both_forms_side_by_side() -> None:
    layer = nn.Linear(32, 16)
    with torch.no_grad():
        layer.weight[torch.rand(16, 32) < 0.9] = 0
    speed = _timed(layer, SparseLinear.from_linear(layer), torch.rand(8, 32), rounds=3)
    assert speed.verdict in ("faster", "slower", "no measurable change") and speed.rounds == 3
    assert speed.cpu_ms > 0 and speed.baseline_cpu_ms > 0
