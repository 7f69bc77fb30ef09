"""A bounded slice of ``benchmarks/fuzz_dsz.py`` and the hostile headers the fuzzer found.

Every mutated file must load and run, or raise FormatError; nothing else may escape, and the
reader must refuse an oversized model before building it.
"""

from __future__ import annotations

import json
import math
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import torch

import deepshrink as ds
from deepshrink.errors import ConfigError, FormatError

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_dsz.py"


@pytest.fixture(scope="module")
def seeds(fuzz: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("seeds")
    names = ["mlp_pruned_kmeans", "tied", "mlp_svd", "mlp_neurons"]
    return {seed.name: seed for seed in fuzz.build_seeds(folder, names)}


def test_every_seed_loads_and_runs(fuzz: Any, seeds: dict[str, Any], tmp_path: Path) -> None:
    for seed in seeds.values():
        assert fuzz.run_case(seed, seed.data, tmp_path / "x.dsz").kind == "ran", seed.name


def test_two_thousand_mutated_files_keep_the_contract(
    fuzz: Any, seeds: dict[str, Any], tmp_path: Path
) -> None:
    small = [seeds[name] for name in ("mlp_pruned_kmeans", "tied", "mlp_svd")]
    with fuzz.scratch() as folder:  # every truncation of the smallest seed, then a random mix
        result = fuzz.fuzz(small, 2000, Path(folder), seed=1, measure=False, truncations=1600)
    assert result["cases"] == 2000
    assert result["violations"] == 0, result["violation_samples"][:3]
    assert result["outcomes"]["format_error"] > 1500  # every truncation is refused
    assert result["outcomes"].get("ran", 0) > 0  # and some consistent edits load and run


def _edited(fuzz: Any, seed: Any, edit: Any) -> bytes:
    header = json.loads(json.dumps(seed.header))
    edit(header)
    return fuzz.assemble(header, seed.sections)


def _refused(data: bytes, tmp_path: Path, where: str, model: Any = None) -> str:
    path = tmp_path / "bad.dsz"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=where) as caught:
            ds.load(path, model=model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak} bytes allocated before refusing"
    return str(caught.value)


@pytest.mark.parametrize("classes", [10**9, 10**6, 1e9, -1, math.inf, "10", [10], {"a": 1}])
def test_arch_arguments_are_bounded_before_building(fuzz, seeds, tmp_path, classes) -> None:
    seed = seeds["mlp_svd"]
    data = _edited(fuzz, seed, lambda h: h["arch"]["kwargs"].update(num_classes=classes))
    assert "num_classes" in _refused(data, tmp_path, "arch")


def test_a_structure_rank_that_would_need_terabytes_is_refused(fuzz, seeds, tmp_path) -> None:
    seed = seeds["mlp_svd"]

    def huge_rank(header: dict[str, Any]) -> None:
        header["structure"][0]["rank"] = 10**12  # a 64 x 10**12 factor: 256 TB

    message = _refused(_edited(fuzz, seed, huge_rank), tmp_path, "structure entry 0")
    assert "cap" in message or "rank" in message


@pytest.mark.parametrize("kept", [math.inf, -1, 10**12, None])
def test_a_neuron_plan_with_hostile_counts_is_refused(fuzz, seeds, tmp_path, kept) -> None:
    seed = seeds["mlp_neurons"]
    data = _edited(fuzz, seed, lambda h: h["structure"][0]["layers"][0].update(kept=kept))
    _refused(data, tmp_path, "structure entry 0")


def test_a_record_of_another_architecture_is_a_format_error(fuzz, seeds, tmp_path) -> None:
    other = seeds["mlp_neurons"].header["structure"]
    data = _edited(fuzz, seeds["mlp_pruned_kmeans"], lambda h: h.update(structure=other))
    _refused(data, tmp_path, "structure entry 0")


def test_code_indices_past_the_codebook_are_refused_at_load(fuzz, seeds, tmp_path) -> None:
    seed = seeds["mlp_pruned_kmeans"]
    names = [entry["name"] for entry in seed.header["tensors"]]
    index = names.index("fc1.weight_indices")
    entry = seed.header["tensors"][index]
    assert entry["layout"] == "raw" or "codebook" in entry
    header = json.loads(json.dumps(seed.header))
    header["tensors"][index] = {"name": entry["name"], "dtype": entry["dtype"],
                                "shape": entry["shape"], "layout": "raw"}  # fmt: skip
    count = math.prod(entry["shape"])
    sections, position = [], 0
    for item in seed.header["tensors"]:  # replace this tensor's sections by one raw section
        roles = _section_count(item)
        if item is entry:
            sections.append(b"\xfe" * count)
        else:
            sections += seed.sections[position : position + roles]
        position += roles
    message = _refused(fuzz.assemble(header, sections), tmp_path, "fc1.weight_indices")
    assert "codebook" in message


def _section_count(entry: dict[str, Any]) -> int:
    if entry["layout"] == "support":
        return 0
    if entry["layout"] == "raw":
        return 1
    streams = [entry.get("values")] if entry.get("codebook") else []
    count = 1 if entry.get("codebook") else 1  # codebook section, or raw values
    if entry["layout"] == "sparse":
        streams.append(entry["gaps"])
    count += sum(2 if s["coding"] == "huffman" else 1 for s in streams)
    return count


def test_declared_sizes_are_capped_before_decoding(fuzz, seeds, tmp_path) -> None:
    seed = seeds["mlp_pruned_kmeans"]
    data = _edited(fuzz, seed, lambda h: h["tensors"][0].update(shape=[2**20, 2**20]))
    assert "max_bytes" in _refused(data, tmp_path, "tensors: declare")


def test_max_bytes_sets_the_cap(seeds, tmp_path) -> None:
    path = tmp_path / "ok.dsz"
    path.write_bytes(seeds["mlp_svd"].data)
    with pytest.raises(FormatError, match="cap"):
        ds.load(path, max_bytes=1000)
    assert isinstance(ds.load(path, max_bytes=10**8), torch.nn.Module)


def test_a_null_arch_without_a_model_is_the_documented_config_error(fuzz, seeds, tmp_path):
    path = tmp_path / "no_arch.dsz"
    path.write_bytes(_edited(fuzz, seeds["mlp_svd"], lambda h: h.update(arch=None)))
    with pytest.raises(ConfigError, match="outside the zoo"):
        ds.load(path)


def test_random_header_edits_of_every_seed(fuzz, seeds, tmp_path) -> None:
    rng = random.Random(7)
    every = list(seeds.values())
    for _ in range(150):
        seed = rng.choice(every)
        outcome = fuzz.run_case(seed, fuzz.edit_header(rng, seed, every), tmp_path / "h.dsz")
        assert outcome.kind in fuzz.DOCUMENTED, outcome
