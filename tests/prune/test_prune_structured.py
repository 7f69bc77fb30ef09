"""Channel pruning: masked (channels zeroed by hand) == physically pruned, for every coupling.

Each tiny net below lists, by hand, the modules whose outputs carry each coupled channel set
(after its norm, so a zeroed channel is exactly zero where the branches meet). The oracle zeroes
the pruned channels there with forward hooks on the *unpruned* model; the pruned model must
compute the same outputs.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import Tensor, nn

import deepshrink as ds
from deepshrink.errors import ConfigError, FormatError
from deepshrink.prune import ChannelPruning, apply_plan_, plan_channel_pruning, prune_


def cbr(cin: int, cout: int, groups: int = 1, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]  # fmt: skip


class Residual(nn.Module):
    """A projection (option B) block, then an identity block: three branches share channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*cbr(3, 6))
        self.branch = nn.Sequential(*cbr(6, 6), nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.short = nn.Sequential(nn.Conv2d(6, 8, 1), nn.BatchNorm2d(8))
        self.block = nn.Sequential(*cbr(8, 8), nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = torch.relu(self.branch(x) + self.short(x))
        return self.head(torch.relu(self.block(x) + x))  # identity shortcut


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(*cbr(3, 4))
        self.b = nn.Sequential(*cbr(3, 6, k=1))
        self.c = nn.Sequential(*cbr(10, 6))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.c(torch.cat([self.a(x), self.b(x)], dim=1)))


def depthwise() -> nn.Sequential:
    return nn.Sequential(*cbr(3, 8), *cbr(8, 8, groups=8), *cbr(8, 6, k=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))  # fmt: skip


def grouped() -> nn.Sequential:
    return nn.Sequential(*cbr(3, 8), *cbr(8, 8, groups=2), *cbr(8, 4),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))  # fmt: skip


def flatten_linear() -> nn.Sequential:
    return nn.Sequential(*cbr(3, 6), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 5),
                         nn.ReLU(), nn.Linear(5, 3))  # fmt: skip


#: net factory, {a layer of the group: modules whose outputs carry the group's channels}
CASES = {
    "residual": (
        Residual,
        {
            "stem.0": ["stem.1"],
            "branch.0": ["branch.1"],
            "block.0": ["block.1"],
            "short.0": ["branch.4", "short.1", "block.4"],
        },
    ),
    "concat": (Concat, {"a.0": ["a.1"], "b.0": ["b.1"], "c.0": ["c.1"]}),
    "depthwise": (depthwise, {"0": ["1", "4"], "6": ["7"]}),
    "grouped": (grouped, {"0": ["1"], "3": ["4"], "6": ["7"]}),
    "flatten_linear": (flatten_linear, {"0": ["1"], "5": ["5"]}),
}


def randomised(factory) -> nn.Module:  # noqa: ANN001
    torch.manual_seed(0)
    model = factory()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            for tensor in (module.weight, module.bias, module.running_mean):
                nn.init.uniform_(tensor, -1.0, 1.0)
            nn.init.uniform_(module.running_var, 0.5, 2.0)
    return model.eval()


def masked_outputs(model: nn.Module, plan: dict, carriers: dict, x: Tensor) -> Tensor:
    """The unpruned model's outputs with the plan's dropped channels zeroed by hand."""
    handles = []
    for group in plan["groups"]:
        key = next(k for k, c in carriers.items() if {k, c[0]} <= set(group["layers"]))
        dropped = sorted(set(range(group["channels"])) - set(group["kept"]))

        def zero(module: nn.Module, args: object, out: Tensor, dropped=dropped) -> Tensor:
            out = out.clone()
            out[:, dropped] = 0
            return out

        for name in carriers[key]:
            handles.append(model.get_submodule(name).register_forward_hook(zero))
    with torch.no_grad():
        result = model(x)
    for handle in handles:
        handle.remove()
    return result


@pytest.mark.parametrize("case", list(CASES))
def test_masked_equals_pruned(case: str) -> None:
    factory, carriers = CASES[case]
    model = randomised(factory)
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    plan = plan_channel_pruning(model, ChannelPruning(ratio=0.5), x[:1])
    assert {k for k in carriers if any(k in g["layers"] for g in plan["groups"])} == set(carriers)
    expected = masked_outputs(model, plan, carriers, x)
    pruned = apply_plan_(copy.deepcopy(model), plan)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), expected, atol=1e-5, rtol=1e-4)
    before, after = plan["totals"]["params"]
    assert after == sum(p.numel() for p in pruned.parameters()) < before


