"""Dense, file and gzip sizes against files written and compressed independently."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file, save_model
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.eval import dense_bytes, file_bytes, gzip_bytes, saved_size


def lenet_300_100() -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
        nn.Linear(100, 10),
    )  # fmt: skip


def test_dense_bytes_is_fp32_parameters() -> None:
    # 784·300+300 + 300·100+100 + 100·10+10 = 266,610 parameters (Deep Compression's baseline)
    assert dense_bytes(lenet_300_100()) == 266_610 * 4 == 1_066_440


def test_dense_bytes_leaves_out_buffers() -> None:
    # conv 2·1·3·3 + 2 = 20, batch norm weight + bias = 4; running stats are buffers
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    assert dense_bytes(model) == 24 * 4


def test_file_bytes_is_size_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.rand(10, 7)}, str(path))
    assert file_bytes(path) == os.path.getsize(path)


def test_gzip_bytes_matches_gzip_module(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    data = bytes(range(256)) * 5000 + torch.rand(3000).numpy().tobytes()  # over one read chunk
    path.write_bytes(data)
    assert gzip_bytes(path) == len(gzip.compress(data, compresslevel=9))


def test_saved_size_measures_safetensors_file(tmp_path: Path) -> None:
    model = lenet_300_100()
    path = tmp_path / "model.safetensors"
    save_model(model, str(path))
    assert saved_size(model) == (os.path.getsize(path), gzip_bytes(path))


def test_saved_size_deletes_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    saved_size(nn.Linear(3, 3))
    assert list(tmp_path.iterdir()) == []


def test_mostly_zero_model_gzips_well() -> None:
    model = nn.Linear(100, 100)
    with torch.no_grad():
        model.weight[5:] = 0
    size, gzipped = saved_size(model)
    assert size > dense_bytes(model)  # header and names on top of the raw tensors
    assert gzipped < size / 5


def test_shared_tensors_are_saved_once() -> None:
    first, second = nn.Linear(50, 50), nn.Linear(50, 50)
    second.weight = first.weight
    shared, _ = saved_size(nn.Sequential(first, second))
    separate, _ = saved_size(nn.Sequential(nn.Linear(50, 50), nn.Linear(50, 50)))
    assert separate - shared >= 50 * 50 * 4


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        file_bytes(tmp_path / "absent.dsz")
    with pytest.raises(ConfigError, match="no such file"):
        gzip_bytes(tmp_path / "absent.dsz")
