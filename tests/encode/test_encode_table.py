"""size_table: rows and totals equal the bytes actually written; Huffman within 1 bit of entropy."""

from __future__ import annotations

import pytest
import torch

import deepshrink as ds
from deepshrink.encode import EncodeConfig
from deepshrink.errors import FormatError


def _shared_and_pruned_lenet5() -> torch.nn.Module:
    """LeNet-5 pruned to ~10 % and weight-shared to 32 values per layer (k-means stand-in)."""
    torch.manual_seed(0)
    model = ds.zoo.create("lenet5").eval()
    ds.finalize_(ds.prune_(model, ds.MagnitudePruning(sparsity=0.9)))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                w = module.weight
                book = torch.linspace(float(w.min()), float(w.max()), 32)
                nearest = book[(w.unsqueeze(-1) - book).abs().argmin(-1)]
                w.copy_(torch.where(w != 0, nearest, 0.0))
    return model


def test_totals_are_the_file_sizes_and_rows_add_up(tmp_path) -> None:
    model = _shared_and_pruned_lenet5()
    pqh = ds.save(model, tmp_path / "pqh.dsz")
    pq = ds.save(model, tmp_path / "pq.dsz", EncodeConfig(huffman=False))
    table = ds.size_table(pqh)
    assert table.file_bytes == pqh.stat().st_size == table.total.bytes_pqh
    assert table.total.bytes_pq == pq.stat().st_size
    assert sum(r.bytes_pqh for r in table.rows) + table.header_bytes_pqh == table.total.bytes_pqh
    assert ds.size_table(model).total.bytes_pqh == table.total.bytes_pqh  # model or file alike
    dense = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert abs(table.total.rate_pqh - dense / pqh.stat().st_size) < 1e-9
    by_name = {r.name: r for r in table.rows}
    weight = model.state_dict()["conv2.weight"]
    row = by_name["conv2.weight"]
    assert row.weights == weight.numel() and row.kept == int((weight != 0).sum())
    assert row.weight_bits_pqh <= row.weight_bits_pq and row.rate_pqh >= row.rate_pq > 1
    text = table.to_markdown()
    assert "| conv2.weight |" in text and "compress rate (P+Q+H)" in text


def test_huffman_mean_code_length_within_one_bit_of_entropy_for_every_stream() -> None:
    model = _shared_and_pruned_lenet5()
    table = ds.size_table(model, EncodeConfig(index_bits="auto"))
    streams = [
        (r.weight_entropy, r.weight_huffman_bits)
        for r in table.rows
        if r.weight_entropy is not None
    ] + [(r.index_entropy, r.index_huffman_bits) for r in table.rows if r.index_entropy is not None]
    assert len(streams) >= 8  # values and gaps of the four layers
    for entropy, mean in streams:
        assert entropy - 1e-9 <= mean <= entropy + 1


def test_a_file_with_invalid_settings_is_a_format_error(tmp_path, dsz) -> None:
    path = ds.save(torch.nn.Linear(3, 3), tmp_path / "m.dsz")
    edited = dsz.with_header(path.read_bytes(), lambda h: h.update(encoding={"index_bits": 99}))
    path.write_bytes(edited)
    with pytest.raises(FormatError, match="encoding"):
        ds.size_table(path)
