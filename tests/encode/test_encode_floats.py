"""Float tensors kept at half width (``EncodeConfig(floats=...)``): format version 2.

Oracles: torch's own float16/bfloat16 rounding, the exact writer's file, and the version-1 reader
contract (files that do not narrow stay version 1, byte for byte what they were).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
import torch

import deepshrink as ds
from deepshrink.encode import EncodeConfig, pack, unpack
from deepshrink.encode.container import PRELUDE
from deepshrink.errors import ConfigError, FormatError

from .conftest import sample_tensors, split, with_header


@pytest.mark.parametrize("floats", ["float16", "bfloat16"])
def test_values_round_as_torch_rounds_them(floats: str) -> None:
    tensors = sample_tensors()
    narrow = getattr(torch, floats)
    data = pack(tensors, EncodeConfig(floats=floats), arch=None)
    decoded = unpack(data).tensors
    for name, tensor in tensors.items():
        assert decoded[name].dtype == tensor.dtype, name
        if tensor.dtype == torch.float32:
            assert torch.equal(decoded[name], tensor.to(narrow).float()), name
        else:
            assert torch.equal(decoded[name], tensor), name  # ints and masks stay exact
    assert len(data) < len(pack(tensors, EncodeConfig(), arch=None))
    assert PRELUDE.unpack_from(data)[1] == 2


def test_exact_files_stay_version_1() -> None:
    tensors = sample_tensors()
    data = pack(tensors, EncodeConfig(), arch=None)
    assert PRELUDE.unpack_from(data)[1] == 1
    assert "stored" not in str(split(data)[0])
    for name, tensor in unpack(data).tensors.items():
        assert torch.equal(tensor.view(-1).view(torch.uint8), tensors[name].view(-1).view(
            torch.uint8)), name  # fmt: skip


def test_zero_stays_zero_and_nonzero_stays_nonzero() -> None:
    weight = torch.tensor([0.0, 1e-30, -1e-30, 0.5, 3e-8, 0.0] * 20)
    tensors = {"w": weight, "w_mask": weight != 0}
    for floats in ("float16", "bfloat16"):
        data = pack(tensors, EncodeConfig(floats=floats), arch=None)
        decoded = unpack(data).tensors
        assert torch.equal(decoded["w"] != 0, weight != 0), floats
        assert torch.equal(decoded["w"].sign(), weight.sign()), floats
        assert torch.equal(decoded["w_mask"], weight != 0)
        entries = {entry["name"]: entry for entry in split(data)[0]["tensors"]}
        assert entries["w_mask"]["layout"] == "support"  # the mask still costs no bytes
        negative_zero = unpack(pack({"z": torch.tensor([-0.0, 0.0])}, EncodeConfig(floats=floats),
                                    arch=None)).tensors["z"]  # fmt: skip
        assert torch.equal(negative_zero.view(torch.int32), torch.tensor([-0.0, 0.0]).view(
            torch.int32))  # fmt: skip


def test_out_of_range_tensor_is_kept_exact() -> None:
    big = torch.tensor([1e6, -3.0, 0.0, 7.5e4])
    data = pack({"big": big, "small": torch.ones(3)}, EncodeConfig(floats="float16"), arch=None)
    decoded = unpack(data).tensors
    assert torch.equal(decoded["big"], big)
    entries = {entry["name"]: entry for entry in split(data)[0]["tensors"]}
    assert "stored" not in entries["big"] and entries["small"]["stored"] == "float16"


def test_model_round_trip_and_config_errors(tmp_path: Path) -> None:
    model = ds.zoo.create("lenet300")
    path = ds.save(model, tmp_path / "m.dsz", EncodeConfig(floats="float16"))
    loaded = ds.load(path)
    for (name, tensor), (_, back) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert back.dtype == torch.float32 and torch.equal(back, tensor.half().float()), name
    exact = ds.save(model, tmp_path / "exact.dsz").stat().st_size
    assert path.stat().st_size < 0.55 * exact  # a dense model is all side information
    with pytest.raises(ConfigError, match="floats"):
        EncodeConfig(floats="float8")


def _set_version(data: bytes, version: int) -> bytes:
    return data[:8] + struct.pack("<H", version) + data[10:]


def test_stored_needs_version_2_and_a_float_tensor() -> None:
    data = pack(sample_tensors(), EncodeConfig(floats="float16"), arch=None)
    with pytest.raises(FormatError, match="'stored', which needs version 2"):
        unpack(_set_version(data, 1))

    def mark_mask(header: dict[str, Any]) -> None:
        entry = next(e for e in header["tensors"] if e["dtype"] == "bool")
        entry["stored"] = "float16"

    with pytest.raises(FormatError, match="only float32/float64 tensors"):
        unpack(with_header(data, mark_mask))

    def unknown(header: dict[str, Any]) -> None:
        next(e for e in header["tensors"] if "stored" in e)["stored"] = "float8"

    with pytest.raises(FormatError, match="stored"):
        unpack(with_header(data, unknown))


def test_mutated_half_width_files_keep_the_contract(
    fuzz: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The fuzzer's mutations on a version-2 seed: every case loads and runs or is refused."""
    torch.manual_seed(0)
    model = ds.zoo.create("digits_mlp", hidden_sizes=[32])
    ds.quantize_(ds.prune_(model, ds.MagnitudePruning(sparsity=0.8)), ds.KMeansQuantization(bits=3))
    path = ds.save(model, tmp_path / "half.dsz", EncodeConfig(floats="float16"))
    data = path.read_bytes()
    header, spans = split(data)
    sections = [data[start + 12 : end] for start, end in spans]
    seed = fuzz.Seed("half", data, (torch.randn(2, 64),), None, header, sections)
    assemble = fuzz.assemble
    monkeypatch.setattr(fuzz, "assemble", lambda h, s: _set_version(assemble(h, s), 2))
    with fuzz.scratch() as folder:
        result = fuzz.fuzz([seed], 400, Path(folder), seed=2, measure=False, truncations=100)
    assert result["violations"] == 0, result["violation_samples"][:3]
    assert result["outcomes"].get("ran", 0) > 0 and result["outcomes"]["format_error"] > 100
