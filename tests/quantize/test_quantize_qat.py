"""Quantization-aware training: BN folding, fake-quantized layers, training through them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.errors import ConfigError
from deepshrink.functional import quant as Q
from deepshrink.graph import structure_of
from deepshrink.prune import MagnitudePruning, prune_
from deepshrink.quantize import (
    FakeQuantize,
    QuantAwareTraining,
    QuantScheme,
    convert_qat_,
    fold_batchnorm_,
    is_qat,
    prepare_qat_,
    qat_layers,
    quantization,
    quantize_,
)

from .conftest import tiny_cnn


class ConvBN(nn.Module):
    """conv → BN → ReLU twice, a residual add and a linear head, on 1×8×8 inputs."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)) + x)
        return self.fc(x.flatten(1))


def trained_convbn(images) -> ConvBN:
    torch.manual_seed(0)
    model = ConvBN()
    ds.fit(model, images, epochs=2, lr=0.05, batch_size=16, threads=1, progress=False)
    return model.eval()


def test_folding_batchnorm_keeps_the_eval_output_and_survives_a_checkpoint(images, tmp_path):
    model = trained_convbn(images)
    x = images.images[:16]
    before = model(x)
    assert fold_batchnorm_(model) == ["conv1", "conv2"]
    assert isinstance(model.bn1, nn.Identity) and model.conv1.bias is not None
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)
    path = ds.train.save_checkpoint(model, tmp_path / "folded")
    fresh, _ = ds.train.load_checkpoint(path, ConvBN())
    torch.testing.assert_close(fresh.eval()(x), before, atol=1e-5, rtol=1e-5)


def test_a_batchnorm_whose_input_is_shared_is_not_folded():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    assert fold_batchnorm_(Shared().eval()) == []


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_weight_quantizer_puts_each_channel_on_a_grid_of_2_to_the_bits_values(granularity):
    weight = torch.randn(6, 5, 3, 3) * torch.linspace(0.01, 3, 6).reshape(6, 1, 1, 1)
    quantizer = FakeQuantize(
        QuantScheme(bits=3, granularity=granularity), mode="weight", channels=6
    )
    out = quantizer(weight)
    for row in out:
        assert len(row.unique()) <= 2**3
    scale = quantizer.scale.reshape(-1, 1, 1, 1) if granularity == "channel" else quantizer.scale
    # on the grid, and within half a step of the float weights (min-max: nothing is clipped)
    torch.testing.assert_close(out / scale, torch.round(out / scale), atol=1e-4, rtol=0)
    assert bool(((out - weight).abs() <= scale / 2 + 1e-6).all())


def test_learnable_scale_equals_the_fixed_grid_value_and_gets_a_gradient():
    x = torch.randn(200)
    scale = torch.tensor(0.05, requires_grad=True)
    learned = Q.fake_quantize_learnable(x, scale, 0, bits=4)
    fixed = Q.fake_quantize(x, 0.05, 0, bits=4)
    torch.testing.assert_close(learned.detach(), fixed, atol=1e-6, rtol=0)
    (grad,) = torch.autograd.grad((learned - 2 * x).pow(2).sum(), scale)
    assert grad.item() != 0.0


def test_prepared_model_swaps_layers_calibrates_and_stays_close_to_float(images):
    model = trained_convbn(images)
    x = images.images[:32]
    reference = model(x)
    quantize_(model, QuantAwareTraining(), calibration=images)
    assert sorted(qat_layers(model)) == ["conv1", "conv2", "fc"]
    assert all(isinstance(layer, nn.Conv2d) for layer in (model.conv1, model.conv2))
    assert float(model.conv1.input_quantizer.scale) == pytest.approx(1 / 255, rel=0.05)
    out = model(x)
    assert (out - reference).abs().max() < 0.05 * reference.abs().max()
    assert (out.argmax(1) == reference.argmax(1)).float().mean() >= 0.9


def _accuracy(model: nn.Module, data) -> float:
    return ds.train.evaluate(model, data).top1


