"""fit() and evaluate() on users' models: ModelOutputs, dict batches, token taggers, two inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.train import evaluate, fit

VOCAB, CLASSES, LENGTH = 20, 4, 6


class Tagger(nn.Module):
    """Embedding + LSTM + Linear: token ids (N, T) → per-token logits (N, T, C)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.head = nn.Linear(16, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(tokens))[0])


def tagging_batches(n: int = 128, batch: int = 16, seed: int = 0) -> list[tuple]:
    """Each token's tag is its id mod 4; the last two positions of half the rows are padding."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (n, LENGTH), generator=g)
    labels = tokens % CLASSES
    labels[::2, -2:] = -100
    return [(tokens[i : i + batch], labels[i : i + batch]) for i in range(0, n, batch)]


class TwoInputs(nn.Module):
    """``forward(a, b)`` returning a tuple ``(logits, features)``."""

    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = nn.Linear(3, 8), nn.Linear(2, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.left(a) + self.right(b))
        return self.head(features), features


def two_input_batches(n: int = 256, batch: int = 32, seed: int = 0) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, 3, generator=g), torch.randn(n, 2, generator=g)
    y = (a[:, 0] + b[:, 1] > 0).long()
    return [((a[i : i + batch], b[i : i + batch]), y[i : i + batch]) for i in range(0, n, batch)]


def test_per_token_evaluate_matches_hand_computation() -> None:
    torch.manual_seed(0)
    model, data = Tagger().eval(), tagging_batches()
    result = evaluate(model, data)
    tokens = torch.cat([x for x, _ in data])
    labels = torch.cat([y for _, y in data])
    with torch.no_grad():
        logits = model(tokens)
    kept = labels != -100
    expected_loss = F.cross_entropy(logits.reshape(-1, CLASSES), labels.reshape(-1))
    expected_top1 = (logits.argmax(-1) == labels)[kept].float().mean()
    assert result.count == int(kept.sum()) < labels.numel()
    assert result.loss == pytest.approx(float(expected_loss), rel=1e-5)
    assert result.top1 == pytest.approx(float(expected_top1))
    assert result.top5 == 1.0  # 4 classes: the top 4 always hold the label


def test_fit_trains_a_token_tagger_from_a_list_of_batches() -> None:
    torch.manual_seed(0)
    model, data = Tagger(), tagging_batches()
    before = evaluate(model, data).top1
    history = fit(model, data, epochs=15, optimizer="adam", lr=0.02, progress=False)
    after = evaluate(model, data).top1
    assert before is not None and after is not None
    assert before < 0.5 and after > 0.95
    assert history.last is not None and history.last.train_accuracy is not None


def test_two_input_model_with_tuple_output_and_eval_data() -> None:
    torch.manual_seed(0)
    model = TwoInputs()
    train, held_out = two_input_batches(seed=0), two_input_batches(64, seed=1)
    history = fit(
        model, train, epochs=10, lr=0.1, eval_data=held_out, schedule="constant", progress=False
    )
    assert history.last is not None and history.last.eval_split == "eval"
    result = evaluate(model, held_out)  # the first tensor of the tuple is the prediction
    assert result.top1 is not None and result.top1 > 0.9
    assert history.last.eval_accuracy == pytest.approx(result.top1)
    with pytest.raises(ConfigError, match="output index 2 does not exist"):
        evaluate(model, held_out, output=2)


def test_output_selector_and_user_loss() -> None:
    class DictOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"hidden": x, "scores": self.body(x)}

    torch.manual_seed(0)
    model = DictOut()
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    with torch.no_grad():
        scores = model.body(x)
    result = evaluate(model, [(x, y)], output="scores")
    assert result.loss == pytest.approx(float(F.cross_entropy(scores, y)), rel=1e-5)
    targets = torch.randn(8, 2)
    regression = evaluate(model, [(x, targets)], output="scores", loss=F.mse_loss)
    assert regression.top1 is None and regression.count == 8
    assert regression.loss == pytest.approx(float(F.mse_loss(scores, targets)), rel=1e-5)
    with pytest.raises(ConfigError, match="no tensor 'logits'"):
        evaluate(model, [(x, y)], output="logits")


def test_wrong_batches_are_named() -> None:
    model = nn.Linear(3, 2)
    x, y = torch.randn(4, 3), torch.randint(0, 2, (4,))
    with pytest.raises(ConfigError, match=r"tuple of 3 \(tensor \(4, 3\) float32"):
        evaluate(model, [(x, x, y)])
    with pytest.raises(ConfigError, match=r"output tensor \(4, 2\).*labels tensor \(4, 3\)"):
        evaluate(model, [(x, y.view(4, 1).expand(4, 3))])
    with pytest.raises(ConfigError, match="iterable of batches, got int"):
        evaluate(model, 3)
    with pytest.raises(ConfigError, match=r"scalar tensor, got tensor \(4,\)"):
        evaluate(model, [(x, y)], loss=lambda logits, labels: logits.sum(1))


def test_iterables_refuse_what_needs_a_dataset() -> None:
    model, data = Tagger(), tagging_batches(32)
    with pytest.raises(ConfigError, match="resume=True needs a map-style dataset"):
        fit(model, data, epochs=1, checkpoint_dir=".", resume=True, progress=False)
    with pytest.raises(ConfigError, match="has no len\\(\\).*'cosine'"):
        fit(model, iter(data), epochs=1, progress=False)
    with pytest.raises(ConfigError, match="label_smoothing smooths the built-in"):
        fit(model, data, epochs=1, label_smoothing=0.1, loss=F.mse_loss, progress=False)
    with pytest.raises(ConfigError, match="no batch .* in epoch 2"):
        fit(model, iter(data), epochs=2, schedule="constant", progress=False)


def _bert(num_labels: int = 3) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        vocab_size=100, num_labels=num_labels, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


class _DictSamples(torch.utils.data.Dataset):
    """Tokenizer-style samples: ``input_ids``, ``attention_mask`` and an integer ``labels``."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 100, (n, 8), generator=g)
        self.mask = torch.ones(n, 8, dtype=torch.long)
        self.mask[::3, -3:] = 0
        self.labels = (self.ids[:, 0] % 3).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


def test_hf_bert_evaluate_on_a_dataloader_of_dict_batches_matches_hf_loss() -> None:
    model = _bert().eval()
    loader = torch.utils.data.DataLoader(_DictSamples(24), batch_size=8)
    result = evaluate(model, loader)
    losses, hits = [], 0
    with torch.no_grad():
        for batch in loader:
            out = model(**batch)  # HF computes its own loss from the labels
            losses.append(float(out.loss))
            hits += int((out.logits.argmax(-1) == batch["labels"]).sum())
    assert result.count == 24
    assert result.loss == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    assert result.top1 == pytest.approx(hits / 24)


def test_fit_trains_hf_bert_on_a_dataloader() -> None:
    model = _bert()
    data = _DictSamples(48)
    loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True)
    before = evaluate(model, data).loss  # the map-style dataset of dicts works too
    fit(model, loader, epochs=12, optimizer="adam", lr=3e-3, weight_decay=0, progress=False)
    after = evaluate(model, data)
    assert after.loss < 0.5 * before
    assert after.top1 is not None and after.top1 > 0.8
