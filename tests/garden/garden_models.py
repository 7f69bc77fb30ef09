"""The model garden: models users bring, tiny, built from configs with random weights.

Each :class:`Specimen` gives a seeded factory, example inputs (a tensor, a tuple of positional
inputs or a dict of keyword inputs; token ids are int64), a few labelled batches for
fit / evaluate / calibration, and what kind of output the model has. Hugging Face models come
from ``transformers`` configs (no downloads); the rest is plain PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

VOCAB, TOKENS, CLASSES, TAGS = 100, 12, 3, 5
BATCHES, BATCH = 4, 8


@dataclass(frozen=True)
class Specimen:
    """One garden model: ``build(seed)``, ``example()``, ``batches()`` and its output kind.

    ``output`` is ``"class"`` (one prediction per sample, ``(N, C)``) or ``"token"`` (one per
    token, ``(N, T, C)``); ``returns`` says what ``forward`` returns.
    """

    name: str
    description: str
    build: Callable[[int], nn.Module]
    inputs: Callable[[torch.Generator, int], Any]
    labels: Callable[[torch.Generator, int], Tensor]
    output: str
    returns: str
    dict_batches: bool = False

    def example(self) -> Any:
        """Example inputs of batch size 2."""
        return self.inputs(torch.Generator().manual_seed(123), 2)

    def batches(self) -> list[Any]:
        """``BATCHES`` labelled batches: ``(inputs, labels)`` pairs or dicts with ``labels``."""
        gen = torch.Generator().manual_seed(7)
        out = []
        for _ in range(BATCHES):
            inputs, labels = self.inputs(gen, BATCH), self.labels(gen, BATCH)
            out.append({**inputs, "labels": labels} if self.dict_batches else (inputs, labels))
        return out


def _seeded(factory: Callable[[], nn.Module]) -> Callable[[int], nn.Module]:
    def build(seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return factory().eval()

    return build


def _ids(gen: torch.Generator, n: int) -> Tensor:
    return torch.randint(0, VOCAB, (n, TOKENS), generator=gen)


def _classes(gen: torch.Generator, n: int) -> Tensor:
    return torch.randint(0, CLASSES, (n,), generator=gen)


def _image(channels: int, size: int) -> Callable[[torch.Generator, int], Tensor]:
    return lambda gen, n: torch.randn(n, channels, size, size, generator=gen)


def _text(gen: torch.Generator, n: int) -> dict[str, Tensor]:
    return {"input_ids": _ids(gen, n), "attention_mask": torch.ones(n, TOKENS, dtype=torch.long)}


# ---- Hugging Face models, from configs ----


def _bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=32,
                        num_labels=CLASSES)  # fmt: skip
    return BertForSequenceClassification(config)


def _distilbert() -> nn.Module:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                              max_position_embeddings=32, num_labels=CLASSES)  # fmt: skip
    return DistilBertForSequenceClassification(config)


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    special = {"bos_token_id": VOCAB - 1, "eos_token_id": VOCAB - 1}
    config = GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                        use_cache=False, **special)  # fmt: skip
    return GPT2LMHeadModel(config)


def _vit() -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, image_size=16, patch_size=4, num_channels=3,
                       num_labels=CLASSES)  # fmt: skip
    return ViTForImageClassification(config)


def _hf_resnet() -> nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                          layer_type="basic", num_labels=CLASSES)  # fmt: skip
    return ResNetForImageClassification(config)


def _hf_convnext() -> nn.Module:
    from transformers import ConvNextConfig, ConvNextForImageClassification

    config = ConvNextConfig(num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1],
                            num_labels=CLASSES)  # fmt: skip
    return ConvNextForImageClassification(config)


# ---- plain PyTorch models ----


class LSTMTagger(nn.Module):
    """Embedding → bidirectional LSTM → Linear per token: ``(N, T)`` ids → ``(N, T, TAGS)``."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 16)
        self.lstm = nn.LSTM(16, 24, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(48, TAGS)

    def forward(self, ids: Tensor) -> Tensor:
        hidden, _ = self.lstm(self.embedding(ids))
        return self.classifier(hidden)


class GRUClassifier(nn.Module):
    """Embedding → 2-layer GRU → MLP on the last state; returns ``(logits, h_n)``."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 16)
        self.gru = nn.GRU(16, 32, num_layers=2, batch_first=True)
        self.fc1 = nn.Linear(32, 32)
        self.fc2 = nn.Linear(32, CLASSES)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        states, last = self.gru(self.embedding(ids))
        return self.fc2(torch.relu(self.fc1(states[:, -1]))), last


class EncoderClassifier(nn.Module):
    """Token + position embeddings → ``nn.TransformerEncoder`` (2 layers) → mean → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32)
        self.position = nn.Parameter(torch.randn(1, TOKENS, 32) * 0.02)
        layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0,
                                           batch_first=True)  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.classifier = nn.Linear(32, CLASSES)

    def forward(self, ids: Tensor) -> Tensor:
        return self.classifier(self.encoder(self.embedding(ids) + self.position).mean(dim=1))


