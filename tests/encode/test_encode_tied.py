"""Tied weights in .dsz files: stored once, re-tied on load; aliases in hostile headers."""

from __future__ import annotations

import json
import zlib

import pytest
import torch

import deepshrink as ds
from deepshrink.encode.container import PRELUDE, pack, unpack
from deepshrink.graph.io import call, logits_of
from deepshrink.graph.layers import tied_parameters


@pytest.mark.parametrize("step", ["dense", "pruned", "kmeans"])
def test_a_tied_weight_is_stored_once_and_tied_again_on_load(
    step, gpt2, fresh_gpt2, tmp_path
) -> None:
    model, inputs = gpt2
    if step == "pruned":
        ds.finalize_(ds.prune_(model, ds.MagnitudePruning(sparsity=0.8)))
    if step == "kmeans":
        ds.quantize_(model, ds.KMeansQuantization(bits=4))
    path = ds.save(model, tmp_path / "tied.dsz")
    container = ds.encode.read(path)
    stored = [entry["name"] for entry in container.header["tensors"]]
    assert not any(name.startswith("lm_head.") for name in stored)
    assert all(v.startswith("transformer.wte.") for v in container.header["aliases"].values())
    twice = pack(model.state_dict(), ds.EncodeConfig(), arch=None)  # both names stored
    assert path.stat().st_size < len(twice) - 0.5 * model.transformer.wte.weight.numel()
    loaded = ds.load(path, model=fresh_gpt2(seed=3))
    assert torch.equal(logits_of(call(loaded, inputs)), logits_of(call(model, inputs)))
    ds.finalize_(loaded)
    assert tied_parameters(loaded) == [["transformer.wte.weight", "lm_head.weight"]]


def _with_header(data: bytes, change) -> bytes:
    magic, version, reserved, size, _, _ = PRELUDE.unpack_from(data)
    header = json.loads(zlib.decompress(data[PRELUDE.size : PRELUDE.size + size]))
    change(header)
    text = json.dumps(header).encode()
    packed = zlib.compress(text)
    prelude = PRELUDE.pack(magic, version, reserved, len(packed), len(text), zlib.crc32(packed))
    return prelude + packed + data[PRELUDE.size + size :]


@pytest.mark.parametrize(
    ("aliases", "problem"),
    [
        ({"b": "missing"}, "refers to 'missing', which is not stored"),
        ({"a": "a"}, "'a' is also a stored tensor"),
        ({"b": 3}, "Input should be a valid string"),
        ({"": "a"}, "at least 1 character"),
    ],
)
def test_bad_aliases_are_format_errors(aliases, problem) -> None:
    data = pack({"a": torch.ones(3)}, ds.EncodeConfig(), arch=None)
    bad = _with_header(data, lambda header: header.update(aliases=aliases))
    with pytest.raises(ds.FormatError, match=problem):
        unpack(bad)
