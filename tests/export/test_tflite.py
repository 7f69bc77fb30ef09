"""TFLite export → LiteRT interpreter → the same predictions as PyTorch, in every mode."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.errors import ConfigError

pytest.importorskip("litert_torch", reason="the tflite extra is not installed "
                    "(pip install 'deepshrink[tflite]')")  # fmt: skip
pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")

from deepshrink.export.tflite import (  # noqa: E402
    describe_tflite,
    evaluate_tflite,
    export_tflite,
    interpreter,
    predict_tflite,
    runner,
)


class TinyCNN(nn.Module):
    """conv 3×3 → ReLU → max-pool → flatten → dense, on 8×8 digits."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(channels * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def digits() -> ds.data.Data:
    return ds.data.load("digits")


@pytest.fixture(scope="module")
def trained(digits) -> nn.Module:
    torch.manual_seed(0)
    model = TinyCNN()
    ds.fit(model, digits, epochs=2, lr=0.05, batch_size=32, threads=1, progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def held_batch(digits) -> tuple[torch.Tensor, torch.Tensor]:
    return digits.test.without_transform().batch(torch.arange(128))


@pytest.fixture(scope="module")
def files(trained, digits, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("tflite")
    example = torch.rand(1, 1, 8, 8)
    return {
        "fp32": ds.export(trained, folder / "m.tflite", example_inputs=example),
        "fp16": export_tflite(trained, folder / "h.tflite", fp16=True, example_inputs=example),
        "dynamic": ds.export(
            trained, folder / "d.bin", format="tflite", int8="dynamic", example_inputs=example
        ),  # fmt: skip
        "int8": export_tflite(
            trained, folder / "q.tflite", int8=True, calibration=digits, example_inputs=example
        ),  # fmt: skip
    }


def _torch(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


def test_fp32_file_predicts_what_pytorch_does(trained, files, held_batch):
    x = held_batch[0]
    assert files["fp32"].read_bytes()[4:8] == b"TFL3"
    np.testing.assert_allclose(predict_tflite(files["fp32"], x), _torch(trained, x), atol=1e-4)


def test_fp16_file_computes_with_the_weights_rounded_to_half(trained, files, held_batch):
    rounded = copy.deepcopy(trained)
    for layer in (rounded.conv, rounded.fc):
        layer.weight.data = layer.weight.data.half().float()
    x = held_batch[0]
    got = predict_tflite(files["fp16"], x)
    np.testing.assert_allclose(got, _torch(rounded, x), atol=1e-4)
    weights = trained.conv.weight.numel() + trained.fc.weight.numel()
    assert describe_tflite(files["fp16"])["tensor_bytes"]["float16"] == 2 * weights


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_int8_files_agree_with_pytorch_within_quantization_error(trained, files, held_batch,
                                                                 mode):  # fmt: skip
    x, labels = held_batch
    expected, got = _torch(trained, x), predict_tflite(files[mode], x)
    spread = expected.max() - expected.min()
    assert np.abs(got - expected).max() <= 0.05 * spread
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.97
    weights = trained.conv.weight.numel() + trained.fc.weight.numel()
    assert describe_tflite(files[mode])["tensor_bytes"]["int8"] >= weights
    assert "float32" not in describe_tflite(files["int8"])["tensor_bytes"]


def test_full_int8_file_takes_int8_inputs_and_stores_int8_weights(trained, files):
    info = describe_tflite(files["int8"])
    (entry,) = info["inputs"]
    assert entry["dtype"] == "int8" and entry["quantization"]["scale"] > 0
    weights = trained.conv.weight.numel() + trained.fc.weight.numel()
    assert info["tensor_bytes"]["int8"] >= weights
    assert "float32" not in info["tensor_bytes"]
    assert info["ops"].get("FULLY_CONNECTED") == 1


def test_describe_counts_the_float_parameters_of_the_fp32_file(trained, files):
    info = describe_tflite(files["fp32"])
    parameters = sum(p.numel() for p in trained.parameters())
    assert info["tensor_bytes"]["float32"] >= 4 * parameters
    assert info["inputs"][0]["shape"] == [1, 1, 8, 8] and info["outputs"][0]["shape"] == [1, 10]


def test_evaluate_tflite_scores_like_pytorch(trained, files, digits):
    expected = ds.train.evaluate(trained, digits.test)
    got = evaluate_tflite(files["fp32"], digits.test)
    assert got.count == expected.count
    assert got.top1 == pytest.approx(expected.top1, abs=1.5 / got.count)
    assert got.loss == pytest.approx(expected.loss, rel=1e-3)


def test_runner_runs_one_inference_and_refuses_another_batch(files):
    interp = interpreter(files["int8"])
    call = runner(interp, 1)
    call()
    out = interp.get_output_details()[0]
    assert interp.get_tensor(out["index"]).shape == (1, 10)
    with pytest.raises(ConfigError, match="fixed batch size of 1"):
        runner(files["int8"], 8)


def test_channel_pruned_model_exports_smaller_with_the_same_predictions(
    trained, files, held_batch, tmp_path
):
    model = copy.deepcopy(trained)
    ds.prune_(model, ds.ChannelPruning(ratio=0.5), example_inputs=torch.rand(1, 1, 8, 8))
    assert model.conv.out_channels == 4
    path = export_tflite(model, tmp_path / "pruned.tflite", example_inputs=torch.rand(1, 1, 8, 8))
    x = held_batch[0]
    np.testing.assert_allclose(predict_tflite(path, x), _torch(model, x), atol=1e-4)
    assert path.stat().st_size < 0.7 * files["fp32"].stat().st_size


def test_factorized_and_kmeans_shared_model_predicts_what_pytorch_does(trained, held_batch,
                                                                       tmp_path):  # fmt: skip
    model = copy.deepcopy(trained)
    ds.factorize_(model, ds.SVDFactorization(energy=0.9))
    ds.quantize_(model, ds.KMeansQuantization(bits=4))
    path = export_tflite(model, tmp_path / "shared.tflite", example_inputs=torch.rand(1, 1, 8, 8))
    x = held_batch[0]
    np.testing.assert_allclose(predict_tflite(path, x), _torch(model, x), atol=1e-4)
    assert describe_tflite(path)["ops"]["FULLY_CONNECTED"] == 2  # the two SVD factors


def test_conversion_and_quantization_print_nothing_and_leave_logging_alone(tmp_path, capfd):
    import logging

    cli_like = logging.StreamHandler()  # as the command line installs on the root logger
    logging.root.addHandler(cli_like)
    try:
        handlers = list(logging.root.handlers)
        capfd.readouterr()
        path = export_tflite(nn.Linear(4, 3).eval(), tmp_path / "lin.tflite", int8="dynamic",
                             example_inputs=torch.rand(1, 4))  # fmt: skip
        predict_tflite(path, torch.rand(3, 4))
        captured = capfd.readouterr()
        assert captured.out == "" and captured.err == ""
        assert logging.root.handlers == handlers
    finally:
        logging.root.removeHandler(cli_like)