def test_training_through_2_bit_quantizers_recovers_what_post_training_loses():
    data = ds.data.load("digits")
    torch.manual_seed(0)
    float_model = ConvBN(classes=10)
    ds.fit(float_model, data, epochs=3, lr=0.05, batch_size=32, threads=1, progress=False)
    config = QuantAwareTraining(
        weights={"bits": 2, "granularity": "tensor"},
        activations={"bits": 4, "signed": False, "symmetric": False},
    )
    ptq = prepare_qat_(copy.deepcopy(float_model).eval(), config, calibration=data).eval()
    qat = prepare_qat_(copy.deepcopy(float_model).eval(), config, calibration=data)
    ds.fit(qat, data, epochs=1, lr=0.01, batch_size=32, threads=1, progress=False)
    assert _accuracy(qat.eval(), data.test) > _accuracy(ptq, data.test) + 0.1


def test_learnable_scales_train(images):
    model = prepare_qat_(tiny_cnn(), QuantAwareTraining(learnable_scale=True), calibration=images)
    before = model[0].input_quantizer.scale.item()
    ds.fit(model, images, epochs=1, lr=0.05, batch_size=16, threads=1, progress=False)
    assert isinstance(model[0].input_quantizer.scale, nn.Parameter)
    assert model[0].input_quantizer.scale.item() != before


def test_pruned_weights_stay_zero_through_training(images):
    model = tiny_cnn()
    prune_(model, MagnitudePruning(sparsity=0.6))
    ds.prune.finalize_(model)
    zeros = {
        name: layer.weight == 0 for name, layer in model.named_modules() if hasattr(layer, "weight")
    }
    prepare_qat_(model, QuantAwareTraining(), calibration=images)
    ds.fit(model, images, epochs=2, lr=0.1, batch_size=16, threads=1, progress=False)
    for name, layer in qat_layers(model).items():
        assert bool((layer.weight[zeros[name]] == 0).all())
        assert bool((layer.weight_quantizer(layer.weight)[zeros[name]] == 0).all())
    assert all(bool((zeros[name]).any()) for name in qat_layers(model))


def test_checkpoint_of_a_prepared_model_reloads_with_its_scales(images, tmp_path):
    model = ds.zoo.create("lenet5")
    data = torch.rand(8, 1, 28, 28)
    prepare_qat_(model, QuantAwareTraining(learnable_scale=True), calibration=data)
    with torch.no_grad():
        model.fc1.input_quantizer.scale.mul_(1.5)
    model.eval()
    path = ds.train.save_checkpoint(model, tmp_path / "qat")
    fresh, _ = ds.train.load_checkpoint(path)
    assert is_qat(fresh.fc1)
    torch.testing.assert_close(fresh.eval()(data), model(data))


def test_convert_leaves_plain_layers_with_weights_on_the_grid(images):
    model = prepare_qat_(tiny_cnn(), QuantAwareTraining(weights={"bits": 3}), calibration=images)
    convert_qat_(model)
    assert not qat_layers(model) and type(model[0]) is nn.Conv2d
    assert all(e["kind"] != "quantize.qat" for e in structure_of(model))
    for row in model[3].weight:
        assert len(row.unique()) <= 2**3


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"weights": {"bits": 0}}, "greater than or equal to 2"),
        ({"weights": {"bits": 17}}, "less than or equal to 16"),
        ({"activations": {"observer": "minmaxx"}}, "did you mean 'minmax'"),
        ({"weights": {"granularity": "group", "group_size": 4}}, "'group' is not supported"),
        ({"activations": {"granularity": "channel"}}, "granularity 'tensor'"),
        ({"learnable": True}, "learnable"),
    ],
)
def test_bad_settings_are_one_line_config_errors(settings, fragment):
    with pytest.raises(ConfigError, match=fragment):
        quantization("qat", **settings)


def test_activations_without_calibration_data_is_refused():
    with pytest.raises(ConfigError, match="needs calibration= data"):
        quantize_(tiny_cnn(), QuantAwareTraining())
    # weights only needs no data
    model = quantize_(tiny_cnn(), QuantAwareTraining(activations=None))
    assert model[0].input_quantizer is None


