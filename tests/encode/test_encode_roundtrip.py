"""Round trips: any shape, sparsity, codebook width and dtype decodes bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepshrink.encode import EncodeConfig, pack, unpack
from deepshrink.encode.tensors import DTYPES, encode_tensor

shapes = st.lists(st.integers(0, 24), min_size=0, max_size=4).filter(lambda s: math.prod(s) < 6000)
configs = st.builds(
    EncodeConfig,
    index_bits=st.one_of(st.integers(1, 16), st.just("auto"), st.just({"conv": 8, "linear": 5})),
    huffman=st.booleans(),
)


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.view(DTYPES[str(tensor.dtype).removeprefix("torch.")][1])


def _weights(shape: list[int], sparsity: float, bits: int | None, seed: int) -> torch.Tensor:
    """k-means-like weights: ≤ 2**bits distinct non-zeros (or any values), zeros exactly +0.0."""
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(shape, generator=g)
    if bits is not None:
        book = torch.randn(2**bits, generator=g)
        values = book[torch.randint(0, 2**bits, shape, generator=g)]
    keep = torch.rand(shape, generator=g) >= sparsity
    return torch.where(keep, values, 0.0)


@settings(max_examples=60, deadline=None)
@given(
    shapes,
    st.sampled_from([0.0, 0.3, 0.9, 0.99, 0.999, 1.0]),
    st.one_of(st.none(), st.integers(1, 8)),
    configs,
    st.integers(0, 2**31 - 1),
)
def test_weights_round_trip_bit_exactly(shape, sparsity, bits, config, seed) -> None:
    tensor = _weights(shape, sparsity, bits, seed)
    decoded = unpack(pack({"w": tensor}, config, arch=None)).tensors["w"]
    assert decoded.shape == tensor.shape and decoded.dtype == tensor.dtype
    assert torch.equal(_bits(decoded), _bits(tensor))


@settings(max_examples=40, deadline=None)
@given(
    shapes,
    st.sampled_from(sorted(DTYPES)),
    st.sampled_from([0.0, 0.5, 0.95]),
    configs,
    st.integers(0, 2**31 - 1),
)
def test_every_dtype_round_trips(shape, dtype, sparsity, config, seed) -> None:
    torch_dtype = DTYPES[dtype][0]
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(-(2**15), 2**15, shape, generator=g, dtype=torch.int64)
    tensor = (raw.bool() if torch_dtype == torch.bool else raw.to(torch_dtype)).clone()
    tensor[torch.rand(shape, generator=g) < sparsity] = 0
    decoded = unpack(pack({"t": tensor}, config, arch=None)).tensors["t"]
    assert decoded.dtype == tensor.dtype and torch.equal(_bits(decoded), _bits(tensor))


def test_special_values_keep_their_bits() -> None:
    nan_payload = torch.tensor([0x7FC00123], dtype=torch.int32).view(torch.float32)
    specials = torch.cat([torch.tensor([-0.0, float("inf"), -float("inf"), 1e-45]), nan_payload])
    tensor = torch.zeros(200)
    tensor[::40] = specials
    for config in (EncodeConfig(), EncodeConfig(index_bits="auto", huffman=False)):
        decoded = unpack(pack({"t": tensor}, config, arch=None)).tensors["t"]
        assert torch.equal(_bits(decoded), _bits(tensor))


@pytest.mark.parametrize("shape", [(0,), (0, 5), (), (1,), (3000,)])
def test_empty_scalar_and_all_zero_tensors(shape) -> None:
    for tensor in (torch.zeros(shape), torch.full(shape, 0.5)):
        decoded = unpack(pack({"t": tensor}, EncodeConfig(), arch=None)).tensors["t"]
        assert torch.equal(_bits(decoded), _bits(tensor))


def test_layout_is_the_smallest_candidate() -> None:
    g = torch.Generator().manual_seed(0)
    sparse = _weights([100, 100], 0.95, 4, 0)
    dense = torch.linspace(-1, 1, 4)[torch.randint(0, 4, (100, 100), generator=g)]
    small = torch.randn(5, generator=g)
    tensors = {"sparse": sparse, "dense": dense, "small": small}
    layouts = {
        name: encode_tensor(name, t, EncodeConfig()).entry["layout"] for name, t in tensors.items()
    }
    assert layouts == {"sparse": "sparse", "dense": "dense", "small": "raw"}
    sizes = {}
    for layout_bits in (1, 5, 16):
        item = encode_tensor("s", sparse, EncodeConfig(index_bits=layout_bits))
        sizes[layout_bits] = sum(len(data) + 12 for _, data in item.sections)
    auto = encode_tensor("s", sparse, EncodeConfig(index_bits="auto"))
    assert sum(len(data) + 12 for _, data in auto.sections) <= min(sizes.values())


def test_codebook_and_huffman_make_quantized_weights_smaller() -> None:
    tensor = _weights([300, 100], 0.92, 5, 1)
    sizes = {}
    for huffman in (False, True):
        sizes[huffman] = len(pack({"w": tensor}, EncodeConfig(huffman=huffman), arch=None))
    entry = encode_tensor("w", tensor, EncodeConfig()).entry
    assert entry["layout"] == "sparse" and 1 < entry["codebook"] <= 33
    assert sizes[True] < sizes[False] < tensor.numel() * 4 / 10
    assert np.isfinite(sizes[True])


def test_eight_bit_sharing_keeps_its_codebook_beside_the_filler_zero() -> None:
    # 256 shared non-zero values (k-means, 8 bits) and long zero runs (fillers): 257 codes
    g = torch.Generator().manual_seed(0)
    book = torch.randn(256, generator=g)
    tensor = torch.zeros(300_000)
    tensor[::300] = book[torch.arange(1000) % 256]  # gaps of 299 zeros: fillers at b = 8
    entry = encode_tensor("conv.weight", tensor.reshape(300, 10, 10, 10), EncodeConfig()).entry
    assert entry["layout"] == "sparse" and entry["codebook"] == 257
    config = EncodeConfig(huffman=False)
    decoded = unpack(pack({"w": tensor}, config, arch=None)).tensors["w"]
    assert torch.equal(_bits(decoded), _bits(tensor))
