"""A model's own inputs and outputs: structure and dtype kept, the prediction found."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from deepshrink.errors import ConfigError
from deepshrink.graph.io import (
    batch_size,
    call,
    inputs_and_labels,
    logits_of,
    map_tensors,
    split,
)


def test_inputs_keep_their_structure_and_dtype() -> None:
    tokens = torch.randint(0, 9, (4, 6))
    moved = map_tensors({"input_ids": tokens, "mask": (tokens > 2,)}, lambda t: t[:2])
    assert moved["input_ids"].dtype == torch.int64 and moved["mask"][0].shape == (2, 6)
    assert split((tokens, tokens)) == ((tokens, tokens), {})
    assert batch_size({"input_ids": tokens}) == 4 and batch_size((torch.tensor(1.0),)) == 1


def test_call_passes_keyword_inputs() -> None:
    class Two(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return input_ids.float() * scale

    out = call(Two(), {"input_ids": torch.tensor([1, 2]), "scale": torch.tensor(2.0)})
    assert out.tolist() == [2.0, 4.0]
    with pytest.raises(ConfigError, match="got int"):
        split(3)


def test_logits_are_found_in_every_output_type(gpt2) -> None:
    model, inputs = gpt2
    output = call(model, inputs)  # a ModelOutput
    assert logits_of(output) is output.logits and output.logits.shape == (2, 8, 100)
    assert logits_of(OrderedDict(hidden=torch.zeros(1), logits=torch.ones(2))).tolist() == [1, 1]
    assert logits_of((torch.zeros(3), torch.ones(1)), select=1).tolist() == [1.0]
    assert logits_of({"a": torch.zeros(2), "b": torch.ones(2)}, select="b").tolist() == [1, 1]
    with pytest.raises(ConfigError, match="has no tensor 'scores'; choose one of 'a'"):
        logits_of({"a": torch.zeros(1)}, select="scores")
    with pytest.raises(ConfigError, match="no tensor in it"):
        logits_of({"a": None})


def test_batches_split_into_inputs_and_labels() -> None:
    x, y = torch.zeros(2, 3), torch.tensor([0, 1])
    assert inputs_and_labels((x, y)) == (x, y)
    inputs, labels = inputs_and_labels({"input_ids": x, "labels": y})
    assert list(inputs) == ["input_ids"] and labels is y
    assert inputs_and_labels(x)[1] is None
