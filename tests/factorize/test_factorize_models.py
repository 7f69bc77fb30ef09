"""SVD on users' models: HF Conv1D factorized exactly at full rank; tied and attention weights
left alone with the reason; the model never grows."""

from __future__ import annotations

import torch

import deepshrink as ds
from deepshrink.factorize import SVDLinear
from deepshrink.graph.coverage import coverage_of
from deepshrink.graph.io import call, logits_of


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_hf_conv1d_at_full_rank_computes_the_same_and_reloads(gpt2, fresh_gpt2, tmp_path) -> None:
    model, inputs = gpt2
    before = logits_of(call(model, inputs))
    ds.factorize_(model, ds.SVDFactorization(rank=32, policy="none"), include="*.c_fc")
    layer = model.get_submodule("transformer.h.0.mlp.c_fc")
    assert isinstance(layer, SVDLinear) and (layer.in_features, layer.out_features) == (32, 128)
    assert torch.allclose(logits_of(call(model, inputs)), before, atol=1e-4)
    path = ds.save(model, tmp_path / "gpt2.dsz")
    loaded = ds.load(path, model=fresh_gpt2(seed=5))
    assert torch.equal(logits_of(call(loaded, inputs)), logits_of(call(model, inputs)))


def test_tied_lm_head_is_not_factorized_and_the_model_does_not_grow(gpt2) -> None:
    model, inputs = gpt2
    before = _parameters(model)
    ds.factorize_(model, ds.SVDFactorization(energy=0.9), example_inputs=inputs)
    coverage = coverage_of(model)[-1]
    assert "tied to transformer.wte.weight" in coverage.skipped["lm_head"]
    assert model.lm_head.weight is model.transformer.wte.weight
    assert _parameters(model) < before
    assert coverage.changed and all(".c_" in name for name in coverage.changed)


def test_multihead_attention_keeps_its_out_proj_and_still_runs(attention_net) -> None:
    model, x = attention_net
    ds.factorize_(model, ds.SVDFactorization(rank=2))
    assert type(model.attn.out_proj).__name__ == "NonDynamicallyQuantizableLinear"
    assert isinstance(model.inp, SVDLinear)
    assert "reads out_proj.weight" in coverage_of(model)[-1].skipped["attn.out_proj"]
    assert model(x).shape == (3, 3)


def test_transformer_encoder_layers_run_with_factorized_feed_forward_layers() -> None:
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).eval()
    encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 6, 32)
    before = encoder(x)
    config = ds.SVDFactorization(rank=32, policy="none")
    ds.factorize_(encoder, config, include="layers.*.linear*")
    assert isinstance(encoder.layers[0].linear1, SVDLinear)
    with torch.no_grad():  # PyTorch's fused path reads linear1.weight: the dense product
        fused = encoder(x)
    assert torch.allclose(encoder(x), before, atol=1e-5)
    assert torch.allclose(fused, before, atol=1e-5)