def _separable(channels: int, out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, out, 1, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU(),
    ]


def _depthwise_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        *_separable(16, 32, 2), *_separable(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, CLASSES),
    )  # fmt: skip


def _audio_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(1, 16, 9, stride=4, padding=4), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Conv1d(16, 32, 5, stride=2, padding=2), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Conv1d(32, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, 32), nn.ReLU(),
        nn.Linear(32, CLASSES),
    )  # fmt: skip


class DictInputNet(nn.Module):
    """Keyword inputs ``tokens`` (ids) and ``features`` (floats); returns ``{"logits": ...}``."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 16)
        self.features = nn.Linear(8, 16)
        self.hidden = nn.Linear(32, 32)
        self.head = nn.Linear(32, CLASSES)

    def forward(self, tokens: Tensor, features: Tensor) -> dict[str, Tensor]:
        joined = torch.cat([self.embedding(tokens).mean(dim=1), self.features(features)], dim=1)
        return {"logits": self.head(torch.relu(self.hidden(torch.relu(joined))))}


class TwoInputNet(nn.Module):
    """Positional inputs: an image ``(N, 1, 12, 12)`` and a vector ``(N, 6)``; a tensor out."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.vector = nn.Linear(6, 16)
        self.fc = nn.Linear(32, 32)
        self.out = nn.Linear(32, CLASSES)

    def forward(self, image: Tensor, vector: Tensor) -> Tensor:
        x = torch.relu(self.conv2(torch.relu(self.bn1(self.conv1(image)))))
        x = torch.cat([x.mean(dim=(2, 3)), torch.relu(self.vector(vector))], dim=1)
        return self.out(torch.relu(self.fc(x)))


def _dict_inputs(gen: torch.Generator, n: int) -> dict[str, Tensor]:
    return {"tokens": _ids(gen, n), "features": torch.randn(n, 8, generator=gen)}


def _two_inputs(gen: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    return torch.randn(n, 1, 12, 12, generator=gen), torch.randn(n, 6, generator=gen)


def _tags(gen: torch.Generator, n: int) -> Tensor:
    return torch.randint(0, TAGS, (n, TOKENS), generator=gen)


def _next_tokens(gen: torch.Generator, n: int) -> Tensor:
    return torch.randint(0, VOCAB, (n, TOKENS), generator=gen)


GARDEN: dict[str, Specimen] = {
    spec.name: spec
    for spec in (
        Specimen("bert", "HF BertForSequenceClassification, keyword inputs, dict batches",
                 _seeded(_bert), _text, _classes, "class", "ModelOutput", dict_batches=True),
        Specimen("distilbert", "HF DistilBertForSequenceClassification, keyword inputs",
                 _seeded(_distilbert), _text, _classes, "class", "ModelOutput",
                 dict_batches=True),
        Specimen("gpt2", "HF GPT2LMHeadModel, lm_head tied to wte, HF Conv1D, per-token",
                 _seeded(_gpt2), _ids, _next_tokens, "token", "ModelOutput"),
        Specimen("vit", "HF ViTForImageClassification, 16x16 images, 4x4 patches",
                 _seeded(_vit), _image(3, 16), _classes, "class", "ModelOutput"),
        Specimen("hf_resnet", "HF ResNetForImageClassification (basic blocks)",
                 _seeded(_hf_resnet), _image(3, 32), _classes, "class", "ModelOutput"),
        Specimen("hf_convnext", "HF ConvNextForImageClassification",
                 _seeded(_hf_convnext), _image(3, 32), _classes, "class", "ModelOutput"),
        Specimen("lstm_tagger", "Embedding + bidirectional nn.LSTM + Linear, per-token tags",
                 _seeded(LSTMTagger), _ids, _tags, "token", "tensor"),
        Specimen("gru_classifier", "Embedding + 2-layer nn.GRU + MLP, returns (logits, h_n)",
                 _seeded(GRUClassifier), _ids, _classes, "class", "tuple"),
        Specimen("transformer_encoder", "nn.TransformerEncoder classifier on token ids",
                 _seeded(EncoderClassifier), _ids, _classes, "class", "tensor"),
        Specimen("depthwise_cnn", "depthwise-separable CNN with BatchNorm (MobileNet-style)",
                 _seeded(_depthwise_cnn), _image(3, 16), _classes, "class", "tensor"),
        Specimen("conv1d_audio", "Conv1d audio net on raw 400-sample waveforms",
                 _seeded(_audio_cnn), lambda gen, n: torch.randn(n, 1, 400, generator=gen),
                 _classes, "class", "tensor"),
        Specimen("dict_input", "keyword inputs (token ids + float features), dict output",
                 _seeded(DictInputNet), _dict_inputs, _classes, "class", "dict"),
        Specimen("two_input", "two positional inputs (image, vector), tensor output",
                 _seeded(TwoInputNet), _two_inputs, _classes, "class", "tensor"),
    )
}  # fmt: skip
