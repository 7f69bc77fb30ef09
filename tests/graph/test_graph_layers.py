"""Layer adapters: every weight matrix of users' layer types is found once, with its axes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepshrink.graph.layers import (
    Adapter,
    as_linear,
    register_adapter,
    replace_blocker,
    tied_parameters,
    unknown_weights,
    weight_slots,
)


def test_every_builtin_layer_type_exposes_its_weights_with_axes() -> None:
    model = nn.ModuleDict({
        "fc": nn.Linear(4, 3), "conv": nn.Conv1d(2, 5, 3), "up": nn.ConvTranspose2d(5, 2, 3),
        "emb": nn.Embedding(10, 4), "gru": nn.GRU(4, 6, bidirectional=True),
        "attn": nn.MultiheadAttention(8, 2, kdim=4, vdim=4),
    })  # fmt: skip
    slots = weight_slots(model)
    assert {n: (s.kind, s.out_axis, s.in_axis) for n, s in slots.items()} == {
        "fc": ("linear", 0, 1), "conv": ("conv", 0, 1), "up": ("conv", 1, 0),
        "emb": ("embedding", 1, 0),
        "gru.weight_ih_l0": ("recurrent", 0, 1), "gru.weight_hh_l0": ("recurrent", 0, 1),
        "gru.weight_ih_l0_reverse": ("recurrent", 0, 1),
        "gru.weight_hh_l0_reverse": ("recurrent", 0, 1),
        "attn.q_proj_weight": ("attention", 0, 1), "attn.k_proj_weight": ("attention", 0, 1),
        "attn.v_proj_weight": ("attention", 0, 1), "attn.out_proj": ("linear", 0, 1),
    }  # fmt: skip
    assert slots["up"].out_axis == 1 and slots["up"].tensor.shape[1] == 2  # out channels


def test_hf_conv1d_is_a_linear_stored_in_by_out(gpt2) -> None:
    model, inputs = gpt2
    slot = weight_slots(model)["transformer.h.0.attn.c_attn"]
    assert (slot.kind, slot.out_axis, slot.in_axis) == ("linear", 1, 0)
    layer = model.get_submodule("transformer.h.0.attn.c_attn")
    x = torch.randn(2, 5, 32)
    assert torch.allclose(as_linear(layer)(x), layer(x), atol=1e-6)


def test_a_tied_weight_is_one_slot_with_its_aliases(gpt2) -> None:
    model, _ = gpt2
    slots = weight_slots(model)
    assert "lm_head" not in slots
    assert slots["transformer.wte"].aliases == (("lm_head", "weight"),)
    assert tied_parameters(model) == [["transformer.wte.weight", "lm_head.weight"]]
    assert "Embedding layers cannot be replaced" in replace_blocker(model, slots["transformer.wte"])
    twins = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    twins[1].weight = twins[0].weight
    assert "tied to 1.weight" in replace_blocker(twins, weight_slots(twins)["0"])


def test_multihead_attention_out_proj_cannot_be_replaced(attention_net) -> None:
    model, _ = attention_net
    slots = weight_slots(model)
    assert "reads out_proj.weight" in replace_blocker(model, slots["attn.out_proj"])
    assert replace_blocker(model, slots["fc"]) == ""
    packed = slots["attn.in_proj_weight"]
    assert "MultiheadAttention layers cannot" in replace_blocker(model, packed)


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.kernel


def test_unknown_layer_weights_are_reported_until_an_adapter_is_registered() -> None:
    model = nn.Sequential(Scale(), nn.LayerNorm(3))
    assert unknown_weights(model) == {"0.kernel": (9, "no layer adapter for Scale")}
    assert weight_slots(model) == {}
    register_adapter(Scale, Adapter("linear", lambda m: [("kernel", 1, 0)]))
    try:
        slots = weight_slots(model)
        assert list(slots) == ["0.kernel"] and unknown_weights(model) == {}
    finally:
        from deepshrink.graph import layers

        del layers._ADAPTERS[Scale]


def test_a_submodule_used_twice_is_one_slot() -> None:
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert list(weight_slots(model)) == ["0"]


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.LayerNorm(3)])
def test_as_linear_refuses_other_layers(layer: nn.Module) -> None:
    with pytest.raises(TypeError, match="not a linear layer"):
        as_linear(layer)
