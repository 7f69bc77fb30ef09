"""Session fixtures: the real shared datasets, loaded once.

The datasets live in ``$DEEPSHRINK_DATA`` or ``../shared/datasets`` beside the repository. Where
they are missing, tests that need them are skipped — except under CI (``CI`` set), where a
missing dataset is an error, so a broken setup cannot pass as green.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import deepshrink.data as dsdata


def _shared_root() -> Path:
    from_env = os.environ.get("DEEPSHRINK_DATA")
    if from_env:
        return Path(from_env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The suite's models are tiny: intra-op threads buy nothing and, on a shared 2-core
    machine, cost a great deal (a small GRU call measured ~50x slower with two threads). Tests
    that are about threads set their own count and restore it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


# --- users' models: small transformers, recurrent and attention nets (random weights) ----------


class Tagger(torch.nn.Module):
    """Embedding → 2-layer LSTM → Linear: per-token logits ``(N, T, 5)`` from token ids."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(50, 16)
        self.lstm = torch.nn.LSTM(16, 24, batch_first=True, num_layers=2)
        self.out = torch.nn.Linear(24, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.emb(tokens))
        return self.out(hidden)


class AttentionNet(torch.nn.Module):
    """Linear → nn.MultiheadAttention → mean over tokens → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(8, 16)
        self.attn = torch.nn.MultiheadAttention(16, 4, batch_first=True)
        self.fc = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        attended, _ = self.attn(h, h, h)
        return self.fc(attended.mean(1))


@pytest.fixture
def tagger() -> tuple[torch.nn.Module, torch.Tensor]:
    """A token tagger and a batch of token ids."""
    torch.manual_seed(0)
    return Tagger().eval(), torch.randint(0, 50, (3, 7))


@pytest.fixture
def attention_net() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return AttentionNet().eval(), torch.randn(3, 5, 8)


def make_gpt2(seed: int = 0) -> torch.nn.Module:
    """A 2-layer GPT-2 LM (hidden 32, vocab 100) with ``lm_head`` tied to ``wte``."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=16,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture
def gpt2() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """Tiny GPT-2 and keyword inputs (int64 token ids)."""
    generator = torch.Generator().manual_seed(1)
    return make_gpt2(), {"input_ids": torch.randint(0, 100, (2, 8), generator=generator)}


@pytest.fixture
def fresh_gpt2():
    """The tiny GPT-2 factory (``fresh_gpt2(seed=...)``), for loading saved models into."""
    return make_gpt2