def test_grouped_convolution_keeps_equal_groups() -> None:
    model = randomised(grouped)
    plan = plan_channel_pruning(model, ChannelPruning(ratio=0.5), torch.zeros(1, 3, 4, 4))
    kept = next(g["kept"] for g in plan["groups"] if "3" in g["layers"])
    assert [k % 4 for k in kept[:2]] == [k % 4 for k in kept[2:]]  # same offsets in both groups
    apply_plan_(model, plan)
    assert model[3].groups == 2 and model[3].weight.shape == (4, 2, 3, 3)


def test_ratio_zero_changes_nothing() -> None:
    model = randomised(Residual)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        before = model(x)
    prune_(model, ChannelPruning(ratio=0.0), example_inputs=x)
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_plan_json_rebuilds_a_fresh_model() -> None:
    model = randomised(Concat)
    x = torch.randn(2, 3, 4, 4)
    plan = json.loads(json.dumps(plan_channel_pruning(model, ChannelPruning(ratio=0.5), x[:1])))
    apply_plan_(model, plan)
    fresh = apply_plan_(Concat().eval(), plan)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_checkpoint_of_a_pruned_zoo_model_loads_back(tmp_path) -> None:
    model = ds.zoo.create("resnet20", shortcut="B").eval()
    prune_(model, ChannelPruning(ratio=0.5, ignore=["conv1"]))
    path = ds.save_checkpoint(model, tmp_path / "pruned")
    loaded, _ = ds.load_checkpoint(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))
    assert loaded.layer3[0].shortcut[0].out_channels == 32


def _resnet20_carriers() -> dict[str, list[str]]:
    """Option-A ResNet-20: the modules whose outputs carry each coupled channel set."""
    carriers = {"conv1": ["bn1", *(f"layer1.{b}.bn2" for b in range(3))]}
    for stage in (2, 3):
        carriers[f"layer{stage}.0.conv2"] = [
            f"layer{stage}.0.shortcut",
            *(f"layer{stage}.{b}.bn2" for b in range(3)),
        ]
    for stage in (1, 2, 3):
        for block in range(3):
            carriers[f"layer{stage}.{block}.conv1"] = [f"layer{stage}.{block}.bn1"]
    return carriers


def test_option_a_resnet_prunes_its_residual_streams_too() -> None:
    torch.manual_seed(0)
    model = randomised(lambda: ds.zoo.create("resnet20"))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    plan = plan_channel_pruning(model, ChannelPruning(ratio=0.5, round_to=4), x[:1])
    carriers = _resnet20_carriers()
    assert sorted(g["root"] for g in plan["groups"]) == sorted(carriers)
    expected = masked_outputs(model, plan, carriers, x)
    pruned = apply_plan_(copy.deepcopy(model), plan)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), expected, atol=1e-4, rtol=1e-4)
    shortcut = pruned.layer2[0].shortcut  # the zero padding follows the kept channels
    assert (shortcut.in_channels, shortcut.out_channels) == (8, 16)
    macs = ds.eval.count_macs(model, x[:1]) / ds.eval.count_macs(pruned, x[:1])
    assert 3.5 < macs < 4.5
    assert all(m.out_channels % 4 == 0 for m in pruned.modules() if isinstance(m, nn.Conv2d))


def test_default_widths_are_multiples_of_8_where_a_group_can_still_shrink(caplog) -> None:
    """``round_to="auto"`` on ResNet-20 at ratio 0.3: the 32- and 64-channel groups keep 24 and
    48 (exact: 23 and 45), the 16-channel ones keep their exact 12 (16 would cut nothing); the
    pruned model still equals the masked oracle, and the log names the raised groups."""
    import logging

    torch.manual_seed(0)
    model = randomised(lambda: ds.zoo.create("resnet20"))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with caplog.at_level(logging.INFO, logger="deepshrink.prune.structured"):
        plan = plan_channel_pruning(model, ChannelPruning(ratio=0.3), x[:1])
    kept = {g["root"]: len(g["kept"]) for g in plan["groups"]}
    widths = {16: 12, 32: 24, 64: 48}
    assert kept == {g["root"]: widths[g["channels"]] for g in plan["groups"]}
    assert all(len(g["kept"]) % 8 == 0 for g in plan["groups"] if g["channels"] > 16)
    assert "layer3.0.conv2 45→48" in caplog.text and "layer1.0.conv1 " not in caplog.text
    exact = plan_channel_pruning(model, ChannelPruning(ratio=0.3, round_to=1), x[:1])
    assert sorted({len(g["kept"]) for g in exact["groups"]}) == [12, 23, 45]
    expected = masked_outputs(model, plan, _resnet20_carriers(), x)
    pruned = apply_plan_(copy.deepcopy(model), plan)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), expected, atol=1e-4, rtol=1e-4)


