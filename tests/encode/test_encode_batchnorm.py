"""BatchNorm folded into one per-channel scale and shift (``EncodeConfig(batchnorm="fold")``).

Oracles: the unfolded model's evaluation output (the folded file must give the same logits),
the exact file (same tensors elsewhere, more bytes), and files written without the option
(byte for byte what they were: no ``batchnorm`` key in their header).
"""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path

import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.encode import EncodeConfig, pack
from deepshrink.encode.batchnorm import fold_batchnorm
from deepshrink.encode.container import PRELUDE
from deepshrink.errors import ConfigError


def _resnet20_with_statistics() -> nn.Module:
    """ResNet-20 whose BatchNorms hold non-trivial weights, biases and running statistics."""
    torch.manual_seed(0)
    model = ds.zoo.create("resnet20")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.2, 3.0)
    return model.eval()


def _header(path: Path) -> dict:
    data = path.read_bytes()
    size = PRELUDE.unpack_from(data)[3]
    return json.loads(zlib.decompress(data[PRELUDE.size : PRELUDE.size + size]))


def test_folded_file_gives_the_same_logits_in_fewer_bytes(tmp_path: Path) -> None:
    model = _resnet20_with_statistics()
    exact = ds.save(model, tmp_path / "exact.dsz")
    folded = ds.save(model, tmp_path / "fold.dsz", EncodeConfig(batchnorm="fold"))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        got = ds.load(folded).eval()(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4), (got - expected).abs().max()
    # four vectors became two: 19 layers x 2 x C floats fewer, give or take a few header bytes
    channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert exact.stat().st_size - folded.stat().st_size >= 2 * 4 * channels - 19 * 64
    loaded = ds.load(folded)
    for name, module in loaded.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.running_mean, torch.zeros_like(module.running_mean)), name
            assert torch.equal(module.running_var, torch.ones_like(module.running_var)), name
    assert _header(folded)["encoding"]["batchnorm"] == "fold"
    assert "batchnorm" not in _header(exact)["encoding"]  # default files are unchanged
    for name, tensor in model.state_dict().items():  # the model passed in is untouched
        assert torch.equal(tensor, model.state_dict()[name])


def test_folding_with_half_width_floats_keeps_the_accuracy_of_the_rounding(tmp_path) -> None:
    model = _resnet20_with_statistics()
    path = ds.save(model, tmp_path / "m.dsz", EncodeConfig(batchnorm="fold", floats="float16"))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        reference = ds.load(ds.save(model, tmp_path / "h.dsz", EncodeConfig(floats="float16")))
        half_error = (reference.eval()(x) - expected).abs().max()
        fold_error = (ds.load(path).eval()(x) - expected).abs().max()
    assert fold_error <= 4 * half_error + 1e-4  # rounding of 2 vectors instead of 4


def test_unfoldable_batchnorm_is_kept_and_named(caplog: pytest.LogCaptureFixture) -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4, affine=False)
    ).eval()
    state = net.state_dict()
    with caplog.at_level(logging.INFO, logger="deepshrink.encode.batchnorm"):
        out, folded = fold_batchnorm(net, state)
    assert folded == ["1"]
    assert "stored as they are" in caplog.text and ": 3" in caplog.text
    assert torch.equal(out["3.running_var"], state["3.running_var"])


def test_a_model_without_batchnorm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no BatchNorm layer"):
        ds.save(ds.zoo.create("digits_mlp"), tmp_path / "m.dsz", EncodeConfig(batchnorm="fold"))
    assert not (tmp_path / "m.dsz").exists()


def test_size_table_of_a_model_counts_the_folded_file(tmp_path: Path) -> None:
    model = _resnet20_with_statistics()
    config = EncodeConfig(batchnorm="fold")
    path = ds.save(model, tmp_path / "m.dsz", config)
    assert ds.size_table(model, config).total.bytes_pqh == path.stat().st_size
    assert ds.size_table(path).total.bytes_pqh == path.stat().st_size


def test_default_encoding_record_has_no_batchnorm_key() -> None:
    data = pack({"w": torch.ones(3)}, EncodeConfig(), arch=None)
    size = PRELUDE.unpack_from(data)[3]
    header = json.loads(zlib.decompress(data[PRELUDE.size : PRELUDE.size + size]))
    assert "batchnorm" not in header["encoding"]
    assert EncodeConfig(**header["encoding"]).batchnorm == "exact"
