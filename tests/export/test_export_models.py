"""Users' models export to ONNX and run in ONNX Runtime: token inputs, keyword and positional
inputs, Hugging Face outputs, transformers and recurrent nets (tiny configs, random weights)."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.errors import ConfigError
from deepshrink.export import ExportError, compare_latency, evaluate_onnx, predict
from deepshrink.export import onnx as onnx_export
from deepshrink.graph.io import call, logits_of, map_tensors

VOCAB, TOKENS = 100, 12


def _ids(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, TOKENS), generator=generator)


def _bert() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        vocab_size=VOCAB, num_labels=3,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def _bert_inputs(n: int, generator: torch.Generator) -> dict:
    mask = torch.ones(n, TOKENS, dtype=torch.long)
    mask[: n // 2, TOKENS - 3 :] = 0  # padded sentences
    return {"input_ids": _ids(n, generator), "attention_mask": mask}


def _gpt2() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB,
                                     n_positions=32, bos_token_id=0, eos_token_id=0)  # fmt: skip
    return transformers.GPT2LMHeadModel(config)  # lm_head tied to wte, Conv1D layers


def _vit() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=64, image_size=16, patch_size=4,
                                    num_labels=5)  # fmt: skip
    return transformers.ViTForImageClassification(config)


class Tagger(nn.Module):
    """Embedding → LSTM → per-token tags (N, T, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding, self.lstm = nn.Embedding(VOCAB, 16), nn.LSTM(16, 32, batch_first=True)
        self.tags = nn.Linear(32, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tags(self.lstm(self.embedding(tokens))[0])


class Encoder(nn.Module):
    """Embedding → nn.TransformerEncoder (2 layers) → mean → classes."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(32, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embedding(tokens)).mean(1))


class Attention(nn.Module):
    """nn.MultiheadAttention alone, then a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.attention, self.head = nn.MultiheadAttention(16, 4, batch_first=True), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attention(x, x, x)[0].mean(1))


class TwoInputs(nn.Module):
    """Two positional inputs of different shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(8, 16), nn.Linear(4, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.a(x) + self.b(z)))


#: name → (model factory, inputs(n, generator), static int8 bound, integer inputs).
#: Bounds: the largest |ONNX Runtime − PyTorch| as a fraction of the largest |PyTorch logit|
#: on 16 fresh inputs; dynamic int8 is held to 5 % everywhere. ONNX Runtime's static QDQ
#: quantization of every op (softmax, residual adds, GPT-2's causal mask) costs more on random
#: random networks (measured: BERT 3 %, ViT 14 %, LSTM 13 %, TransformerEncoder 24 %, GPT-2 34 %);
#: test_integer_kernels_compute_what_the_static_qdq_graph_means checks the kernels tightly.
MODELS = {
    "bert": (_bert, _bert_inputs, 0.10, True),
    "gpt2": (_gpt2, lambda n, g: {"input_ids": _ids(n, g)}, 0.50, True),
    "vit": (_vit, lambda n, g: torch.rand(n, 3, 16, 16, generator=g), 0.25, False),
    "lstm_tagger": (Tagger, _ids, 0.25, True),
    "transformer_encoder": (Encoder, _ids, 0.35, True),
    "multihead_attention": (
        Attention,
        lambda n, g: torch.rand(n, 6, 16, generator=g),
        0.05,
        False,
    ),  # fmt: skip
    "two_inputs": (
        TwoInputs,
        lambda n, g: (torch.rand(n, 8, generator=g), torch.rand(n, 4, generator=g)),
        0.10,
        False,
    ),  # fmt: skip
}
PRECISIONS = ("fp32", "static", "dynamic")


def _calibration(inputs, generator: torch.Generator) -> list:
    """Labelled batches as a user has them: dicts with ``labels``, or (inputs, labels) pairs."""
    batches = []
    for _ in range(4):
        x = inputs(8, generator)
        labels = torch.zeros(8, dtype=torch.long)
        batches.append({**x, "labels": labels} if isinstance(x, dict) else (x, labels))
    return batches


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("models")
    built = {}
    for name, (factory, inputs, _, _) in MODELS.items():
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(1)
        model = factory().eval()
        calibration = _calibration(inputs, generator)
        options = {"fp32": {}, "dynamic": {"int8": "dynamic"},
                   "static": {"int8": True, "calibration": calibration}}  # fmt: skip
        with torch.no_grad():  # as users call it: export must still avoid the fused fast paths
            files = {kind: ds.export(model, folder / f"{name}.{kind}.onnx",
                                     example_inputs=inputs(2, generator), **options[kind])
                     for kind in PRECISIONS}  # fmt: skip
        x = inputs(16, generator)
        with torch.no_grad():
            expected = logits_of(call(model, x)).numpy()
        built[name] = (model, files, x, expected)
    return built


@pytest.mark.parametrize("name", list(MODELS))
def test_fp32_onnx_runtime_equals_pytorch_at_another_batch_size(exported, name) -> None:
    _, files, x, expected = exported[name]
    got = predict(files["fp32"], x)
    assert got.shape == expected.shape and got.shape[0] == 16  # exported at batch 2
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision", ["static", "dynamic"])
@pytest.mark.parametrize("name", list(MODELS))
def test_int8_onnx_runtime_is_close_to_pytorch(exported, name, precision) -> None:
    _, files, x, expected = exported[name]
    got = predict(files[precision], x)
    bound = MODELS[name][2] if precision == "static" else 0.05
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert error <= bound, f"{name} {precision}: {error:.3f} of the output range"
    agreement = 0.8 if precision == "static" else 0.9  # random weights: small logit margins
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= agreement


@pytest.mark.parametrize("name", [n for n, spec in MODELS.items() if spec[3]])
def test_token_ids_stay_int64_inputs_of_the_graph(exported, name) -> None:
    _, files, _, _ = exported[name]
    for path in files.values():
        graph = onnx.load(str(path)).graph
        assert graph.input and all(
            value.type.tensor_type.elem_type == onnx.TensorProto.INT64 for value in graph.input
        ), path.name


def _input_names(path) -> list[tuple[str, str]]:
    graph = onnx.load(str(path)).graph
    return [(value.name, value.type.tensor_type.shape.dim[0].dim_param) for value in graph.input]


def test_inputs_are_named_by_keyword_or_position_with_a_dynamic_batch(exported) -> None:
    assert _input_names(exported["bert"][1]["fp32"]) == [
        ("input_ids", "batch"), ("attention_mask", "batch")
    ]  # fmt: skip
    assert _input_names(exported["two_inputs"][1]["static"]) == [
        ("input", "batch"), ("input_1", "batch")
    ]  # fmt: skip


def test_the_tied_gpt2_embedding_is_stored_once(exported) -> None:
    """One tensor for ``wte`` and ``lm_head`` (constant folding would add a transposed copy)."""
    model, files, _, _ = exported["gpt2"]
    assert model.lm_head.weight is model.transformer.wte.weight
    graph = onnx.load(str(files["fp32"])).graph
    shapes = [list(init.dims) for init in graph.initializer]
    assert sum(1 for shape in shapes if shape in ([VOCAB, 32], [32, VOCAB])) == 1


def _unoptimized(path, x) -> np.ndarray:
    """ONNX Runtime's output with graph optimisations off: the QDQ graph computed in float."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return predict(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), x)


@pytest.mark.parametrize("name", list(MODELS))
def test_integer_kernels_compute_what_the_static_qdq_graph_means(exported, name) -> None:
    """ONNX Runtime's fused int8 kernels against the same graph run in float: only rounding
    differences (measured up to 3.8 %, ViT), no overflow. With int8 weights (U8S8 kernels, which
    saturate on CPUs without VNNI) the two-input MLP was 22 % off and ViT 9.8 % on AVX2."""
    _, files, x, _ = exported[name]
    fused, reference = predict(files["static"], x), _unoptimized(files["static"], x)
    assert np.abs(fused - reference).max() <= 0.05 * np.abs(reference).max()


class Outputs(nn.Module):
    """Returns a dict with two tensors; neither is called ``logits``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> dict:
        y = self.linear(x)
        return {"hidden": y, "scores": y[:, :3] * 2}


@pytest.mark.parametrize(("select", "expected"), [(None, "hidden"), ("scores", "scores"),
                                                  (1, "scores")])  # fmt: skip
def test_the_exported_output_is_the_selected_prediction(tmp_path, select, expected) -> None:
    model, x = Outputs(), torch.rand(5, 4)
    path = ds.export(model, tmp_path / "m.onnx", example_inputs=x, select=select)
    with torch.no_grad():
        np.testing.assert_allclose(predict(path, x), model(x)[expected].numpy(), atol=1e-6)


def test_a_missing_output_key_is_refused_by_name(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no tensor 'logits'.*'hidden', 'scores'"):
        ds.export(Outputs(), tmp_path / "m.onnx", example_inputs=torch.rand(2, 4), select="logits")


def test_onnx_runtime_evaluates_per_token_outputs_and_dict_batches(exported) -> None:
    model, files, _, _ = exported["lstm_tagger"]
    generator = torch.Generator().manual_seed(2)
    tokens = _ids(10, generator)
    labels = torch.randint(0, 5, (10, TOKENS), generator=generator)
    labels[:, -2:] = -100  # padding is not scored
    with torch.no_grad():
        predicted = model(tokens).argmax(-1)
    keep = labels != -100
    expected = (predicted[keep] == labels[keep]).float().mean().item()
    result = evaluate_onnx(files["fp32"], [(tokens[:6], labels[:6]), (tokens[6:], labels[6:])])
    assert result.count == int(keep.sum()) and result.top1 == pytest.approx(expected)
    bert, bert_files, x, logits = exported["bert"]
    batch = {**x, "labels": torch.as_tensor(logits.argmax(-1))}
    assert evaluate_onnx(bert_files["fp32"], [batch]).top1 == 1.0


def test_the_dynamo_exporter_takes_keyword_token_inputs(exported, tmp_path) -> None:
    model, _, x, expected = exported["bert"]
    path = ds.export(model, tmp_path / "d.onnx", exporter="dynamo",
                     example_inputs=map_tensors(x, lambda t: t[:1]))  # fmt: skip
    types = [v.type.tensor_type.elem_type for v in onnx.load(str(path)).graph.input]
    assert types == [onnx.TensorProto.INT64] * 2
    np.testing.assert_allclose(predict(path, x), expected, rtol=1e-4, atol=1e-5)


def test_the_dynamo_exporter_is_tried_when_torchscript_fails(monkeypatch, tmp_path, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator\n" + "graph(%x : Float(2, 8)) ...\n" * 50)

    monkeypatch.setattr(onnx_export, "_torchscript", broken)
    model, x = TwoInputs().eval(), (torch.rand(3, 8), torch.rand(3, 4))
    with caplog.at_level(logging.DEBUG, logger="deepshrink.export.onnx"):
        path = ds.export(model, tmp_path / "m.onnx", example_inputs=x)
    assert "dynamo exporter" in caplog.text and "Traceback" in caplog.text  # full trace: debug
    with torch.no_grad():
        np.testing.assert_allclose(predict(path, x), model(*x).numpy(), atol=1e-5)


def test_an_export_failure_is_one_line_without_the_graph_dump(monkeypatch, tmp_path) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator\n" + "graph(%x : Float(2, 8)) ...\n" * 50)

    monkeypatch.setattr(onnx_export, "_torchscript", broken)
    monkeypatch.setattr(onnx_export, "_dynamo", broken)
    with pytest.raises(ExportError) as caught:
        ds.export(TwoInputs(), tmp_path / "m.onnx", example_inputs=(torch.rand(2, 8),
                                                                    torch.rand(2, 4)))  # fmt: skip
    message = str(caught.value)
    assert "\n" not in message and "graph(" not in message
    assert "torchscript exporter: unsupported operator" in message
    assert "dynamo exporter: unsupported operator" in message
    assert "try exporter='dynamo'" not in message  # it was tried
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert not (tmp_path / "m.onnx").exists()


def test_latency_of_token_and_two_input_files_uses_each_graph_input(exported) -> None:
    for name in ("bert", "two_inputs"):
        files = exported[name][1]
        sources = {kind: files[kind] for kind in ("fp32", "dynamic")}
        times = compare_latency(sources, batch_sizes=(2,), rounds=2, block_seconds=0.01)
        assert all(t[2].batch_size == 2 and t[2].median_seconds > 0 for t in times.values())


def test_token_models_export_with_a_dynamic_sequence_length_when_asked(exported, tmp_path):
    model, _, x, _ = exported["bert"]
    path = ds.export(model, tmp_path / "b.onnx", example_inputs=x, dynamic_sequence=True)
    longer = map_tensors(x, lambda t: torch.cat([t, t[:, :5]], 1))  # 17 tokens, exported at 12
    with torch.no_grad():
        expected = model(**longer).logits.numpy()
    np.testing.assert_allclose(predict(path, longer), expected, rtol=1e-4, atol=1e-5)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "sequence"]


def test_a_graph_that_fixed_the_sequence_length_is_refused(exported, tmp_path) -> None:
    model, _, x, _ = exported["transformer_encoder"]  # the traced attention bakes the length
    with pytest.raises(ExportError, match="fixed the sequence length.*dynamic_sequence=False"):
        ds.export(model, tmp_path / "e.onnx", example_inputs=x, exporter="torchscript",
                  dynamic_sequence=True)  # fmt: skip
    assert not (tmp_path / "e.onnx").exists()
    path = ds.export(
        model, tmp_path / "d.onnx", example_inputs=x, exporter="dynamo", dynamic_sequence=True
    )  # fmt: skip  (the advice given works)
    longer = torch.cat([x, x[:, :5]], 1)
    with torch.no_grad():
        np.testing.assert_allclose(predict(path, longer), model(longer).numpy(), atol=1e-5)
