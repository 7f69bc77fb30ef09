"""Reports on users' models: dict and tuple example inputs, token ids, DataLoaders, tied weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.eval import count_macs, count_nonzero, count_parameters, measure_latency, report
from deepshrink.eval._inputs import derive_inputs


class Tagger(nn.Module):
    """Token ids (N, T) → per-token logits (N, T, 3); fails on float inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


class Keywords(nn.Module):
    """``forward(input_ids=..., attention_mask=...)``, like a Hugging Face encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        hidden = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        return {"logits": self.head(hidden.mean(1))}


class DictSamples(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict:
        ids = torch.arange(5) % 10
        return {
            "input_ids": ids,
            "attention_mask": torch.ones(5, dtype=torch.long),
            "labels": i % 2,
        }


def test_dict_example_inputs_keep_their_dtype_through_macs_and_latency() -> None:
    model = Keywords()
    example = {"input_ids": torch.zeros(1, 5, dtype=torch.long), "attention_mask": torch.ones(1, 5)}
    assert count_macs(model, example) == 8 * 2  # the head; the embedding is a lookup
    result = report(model, example_inputs=example, threads=1, min_run_time=0.01)
    assert result.macs == 16 and result.parameters == 10 * 8 + 8 * 2 + 2
    assert result.latency_ms_batch1 is not None and result.latency_ms_batch64 is not None
    timed = measure_latency(model, example, threads=1, min_run_time=0.01)
    assert timed.batch_size == 1


def test_report_derives_dict_inputs_and_scores_dict_samples() -> None:
    model, data = Keywords(), DictSamples()
    derived = derive_inputs(model, data, None)
    assert set(derived) == {"input_ids", "attention_mask"}
    assert derived["input_ids"].dtype == torch.int64 and derived["input_ids"].shape == (1, 5)
    result = report(model, data, latency=False)
    assert result.samples == 12 and result.macs == 16
    assert result.accuracy == pytest.approx(0.5)  # every sample is the same, labels alternate


def test_report_on_a_dataloader_of_token_batches() -> None:
    torch.manual_seed(0)
    model = Tagger()
    tokens = torch.randint(0, 10, (16, 7))
    labels = tokens % 3
    labels[:, -1] = -100
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tokens, labels), 4)
    derived = derive_inputs(model, loader, None)
    assert derived.dtype == torch.int64 and derived.shape == (1, 7)
    result = report(model, loader, latency=False)
    assert result.samples == 16 * 6  # tokens scored, the ignored last column left out
    assert result.macs == 7 * 8 * 3
    with torch.no_grad():
        hits = (model(tokens).argmax(-1) == labels)[:, :-1].float().mean()
    assert result.accuracy == pytest.approx(float(hits))


def test_tuple_samples_give_tuple_inputs() -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(2, 3), nn.Linear(4, 3)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.a(a) + self.b(b)

    samples = [((torch.zeros(2), torch.zeros(4)), 1)] * 3
    data = torch.utils.data.DataLoader(samples, batch_size=3)
    derived = derive_inputs(Pair(), data, None)
    assert isinstance(derived, tuple) and [t.shape for t in derived] == [(1, 2), (1, 4)]
    assert report(Pair(), data, latency=False).macs == 2 * 3 + 4 * 3


def test_one_shot_iterators_and_bad_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="re-iterable DataLoader"):
        derive_inputs(Tagger(), iter([(torch.zeros(1, 3, dtype=torch.long), None)]), None)
    with pytest.raises(ConfigError, match="dict of keyword inputs"):
        count_macs(Tagger(), 3)


def test_tied_parameters_count_once() -> None:
    first, second = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    second.weight = nn.Parameter(first.weight.detach())  # another Parameter, same storage
    model = nn.Sequential(first, second)
    assert first.weight is not second.weight
    assert count_parameters(model) == 16
    with torch.no_grad():
        first.weight[0] = 0
    assert count_nonzero(model) == 12


def test_gpt2_lm_head_and_wte_count_once() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=16)
    model = transformers.GPT2LMHeadModel(config)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    unique = {id(p): p.numel() for p in model.parameters()}
    assert count_parameters(model) == sum(unique.values())
    untied = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert count_parameters(model) == untied - 100 * 32
    example = {"input_ids": torch.arange(6).view(1, 6)}
    result = report(model, example_inputs=example, latency=False)
    assert result.parameters == count_parameters(model) and result.macs > 0
    assert result.dense_bytes == 4 * result.parameters


def test_iterable_dataset_of_token_samples() -> None:
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            for i in range(4):
                ids = (torch.arange(5) + i) % 10
                yield ids, ids % 3

    model = Tagger()
    derived = derive_inputs(model, Stream(), None)
    assert derived.dtype == torch.int64 and derived.shape == (1, 5)
    result = report(model, Stream(), latency=False)
    assert result.samples == 4 * 5 and result.macs == 5 * 8 * 3
