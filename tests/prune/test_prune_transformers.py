"""Channel pruning of transformers and recurrent nets: MLP widths, whole heads, refusals, reloads.

Oracles: a pruned model computes what the unpruned model computes with the dropped channels'
input columns zeroed in the layers that read them (removing a channel or a head is exactly
that); a pruned ``nn.TransformerEncoderLayer`` equals a freshly built narrower layer loaded
with the kept weights by hand; parameter counts; bit-identical outputs after reloads.
"""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
from torch import Tensor, nn

import deepshrink as ds
from deepshrink.errors import ConfigError, FormatError
from deepshrink.eval import count_parameters
from deepshrink.graph.coverage import coverage_of
from deepshrink.graph.io import call
from deepshrink.graph.slicing import is_conv1d
from deepshrink.prune import ChannelPruning, apply_plan_, plan_channel_pruning, prune_
from deepshrink.prune.structured import prune_channels_

transformers = pytest.importorskip("transformers")


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        image_size=32, patch_size=8, num_labels=10,
    )  # fmt: skip
    return transformers.ViTForImageClassification(config).eval()


def tiny_bert() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        vocab_size=100, num_labels=3,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config).eval()


def tiny_gpt2() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_embd=64, n_layer=2, n_head=4, vocab_size=100, n_positions=32, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


def tiny_distilbert() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(
        dim=64, n_layers=2, n_heads=4, hidden_dim=128, vocab_size=100, num_labels=3
    )
    return transformers.DistilBertForSequenceClassification(config).eval()