def test_pruned_option_a_resnet_reloads_and_exports(tmp_path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    model = ds.zoo.create("resnet20").eval()
    prune_(model, ChannelPruning(ratio=0.5))
    loaded, _ = ds.load_checkpoint(ds.save_checkpoint(model, tmp_path / "pruned"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))
    path = ds.export(model, tmp_path / "pruned.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), model(x).detach(), atol=1e-4, rtol=1e-4)


def test_global_bn_scale_removes_the_smallest_scales() -> None:
    model = randomised(depthwise)
    with torch.no_grad():
        model[1].weight.copy_(torch.arange(1.0, 9.0))  # group 0: |γ1| + |γ4|
        model[4].weight.zero_()
        model[7].weight.copy_(torch.tensor([0.5, 20, 30, 40, 50, 60]))
    config = ChannelPruning(ratio=0.5, criterion="bn_scale", scope="global")
    plan = plan_channel_pruning(model, config, torch.zeros(1, 3, 4, 4))
    # the 7 smallest of the 14 scores (0.5, then 1..6) go: 6 from the first group, 1 from the other
    assert sorted(g["kept"] for g in plan["groups"]) == [[1, 2, 3, 4, 5], [6, 7]]


def test_overrides_and_round_to() -> None:
    model = randomised(Concat)
    config = ChannelPruning(ratio=0.5, overrides={"b.0": 0.0}, round_to=4)
    plan = plan_channel_pruning(model, config, torch.zeros(1, 3, 4, 4))
    kept = {g["root"]: len(g["kept"]) for g in plan["groups"]}
    assert kept == {"a.0": 4, "b.0": 6, "c.0": 4}


def test_errors_are_clear() -> None:
    model = randomised(Residual)
    x = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ConfigError, match="ratio must be in"):
        ChannelPruning(ratio=1.5)
    with pytest.raises(ConfigError, match="did you mean 'fpgm'"):
        ChannelPruning(ratio=0.5, criterion="fpg")
    with pytest.raises(ConfigError, match="matches no layer"):
        plan_channel_pruning(model, ChannelPruning(ratio=0.5, ignore=["nope"]), x)
    with pytest.raises(ConfigError, match="example_inputs"):
        prune_(model, ChannelPruning(ratio=0.5))
    with pytest.raises(ConfigError, match="could not trace"):
        plan_channel_pruning(model, ChannelPruning(ratio=0.5), torch.zeros(1, 5, 4, 4))
    prune_(model, ds.MagnitudePruning(sparsity=0.5))
    with pytest.raises(ConfigError, match="finalize_"):
        plan_channel_pruning(model, ChannelPruning(ratio=0.5), x)


def test_plan_that_does_not_fit_is_a_format_error() -> None:
    plan = plan_channel_pruning(
        randomised(Concat), ChannelPruning(ratio=0.5), torch.zeros(1, 3, 4, 4)
    )
    with pytest.raises(FormatError, match="does not fit"):
        apply_plan_(randomised(Residual), plan)


class Unsupported(nn.Module):
    """A channel slice and a GroupNorm: neither may be crossed, each is named."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 6, 1), nn.Conv2d(4, 5, 1)
        self.g, self.gn, self.c = nn.Conv2d(5, 4, 1), nn.GroupNorm(2, 4), nn.Conv2d(4, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.c(self.gn(self.g(self.b(self.a(x)[:, :4]))))


def test_unsupported_operations_block_their_groups_by_name() -> None:
    model, x = Unsupported(), torch.zeros(1, 3, 4, 4)
    plan = plan_channel_pruning(model, ChannelPruning(ratio=0.5), x)
    assert [g["root"] for g in plan["groups"]] == ["b"]
    assert "Slice" in plan["skipped"]["a"] and "GroupNorm" in plan["skipped"]["g"]
    for layer, op in (("a", "Slice"), ("g", "GroupNorm")):
        with pytest.raises(ConfigError, match=op):
            plan_channel_pruning(model, ChannelPruning(ratio=0.5), x, include=layer)


class MeanOverChannels(nn.Module):
    """Centring over the channel axis: the graph follows it as element-wise, the check does not."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 6, 1), nn.Conv2d(6, 4, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 3 * 3, 2))

    def forward(self, x: Tensor) -> Tensor:
        y = self.a(x)
        return self.head(torch.relu(self.b(y - y.mean(dim=1, keepdim=True))))


def test_a_group_whose_cut_is_not_exact_is_left_whole_with_its_operations() -> None:
    torch.manual_seed(0)
    model, x = MeanOverChannels().eval(), torch.randn(2, 3, 3, 3)
    plan = plan_channel_pruning(model, ChannelPruning(ratio=0.5), x)
    assert [g["root"] for g in plan["groups"]] == ["b"]
    assert "not exact" in plan["skipped"]["a"] and "Mean" in plan["skipped"]["a"]
    before = model.b.in_channels
    prune_(model, ChannelPruning(ratio=0.5), example_inputs=x)
    assert model.b.in_channels == before and model.b.out_channels == 2
