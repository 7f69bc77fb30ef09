"""load(): registry and names, in-memory datasets, validation splits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import deepshrink.data as dsdata
from deepshrink.errors import ConfigError, UnknownNameError


@pytest.fixture(autouse=True)
def _no_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the data root at an empty folder: these datasets must need no files."""
    monkeypatch.setenv("DEEPSHRINK_DATA", str(tmp_path / "empty"))


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'mnist'"):
        dsdata.load("mnits")
    with pytest.raises(UnknownNameError, match="cifar10"):
        dsdata.load("cifar100")


def test_digits_loads_without_files() -> None:
    data = dsdata.load("digits")
    assert (len(data.train), len(data.test)) == (1437, 360)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert data.train.images.dtype == torch.float32
    assert data.train.images.min() >= 0.0 and data.train.images.max() == 1.0
    counts = torch.bincount(data.test.labels, minlength=10)
    assert counts.sum() == 360 and counts.min() >= 35 and counts.max() <= 37  # stratified
    x, _ = data.train.batch(torch.arange(len(data.train)))
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-2


def test_digits_test_split_is_fixed_across_seeds() -> None:
    a, b = dsdata.load("digits", seed=0), dsdata.load("digits", seed=5)
    assert torch.equal(a.test.images, b.test.images)
    train = set(map(tuple, a.train.images.flatten(1).tolist()))
    overlap = sum(tuple(row) in train for row in a.test.images.flatten(1).tolist())
    assert overlap < 5  # only digits that happen to be pixel-identical


def test_synthetic_is_seeded_and_separable() -> None:
    data = dsdata.load("synthetic")
    assert (len(data.train), len(data.test), data.input_shape) == (512, 128, (1, 8, 8))
    assert data.train.images.dtype == torch.uint8
    assert torch.equal(data.train.images, dsdata.load("synthetic").train.images)
    assert not torch.equal(data.train.images, dsdata.load("synthetic", seed=1).train.images)
    x, y = data.train.batch(torch.arange(512))
    centroids = torch.stack([x[y == c].mean(0) for c in range(10)]).flatten(1)
    xt, yt = data.test.batch(torch.arange(128))
    predicted = torch.cdist(xt.flatten(1), centroids).argmin(1)
    assert (predicted == yt).float().mean() == 1.0


@pytest.mark.parametrize(("val_size", "count"), [(100, 100), (0.25, 128), (0.001, 1)])
def test_validation_split_sizes(val_size: float, count: int) -> None:
    data = dsdata.load("synthetic", val_size=val_size)
    assert len(data.val) == count and len(data.train) == 512 - count
    assert data.val.name == "synthetic/val"


def test_validation_split_is_deterministic_and_disjoint() -> None:
    def rows(dataset: dsdata.ArrayDataset) -> set[tuple[int, ...]]:
        return set(map(tuple, dataset.images.flatten(1).tolist()))

    a = dsdata.load("digits", val_size=200, seed=1)
    b = dsdata.load("digits", val_size=200, seed=1)
    c = dsdata.load("digits", val_size=200, seed=2)
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.val.labels, b.val.labels)
    assert not torch.equal(a.val.images, c.val.images)
    whole = dsdata.load("digits").train
    assert rows(a.train) | rows(a.val) == rows(whole)
    assert len(a.train) + len(a.val) == len(whole)


def test_validation_split_has_no_augmentation() -> None:
    train = dsdata.load("synthetic").train
    train.transform = lambda x, g: x.flip(-1)
    rest, val = dsdata.split_validation(train, 10, seed=0)
    assert rest.transform is not None and val.transform is None


@pytest.mark.parametrize("val_size", [-1, 512, 10_000, 1.0, 1.5, -0.5, 0.0001, True, "10"])
def test_invalid_val_size(val_size: object) -> None:
    with pytest.raises(ConfigError, match="val_size"):
        dsdata.load("synthetic", val_size=val_size)


def test_data_properties() -> None:
    data = dsdata.load("synthetic", val_size=0.5)
    assert data.classes == [f"class_{i}" for i in range(10)]
    assert "synthetic/train" in repr(data)
    bare = dsdata.Data("x", data.train, data.test)
    assert bare.num_classes == 10 and bare.val is None


def test_import_stays_light() -> None:
    code = (
        "import sys, deepshrink.data; "
        "heavy = [m for m in ('sklearn', 'PIL') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