def tokens(batch: int = 2) -> dict[str, Tensor]:
    ids = torch.randint(0, 100, (batch, 8), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def image() -> Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def logits(model: nn.Module, example: object) -> Tensor:
    with torch.no_grad():
        out = call(model, example)
    return out if isinstance(out, Tensor) else out.logits


def masked(model: nn.Module, plan: dict) -> nn.Module:
    """A copy of the unpruned model whose layers ignore the plan's dropped input channels."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for cut in plan["cuts"]:
            layer = model.get_submodule(cut["layer"])
            dropped = sorted(set(range(cut["size"])) - set(cut["kept"]))
            if cut["dim"] == "in" and dropped:
                assert isinstance(layer, nn.Linear) or is_conv1d(layer), cut
                weight = layer.weight.T if is_conv1d(layer) else layer.weight
                weight[:, dropped] = 0
        for entry in plan.get("multihead", []):
            attention = model.get_submodule(entry["module"])
            d = attention.head_dim
            for head in set(range(entry["heads"][0])) - set(entry["kept"]):
                attention.out_proj.weight[:, head * d : (head + 1) * d] = 0
    return model


CASES = {
    "vit": (tiny_vit, image, 0.7),
    "bert": (tiny_bert, tokens, 0.7),
    "gpt2": (tiny_gpt2, tokens, 0.7),
    "distilbert": (tiny_distilbert, tokens, 0.85),  # most of its weights are embeddings
}


@pytest.mark.parametrize("case", list(CASES))
def test_half_width_and_half_heads_equal_the_masked_model(case: str) -> None:
    factory, inputs, share = CASES[case]
    model, x = factory(), inputs()
    plan = plan_channel_pruning(model, ChannelPruning(ratio=0.5), x, heads=0.5)
    reference = logits(masked(model, plan), x)
    assert not torch.allclose(reference, logits(model, x))  # the dropped channels mattered
    before = count_parameters(model)
    apply_plan_(model, plan, x)
    assert count_parameters(model) <= share * before  # ViT, BERT, GPT-2: ≥ 30 % fewer
    assert [g["heads"] for g in plan["groups"] if "heads" in g] and all(
        len(g["heads"]) == 2 for g in plan["groups"] if "heads" in g
    )
    mlp = [g for g in plan["groups"] if "heads" not in g and g["channels"] > 64]
    assert len(mlp) == 2 and all(len(g["kept"]) == g["channels"] // 2 for g in mlp)
    result = logits(model, x)
    assert result.shape == reference.shape
    torch.testing.assert_close(result, reference, rtol=1e-4, atol=1e-5)


def test_attention_modules_read_the_new_head_counts() -> None:
    bert, gpt2 = tiny_bert(), tiny_gpt2()
    prune_channels_(bert, ChannelPruning(ratio=0.0), example_inputs=tokens(), heads=0.5)
    prune_channels_(gpt2, ChannelPruning(ratio=0.0), example_inputs=tokens(), heads=0.5)
    attention = bert.bert.encoder.layer[0].attention.self
    assert (attention.num_attention_heads, attention.all_head_size) == (2, 32)
    assert attention.query.out_features == 32
    assert bert.bert.encoder.layer[0].intermediate.dense.out_features == 128  # ratio 0
    gpt_attention = gpt2.transformer.h[1].attn
    assert (gpt_attention.num_heads, gpt_attention.split_size) == (2, 32)
    assert gpt_attention.c_attn.weight.shape == (64, 96)
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight  # the tie is kept


def test_prune_takes_heads_from_the_config() -> None:
    model, x = tiny_vit(), image()
    before = count_parameters(model)
    prune_(model, ChannelPruning(ratio=0.5, heads=0.5), example_inputs=x)
    assert model.vit.layers[0].attention.num_attention_heads == 2
    assert model.vit.layers[0].mlp.fc1.out_features == 64
    assert count_parameters(model) <= 0.7 * before
    assert logits(model, x).shape == (2, 10)


def test_ratio_zero_and_all_kept_plans_change_nothing() -> None:
    model, x = tiny_bert(), tokens()
    before = logits(model, x)
    prune_(model, ChannelPruning(ratio=0.0), example_inputs=x)
    assert torch.equal(logits(model, x), before)
    plan = plan_channel_pruning(model, ChannelPruning(ratio=0.0), x, heads=0.0)
    assert all(len(c["kept"]) == c["size"] for c in plan["cuts"])
    assert torch.equal(logits(apply_plan_(model, plan), x), before)


def test_without_heads_attention_is_left_whole_with_the_reason() -> None:
    model, x = tiny_vit(), torch.randn(1, 3, 32, 32)
    plan = plan_channel_pruning(model, ChannelPruning(ratio=0.5), x)
    assert "pass heads=" in plan["skipped"]["vit.layers.0.attention.v_proj"]
    assert all("heads" not in g for g in plan["groups"])


def test_encoder_layer_equals_a_narrower_layer_built_by_hand() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True).eval()
    x = torch.randn(2, 5, 32)
    plan = plan_channel_pruning(layer, ChannelPruning(ratio=0.5), x)
    kept = next(g["kept"] for g in plan["groups"] if g["root"] == "linear1")
    assert len(kept) == 32
    assert "pass heads=" in plan["skipped"]["self_attn"]  # its width stays
    expected = nn.TransformerEncoderLayer(32, 4, dim_feedforward=32, batch_first=True).eval()
    state = layer.state_dict()
    state["linear1.weight"] = state["linear1.weight"][kept]
    state["linear1.bias"] = state["linear1.bias"][kept]
    state["linear2.weight"] = state["linear2.weight"][:, kept]
    expected.load_state_dict(state)
    apply_plan_(layer, plan)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected(x), rtol=0, atol=0)


class EncoderClassifier(nn.Module):
    """An ``nn.TransformerEncoder`` over 6 tokens of 8 features, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 32)
        block = nn.TransformerEncoderLayer(32, 4, dim_feedforward=96, batch_first=True)
        self.encoder = nn.TransformerEncoder(block, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


def test_transformer_encoder_prunes_its_feed_forward_layers() -> None:
    torch.manual_seed(0)
    model, x = EncoderClassifier().eval(), torch.randn(3, 6, 8)
    plan = plan_channel_pruning(model, ChannelPruning(ratio=0.5), x)
    reference = logits(masked(model, plan), x)
    before = count_parameters(model)
    apply_plan_(model, plan, x)
    assert model.encoder.layers[1].linear1.out_features == 48
    assert count_parameters(model) < before - 2 * 2 * 48 * 32
    torch.testing.assert_close(logits(model, x), reference, rtol=1e-4, atol=1e-5)


class Tagger(nn.Module):
    """Embedding → LSTM → per-token tags."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.lstm = nn.LSTM(16, 24, batch_first=True)
        self.tags = nn.Linear(24, 7)

    def forward(self, ids: Tensor) -> Tensor:
        return self.tags(self.lstm(self.embed(ids))[0])


def test_lstm_tagger_is_refused_naming_the_lstm() -> None:
    model, ids = Tagger().eval(), torch.randint(0, 50, (2, 9))
    with pytest.raises(ConfigError, match=r"changed nothing: .*lstm \(nn.LSTM: its hidden"):
        prune_(model, ChannelPruning(ratio=0.5), example_inputs=ids)
    assert model.lstm.hidden_size == 24


def test_partial_coverage_is_recorded_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    model, x = tiny_bert(), tokens()
    with caplog.at_level(logging.WARNING, logger="deepshrink.graph.coverage"):
        prune_(model, ChannelPruning(ratio=0.5), example_inputs=x)
    coverage = coverage_of(model)[-1]
    assert coverage.method == "channel pruning"
    assert "bert.encoder.layer.0.intermediate.dense" in coverage.changed
    assert "pass heads=" in coverage.skipped["bert.encoder.layer.0.attention.self.value"]
    assert "covers only" in caplog.text  # the embeddings hold most of tiny BERT's weights


@pytest.mark.parametrize("case", ["vit", "bert"])
def test_pruned_transformers_reload_from_checkpoint_and_dsz(case: str, tmp_path) -> None:  # noqa: ANN001
    factory, inputs, _ = CASES[case]
    model, x = factory(), inputs()
    prune_channels_(model, ChannelPruning(ratio=0.5), example_inputs=x, heads=0.5)
    expected = logits(model, x)
    path = ds.save_checkpoint(model, tmp_path / case)
    loaded, _ = ds.load_checkpoint(path, model=factory())
    assert torch.equal(logits(loaded.eval(), x), expected)
    ds.save(model, tmp_path / f"{case}.dsz")
    loaded = ds.load(tmp_path / f"{case}.dsz", model=factory())
    assert torch.equal(logits(loaded.eval(), x), expected)


def test_plan_is_json_and_replays_without_inputs() -> None:
    model, x = tiny_gpt2(), tokens()
    plan = json.loads(json.dumps(plan_channel_pruning(model, ChannelPruning(ratio=0.5), x)))
    assert plan["inputs"][0] == {"key": "input_ids", "shape": [2, 8], "dtype": "torch.int64"}
    apply_plan_(model, plan)
    fresh = apply_plan_(tiny_gpt2(), plan)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(logits(fresh, x), logits(model, x))
    with pytest.raises(FormatError, match="does not fit"):
        apply_plan_(tiny_bert(), plan)


class Shuffle(nn.Module):
    """A channel shuffle between two Linear layers on tokens: slicing it would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 8), nn.Linear(8, 6), nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        y = self.a(x).view(*x.shape[:-1], 2, 4).transpose(-1, -2).reshape(*x.shape[:-1], 8)
        return self.c(torch.relu(self.b(y)))


