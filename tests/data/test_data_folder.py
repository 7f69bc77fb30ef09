"""image_folder: ImageFolder layout read with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deepshrink.data as dsdata
from deepshrink.errors import ConfigError, DataError


def write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_grayscale_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = {name: rng.integers(0, 256, (5, 6), dtype=np.uint8) for name in "abc"}
    write(tmp_path / "zebra" / "1.png", pixels["a"])
    write(tmp_path / "ant" / "2.png", pixels["b"])
    write(tmp_path / "ant" / "1.png", pixels["c"])
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    data = dsdata.image_folder(tmp_path)
    assert data.classes == ["ant", "zebra"]
    assert data.images.shape == (3, 1, 5, 6) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0, 0, 1]
    assert np.array_equal(data.images[0, 0].numpy(), pixels["c"])  # ant/1.png first
    assert np.array_equal(data.images[2, 0].numpy(), pixels["a"])


def test_mixed_modes_become_rgb_and_size_resizes(tmp_path: Path) -> None:
    write(tmp_path / "a" / "gray.png", np.full((4, 4), 200, np.uint8))
    write(tmp_path / "b" / "rgb.png", (np.zeros((8, 8, 3)) + [10, 20, 30]).astype(np.uint8))
    with pytest.raises(DataError, match="pass size="):
        dsdata.image_folder(tmp_path)
    data = dsdata.image_folder(tmp_path, size=4)
    assert data.images.shape == (2, 3, 4, 4)
    assert data.images[0, :, 0, 0].tolist() == [200, 200, 200]
    assert data.images[1, :, 0, 0].tolist() == [10, 20, 30]
    mean = data.mean.flatten().tolist()
    assert mean == pytest.approx([(200 + 10) / 510, (200 + 20) / 510, (200 + 30) / 510])
    assert dsdata.image_folder(tmp_path, size=(2, 3)).input_shape == (3, 2, 3)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        dsdata.image_folder(tmp_path / "missing")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="no images found"):
        dsdata.image_folder(tmp_path)
    (tmp_path / "empty_class" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        dsdata.image_folder(tmp_path)
    with pytest.raises(ConfigError, match="size"):
        dsdata.image_folder(tmp_path, size=0)
