"""k-means and mixed precision on users' layers: LSTM gates, attention, HF Conv1D, tied weights."""

from __future__ import annotations

import torch
from torch import nn

import deepshrink as ds
from deepshrink.graph.io import call, logits_of
from deepshrink.graph.layers import tied_parameters, weight_slots
from deepshrink.quantize import MixedPrecision, is_shared, layer_bits_of


def _distinct_nonzero(tensor: torch.Tensor) -> int:
    return int(tensor[tensor != 0].unique().numel())


def test_a_shared_lstm_computes_what_a_plain_lstm_with_the_shared_values_computes(tagger) -> None:
    model, tokens = tagger
    ds.quantize_(model, ds.KMeansQuantization(bits=3))
    assert is_shared(model.lstm) and isinstance(model.lstm, nn.LSTM)
    plain = nn.LSTM(16, 24, batch_first=True, num_layers=2)
    with torch.no_grad():
        for name in plain._flat_weights_names:
            getattr(plain, name).copy_(getattr(model.lstm, name))
    embedded = model.emb(tokens)
    assert torch.equal(model.lstm(embedded)[0], plain(embedded)[0])
    for name in ("weight_ih_l0", "weight_hh_l1"):
        assert _distinct_nonzero(getattr(model.lstm, name)) <= 8


def test_lstm_centroids_get_the_summed_gradient_of_their_cluster(tagger) -> None:
    model, tokens = tagger
    ds.quantize_(model, ds.KMeansQuantization(bits=2), include="lstm.weight_ih_l0")
    plain = nn.LSTM(16, 24, batch_first=True, num_layers=2)
    with torch.no_grad():
        for name in plain._flat_weights_names:
            getattr(plain, name).copy_(getattr(model.lstm, name))
    embedded = model.emb(tokens).detach()
    model.lstm(embedded)[0].pow(2).sum().backward()
    plain(embedded)[0].pow(2).sum().backward()
    indices, mask = model.lstm.weight_ih_l0_indices.long(), model.lstm.weight_ih_l0_mask
    grad = plain.weight_ih_l0.grad
    oracle = torch.zeros(4).index_add_(0, indices[mask], grad[mask])
    assert torch.allclose(model.lstm.weight_ih_l0_centroids.grad, oracle, atol=1e-4)
    assert torch.allclose(model.lstm.weight_hh_l0.grad, plain.weight_hh_l0.grad, atol=1e-5)


def test_training_moves_lstm_and_attention_centroids_and_finalize_keeps_outputs(
    tagger, attention_net
) -> None:
    for model, inputs in (tagger, attention_net):
        ds.quantize_(model, ds.KMeansQuantization(bits=3))
        centroids = {n: p.detach().clone() for n, p in model.named_parameters()
                     if n.endswith("_centroids")}  # fmt: skip
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        logits_of(call(model, inputs)).pow(2).mean().backward()
        optimizer.step()
        moved = [n for n, p in model.named_parameters() if n in centroids
                 and not torch.equal(p, centroids[n])]  # fmt: skip
        assert len(moved) == len(centroids) >= 4
        before = call(model, inputs)
        ds.finalize_(model)
        assert not any(is_shared(m) for m in model.modules())
        assert torch.equal(call(model, inputs), before)
        assert all(_distinct_nonzero(s.tensor) <= 8 for s in weight_slots(model).values())


def test_tied_gpt2_weights_share_one_codebook_and_stay_tied_after_finalize(gpt2) -> None:
    model, inputs = gpt2
    ds.quantize_(model, ds.KMeansQuantization(bits=4))
    wte, head = model.transformer.wte, model.lm_head
    assert wte.weight_centroids is head.weight_centroids
    assert wte.weight_indices is head.weight_indices
    assert torch.equal(wte.weight, head.weight)
    conv1d = model.get_submodule("transformer.h.0.mlp.c_fc")
    assert is_shared(conv1d) and _distinct_nonzero(conv1d.weight) <= 16
    before = logits_of(call(model, inputs))
    ds.finalize_(model)
    assert head.weight is wte.weight
    assert tied_parameters(model) == [["transformer.wte.weight", "lm_head.weight"]]
    assert torch.equal(logits_of(call(model, inputs)), before)


def test_mixed_precision_reaches_every_weight_matrix_and_keeps_ties(gpt2, tagger) -> None:
    model, inputs = gpt2
    labels = logits_of(call(model, inputs)).argmax(-1)
    config = MixedPrecision(average_bits=4, candidates=(2, 4, 8))
    ds.quantize_(model, config, calibration=[(inputs, labels)])
    widths = layer_bits_of(model)
    assert set(widths) == set(weight_slots(model)) and "lm_head" not in widths
    assert model.lm_head.weight is model.transformer.wte.weight
    counts = {n: s.numel for n, s in weight_slots(model).items()}
    assert sum(counts[n] * b for n, b in widths.items()) <= 4 * sum(counts.values())
    tagger_model, tokens = tagger
    ds.quantize_(tagger_model, MixedPrecision(default_bits=4))
    gate = tagger_model.lstm.weight_hh_l0  # per output row, at most 2**4 values
    assert max(_distinct_nonzero(row) for row in gate) <= 16


def test_a_shared_lstm_deep_copies_and_finalizes_like_the_original(tagger) -> None:
    import copy

    model, tokens = tagger
    ds.quantize_(model, ds.KMeansQuantization(bits=3))
    before = model(tokens)
    twin = copy.deepcopy(model)  # e.g. a distillation teacher
    assert torch.equal(twin(tokens), before)
    ds.finalize_(twin)
    assert type(twin.lstm) is nn.LSTM and torch.equal(twin(tokens), before)
    assert is_shared(model.lstm)  # the original is untouched
