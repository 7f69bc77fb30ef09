"""Magnitude pruning on users' layers: LSTM gates, attention projections, HF Conv1D, ties."""

from __future__ import annotations

import pytest
import torch

import deepshrink as ds
from deepshrink.graph.coverage import coverage_of
from deepshrink.graph.io import call, logits_of
from deepshrink.graph.layers import weight_slots
from deepshrink.prune import sparsity, weight_counts


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_every_weight_matrix_reaches_the_sparsity_and_stays_pruned_in_training(
    scope, tagger, attention_net, gpt2
) -> None:
    for model, inputs in (tagger, attention_net, gpt2):
        model.train()
        ds.prune_(model, ds.MagnitudePruning(sparsity=0.75, scope=scope))
        assert coverage_of(model)[-1].fraction == 1.0
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
        for _ in range(3):
            optimizer.zero_grad()
            logits_of(call(model, inputs)).pow(2).mean().backward()
            optimizer.step()
        counts = weight_counts(model)
        assert set(counts) == set(weight_slots(model))
        if scope == "layer":
            assert all(abs(1 - kept / total - 0.75) < 0.01 for kept, total in counts.values())
        assert abs(sparsity(model) - 0.75) < 0.01


def test_lstm_and_attention_weights_are_masked_in_their_own_parameters(tagger, attention_net):
    model, _ = tagger
    ds.prune_(model, ds.MagnitudePruning(sparsity=0.5), include="lstm.*")
    assert "lstm.weight_hh_l1_mask" in model.state_dict()
    assert float((model.lstm.weight_hh_l1 == 0).float().mean()) == 0.5
    net, _ = attention_net
    ds.prune_(net, ds.MagnitudePruning(sparsity=0.5), include="attn.*")
    assert sorted(k for k in net.state_dict() if k.endswith("_mask")) == [
        "attn.in_proj_weight_mask", "attn.out_proj.weight_mask"
    ]  # fmt: skip


def test_a_tied_weight_is_pruned_once_and_stays_tied(gpt2) -> None:
    model, inputs = gpt2
    ds.prune_(model, ds.MagnitudePruning(sparsity=0.6))
    assert model.lm_head.weight is model.transformer.wte.weight
    assert "lm_head.weight_mask" not in model.state_dict()
    assert float((model.lm_head.weight == 0).float().mean()) == pytest.approx(0.6, abs=0.01)
    ds.finalize_(model)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_pruning_a_shared_weight_is_refused_with_the_fix(tagger) -> None:
    model, _ = tagger
    ds.quantize_(model, ds.KMeansQuantization(bits=3))
    with pytest.raises(ds.ConfigError, match="the weight is computed .* prune before quantizing"):
        ds.prune_(model, ds.MagnitudePruning(sparsity=0.5))