def test_a_token_model_is_calibrated_on_its_token_ids_and_exports_like_it_computes(tmp_path):
    """Tiny BERT, keyword int64 inputs: QAT calibration, then the int8 file in ONNX Runtime."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("onnxruntime")
    import onnx

    from deepshrink.export import predict

    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        vocab_size=100, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    generator = torch.Generator().manual_seed(0)

    def batch(n: int) -> dict[str, torch.Tensor]:
        ids = torch.randint(0, 100, (n, 12), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones(n, 12, dtype=torch.long)}

    prepare_qat_(model, QuantAwareTraining(), calibration=[batch(8) for _ in range(4)])
    layers = qat_layers(model)
    assert len(layers) == 2 * 6 + 2  # q, k, v, out, up, down per layer; pooler; classifier
    assert all(bool(layer.input_quantizer.calibrated) for layer in layers.values())
    path = ds.export(model.eval(), tmp_path / "bert.onnx", int8=True, example_inputs=batch(2))
    graph = onnx.load(str(path)).graph
    assert [v.type.tensor_type.elem_type for v in graph.input] == [onnx.TensorProto.INT64] * 2
    x = batch(16)
    with torch.no_grad():
        expected = model(**x).logits.numpy()
    got = predict(path, x)
    assert np.abs(got - expected).max() <= 0.01 * np.abs(expected).max()


def test_gpt2_conv1d_layers_train_quantized_and_export_as_the_model_computes(tmp_path):
    """Hugging Face Conv1D (weights in × out): per-output-channel grids along axis 1."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("onnxruntime")
    from deepshrink.export import predict
    from deepshrink.graph.coverage import coverage_of

    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100,
                                     n_positions=32, bos_token_id=0, eos_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    generator = torch.Generator().manual_seed(0)
    x = {"input_ids": torch.randint(0, 100, (8, 12), generator=generator)}
    with torch.no_grad():
        reference = model(**x).logits
    batches = [{"input_ids": torch.randint(0, 100, (8, 12), generator=generator)}] * 2
    prepare_qat_(model, QuantAwareTraining(), calibration=batches)
    attention = model.transformer.h[0].attn.c_attn
    assert is_qat(attention) and attention.weight_quantizer.scale.shape == (96,)  # out channels
    assert model.lm_head.weight is model.transformer.wte.weight  # the tie is kept
    skipped = coverage_of(model)[-1].skipped
    assert "table lookup" in skipped["transformer.wpe"]
    with torch.no_grad():
        quantized = model.eval()(**x).logits
    assert not torch.equal(quantized, reference)
    assert (quantized - reference).abs().max() <= 0.05 * reference.abs().max()
    path = ds.export(model, tmp_path / "gpt2.onnx", int8=True, example_inputs=x)
    got = predict(path, x)
    assert np.abs(got - quantized.numpy()).max() <= 0.01 * quantized.abs().max().item()
    plain = convert_qat_(copy.deepcopy(model)).transformer.h[0].attn.c_attn
    assert type(plain).__name__ == "Conv1D"


class Lookup(nn.Module):
    """Only an embedding and a recurrent layer: nothing quantization-aware training covers."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding, self.gru = nn.Embedding(20, 4), nn.GRU(4, 4, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.gru(self.embedding(tokens))[0]


def test_a_model_without_linear_or_conv_layers_is_refused_with_each_reason():
    tokens = torch.randint(0, 20, (4, 5))
    with pytest.raises(ConfigError, match=r"no layer.*embedding \(an embedding is a table.*GRU"):
        prepare_qat_(Lookup(), QuantAwareTraining(), calibration=tokens)


def test_skipped_weights_are_named_with_their_reason_in_a_warning(caplog):
    class Tagger(Lookup):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(4, 3)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.head(super().forward(tokens))

    tokens = torch.randint(0, 20, (4, 5))
    with caplog.at_level("WARNING"):
        model = prepare_qat_(Tagger(), QuantAwareTraining(), calibration=tokens)
    assert list(qat_layers(model)) == ["head"]
    assert "covers only" in caplog.text and "GRU gates run in a fused kernel" in caplog.text
