"""Deep Compression's container: sparse relative indices, codebooks, Huffman codes (``.dsz``).

>>> import tempfile, pathlib, torch
>>> import deepshrink as ds
>>> model = ds.zoo.create("lenet300")
>>> _ = ds.prune_(model, ds.MagnitudePruning(sparsity=0.9))
>>> path = ds.save(ds.finalize_(model), pathlib.Path(tempfile.mkdtemp()) / "lenet300.dsz")
>>> loaded = ds.load(path)
>>> x = torch.randn(1, 1, 28, 28)
>>> torch.equal(model(x), loaded(x))
True
>>> table = ds.size_table(path)
>>> table.total.rate_pqh > 5
True

Each tensor gets the smallest of: raw, a codebook with code indices (≤ 256 distinct non-zero
values), or relative-index sparse storage with the values or a codebook — every stream
fixed-width or Huffman-coded. :func:`size_table` gives the per-layer accounting of Han et al.'s
tables. The byte layout is specified in ``docs/dsz-format.md``.
"""

from __future__ import annotations

from deepshrink.encode.api import load, read, save
from deepshrink.encode.config import EncodeConfig
from deepshrink.encode.container import FORMAT_VERSION, MAGIC, Container, pack, unpack
from deepshrink.encode.table import LayerSize, SizeTable, size_table

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Container",
    "EncodeConfig",
    "LayerSize",
    "SizeTable",
    "load",
    "pack",
    "read",
    "save",
    "size_table",
    "unpack",
]
