"""Session fixtures: the real shared datasets, loaded once.

The datasets live in ``$DEEPSHRINK_DATA`` or ``../shared/datasets`` beside the repository. Where
they are missing, tests that need them are skipped — except under CI (``CI`` set), where a
missing dataset is an error, so a broken setup cannot pass as green.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import deepshrink.data as dsdata


def _shared_root() -> Path:
    from_env = os.environ.get("DEEPSHRINK_DATA")
    if from_env:
        return Path(from_env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The folder holding the real dataset files (mnist/, fashion-mnist/, cifar10/)."""
    root = _shared_root()
    if not (root / "mnist").is_dir():
        message = f"real datasets not found at {root}; set DEEPSHRINK_DATA"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def mnist(shared_root: Path) -> dsdata.Data:
    return dsdata.load("mnist", shared_root)


@pytest.fixture(scope="session")
def fashion_mnist(shared_root: Path) -> dsdata.Data:
    return dsdata.load("fashion-mnist", shared_root)


@pytest.fixture(scope="session")
def cifar10(shared_root: Path) -> dsdata.Data:
    return dsdata.load("cifar10", shared_root)
