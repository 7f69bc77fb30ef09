"""Channel criteria: a contract every criterion keeps, and each one against a hand computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.graph.coupling import ChannelGroup, Coupling
from deepshrink.prune import CHANNEL_CRITERIA, ChannelPruning, prune_
from deepshrink.prune.channel_criteria import channel_scores, collect_calibration
from deepshrink.train import StepContext


def net() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Conv2d(6, 4, 1), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))  # fmt: skip
    nn.init.uniform_(model[1].weight, -1, 1)
    nn.init.uniform_(model[1].bias, -1, 1)
    return model.eval()


def group_of(model: nn.Module, root: str = "0") -> ChannelGroup:
    return {g.root: g for g in Coupling(model, torch.zeros(1, 3, 4, 4)).groups}[root]


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 3, 4, 4, generator=generator), torch.arange(8) % 3) for _ in range(2)]


@pytest.mark.parametrize("name", CHANNEL_CRITERIA.names())
def test_contract(name: str) -> None:
    model = net()
    group = group_of(model)
    data = collect_calibration(model, name, batches())
    first = channel_scores(name, group, data, torch.Generator().manual_seed(3))
    again = channel_scores(name, group, data, torch.Generator().manual_seed(3))
    assert first.shape == (6,) and first.dtype == torch.float32
    assert torch.isfinite(first).all()
    assert torch.equal(first, again)  # deterministic for a given seed and data
    if CHANNEL_CRITERIA.get(name).data:
        with pytest.raises(ConfigError, match="calibration"):
            collect_calibration(model, name, None)
        with pytest.raises(ConfigError, match="calibration"):
            prune_(net(), ChannelPruning(ratio=0.5, criterion=name),
                   example_inputs=torch.zeros(1, 3, 4, 4))  # fmt: skip


def test_weight_criteria_match_hand_computation() -> None:
    model = net()
    group = group_of(model)
    rows = model[0].weight.detach().flatten(1)
    torch.testing.assert_close(channel_scores("l1", group), rows.abs().sum(1))
    torch.testing.assert_close(channel_scores("l2", group), rows.norm(dim=1))
    distances = torch.stack([(rows - r).norm(dim=1).sum() for r in rows])
    torch.testing.assert_close(channel_scores("fpgm", group), distances)
    torch.testing.assert_close(channel_scores("bn_scale", group), model[1].weight.detach().abs())


def test_bn_scale_needs_a_batchnorm() -> None:
    with pytest.raises(ConfigError, match="BatchNorm"):
        channel_scores("bn_scale", group_of(net(), "3"))


def test_apoz_is_the_positive_rate_after_the_norm() -> None:
    model = net()
    data = collect_calibration(model, "apoz", batches())
    with torch.no_grad():
        outputs = torch.cat([model[1](model[0](x)) for x, _ in batches()])
    expected = (outputs > 0).float().mean(dim=(0, 2, 3))
    torch.testing.assert_close(channel_scores("apoz", group_of(model), data), expected)


def test_taylor_squares_the_summed_weight_gradient_products() -> None:
    model = net()
    data = collect_calibration(model, "taylor", batches())
    model.zero_grad()
    for x, y in batches():
        nn.functional.cross_entropy(model(x), y).backward()
    total = torch.zeros(6)
    for layer, dim in ((model[0], 0), (model[1], 0), (model[3], 1)):
        for p in layer.parameters():
            if dim == 0 or p.ndim > 1:
                total += (p.detach() * p.grad).movedim(dim, 0).reshape(6, -1).sum(1)
    torch.testing.assert_close(channel_scores("taylor", group_of(model), data), total.pow(2))
    with pytest.raises(ConfigError, match="labelled"):
        collect_calibration(model, "taylor", [torch.zeros(2, 3, 4, 4)])


def test_slimming_penalty_gradient_is_lambda_sign_gamma() -> None:
    from deepshrink.prune import slimming_penalty

    model = net()
    context = StepContext(model, None, None, None, torch.zeros(()), 0, 0)  # type: ignore[arg-type]
    slimming_penalty(lam=0.01)(context).backward()
    torch.testing.assert_close(model[1].weight.grad, 0.01 * model[1].weight.detach().sign())
    assert model[0].weight.grad is None
    with pytest.raises(ConfigError, match="BatchNorm"):
        slimming_penalty()(StepContext(nn.Linear(2, 2), None, None, None, None, 0, 0))  # type: ignore[arg-type]


def test_scores_of_a_concatenation_consumer_land_on_its_own_channels() -> None:
    class Concat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 3, 1), nn.Conv2d(5, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(torch.cat([self.a(x), self.b(x)], dim=1)).mean(dim=(2, 3))

    model = Concat()
    data = collect_calibration(model, "taylor", [(torch.randn(4, 3, 2, 2), torch.arange(4) % 4)])
    for root, offset in (("a", 0), ("b", 2)):
        group = {g.root: g for g in Coupling(model, torch.zeros(1, 3, 2, 2)).groups}[root]
        products = data.weight_grad
        own = products[f"{root}.weight"].flatten(1).sum(1) + products[f"{root}.bias"]
        width = len(own)
        read = products["c.weight"][:, offset : offset + width].sum(dim=(0, 2, 3))
        torch.testing.assert_close(channel_scores("taylor", group, data), (own + read).pow(2))


def conv1d_layer(nf: int, nx: int) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    return transformers.pytorch_utils.Conv1D(nf, nx)


def test_l1_reads_conv1d_weights_stored_in_by_out() -> None:
    model = nn.Sequential(conv1d_layer(3, 4), nn.ReLU(), conv1d_layer(2, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.5]] * 4))  # (in=4, out=3)
    group = {g.root: g for g in Coupling(model, torch.zeros(1, 5, 4)).groups}["0"]
    assert channel_scores("l1", group).tolist() == [4.0, 8.0, 2.0]