def test_a_channel_shuffle_on_tokens_is_blocked_by_name() -> None:
    model, x = Shuffle(), torch.randn(2, 5, 8)
    plan = plan_channel_pruning(model, ChannelPruning(ratio=0.5), x)
    assert "Transpose" in plan["skipped"]["a"]
    assert [g["root"] for g in plan["groups"]] == ["b"]  # Linear on 3-D tokens: b → c
    reference = logits(masked(model, plan), x)
    apply_plan_(model, plan, x)
    torch.testing.assert_close(logits(model, x), reference, rtol=1e-5, atol=1e-6)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.attention(x, x, x, need_weights=False)[0])


def test_heads_that_remove_no_head_are_an_error_naming_the_attention() -> None:
    model, x = Attention().eval(), torch.randn(2, 6, 8)
    config = ChannelPruning(ratio=0.0, ignore=["attention"])
    with pytest.raises(ConfigError, match=r"heads=0.5 removes no attention head.*attention: ign"):
        prune_channels_(model, config, example_inputs=x, heads=0.5)
    with pytest.raises(ConfigError, match="the model has no such module"):
        plan_channel_pruning(
            Tagger(), ChannelPruning(ratio=0.0), torch.zeros(1, 3).long(), heads=0.5
        )


def test_encoder_heads_and_widths_equal_the_masked_model(tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model, x = EncoderClassifier().eval(), torch.randn(3, 6, 8)
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2, [False] * 5 + [True]])
    plan = plan_channel_pruning(model, ChannelPruning(ratio=0.5), x, heads=0.5)
    assert [e["heads"] for e in plan["multihead"]] == [[4, 2], [4, 2]]
    reference = masked(model, plan)
    before = count_parameters(model)
    apply_plan_(model, plan, x)
    attention = model.encoder.layers[0].self_attn
    assert (attention.num_heads, attention.q_proj.out_features) == (2, 16)
    assert count_parameters(model) < before - 2 * (4 * 16 * 32 + 2 * 48 * 32)
    torch.testing.assert_close(logits(model, x), logits(reference, x), rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # eval + padding mask: the encoder's nested-tensor path is off
        ours = model.encoder(model.embed(x), src_key_padding_mask=padding)
        theirs = reference.encoder(reference.embed(x), src_key_padding_mask=padding)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    path = ds.save_checkpoint(model, tmp_path / "encoder")
    loaded, _ = ds.load_checkpoint(path, model=EncoderClassifier().eval())
    assert torch.equal(logits(loaded.eval(), x), logits(model, x))


@pytest.mark.parametrize("case", ["vit", "bert"])
def test_pruned_transformers_run_in_onnx_runtime(case: str, tmp_path) -> None:  # noqa: ANN001
    ort = pytest.importorskip("onnxruntime")
    factory, inputs, _ = CASES[case]
    model, x = factory(), inputs()
    x = x[:1] if isinstance(x, Tensor) else {k: v[:1] for k, v in x.items()}
    prune_channels_(model, ChannelPruning(ratio=0.5), example_inputs=x, heads=0.5)
    path = ds.export(model, tmp_path / f"{case}.onnx", example_inputs=x)
    session = ort.InferenceSession(str(path))
    named = x if isinstance(x, dict) else {session.get_inputs()[0].name: x}
    feeds = {i.name: named[i.name].numpy() for i in session.get_inputs()}
    result = torch.from_numpy(session.run(None, feeds)[0])
    torch.testing.assert_close(result, logits(model, x), rtol=1e-4, atol=1e-5)


def test_include_selects_the_attention_groups_it_touches() -> None:
    model, x = tiny_bert(), tokens(1)
    plan = plan_channel_pruning(
        model, ChannelPruning(ratio=0.5), x, include="*attention.self*", heads=0.5
    )
    assert [len(g["heads"]) for g in plan["groups"]] == [2, 2]  # heads only, no MLP group
    assert "Embedding" in plan["skipped"]["bert.encoder.layer.1.output.dense"]  # residual stream
