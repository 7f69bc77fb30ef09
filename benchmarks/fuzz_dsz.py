"""Fuzz the ``.dsz`` reader: mutated bytes and edited headers/sections with CRCs recomputed.

Seeds are small real models (pruned, k-means shared, neuron- and channel-pruned, SVD-factorized,
tied, masked). Each case is one mutated file given to ``deepshrink.load``; its outcome is one of

* ``ran``: it loaded and a forward pass on a valid input returned (finite or not);
* ``format_error``: :class:`deepshrink.errors.FormatError`;
* ``no_arch``: the documented :class:`~deepshrink.errors.ConfigError` for a file whose
  ``arch`` is ``null`` (a model outside the zoo) loaded without a model to fill;
* a violation: any other exception (``raw:<Type>``), a model that loads and fails on its first
  forward (``forward:<Type>``), a case over 5 s, or peak memory over 64 MiB + 64 × file size.

Peak memory per case: before a case, freed heap pages are handed back (glibc ``malloc_trim``)
and the process's resident high-water mark is reset (writing ``5`` to
``/proc/self/clear_refs``); after it, ``VmHWM - VmRSS(before)`` from ``/proc/self/status`` is
the most memory the case added at any moment — Python, NumPy and PyTorch allocations alike,
since all of them are resident pages. The summary also gives the highest resident size any case
reached against the process's resident size when the cases began: every case's bound is at least
64 MiB, so a process peak under baseline + 64 MiB bounds every case whatever the allocator
reused.

    python benchmarks/fuzz_dsz.py --cases 100000 --budget-s 3600
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import math
import random
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import deepshrink as ds
from deepshrink.encode.container import PRELUDE, SECTION
from deepshrink.errors import ConfigError, FormatError

LIMIT_S = 5.0
#: Outcomes that keep the contract ("no_arch": the ConfigError documented for "arch": null).
DOCUMENTED = ("ran", "format_error", "no_arch")
BASE_BYTES = 64 << 20
FILE_MULTIPLE = 64

# ---------------------------------------------------------------- seeds


class Tied(nn.Module):
    """A model outside the zoo whose output layer reuses the embedding matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(16, 16, bias=False)
        self.hidden = nn.Linear(16, 16)
        self.out = nn.Linear(16, 16, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(self.embed(x))))


@dataclass
class Seed:
    name: str
    data: bytes
    inputs: tuple[torch.Tensor, ...]
    blank: Callable[[], nn.Module] | None = None  # a model to load into (non-zoo seeds)
    header: dict[str, Any] = field(default_factory=dict)
    sections: list[bytes] = field(default_factory=list)


def _mlp(hidden: list[int]) -> nn.Module:
    torch.manual_seed(0)
    return ds.zoo.create("digits_mlp", hidden_sizes=hidden)


def _mlp_kmeans() -> nn.Module:
    model = _mlp([32])
    ds.prune_(model, ds.MagnitudePruning(sparsity=0.8))
    return ds.quantize_(model, ds.KMeansQuantization(bits=3))


def _mlp_masked() -> nn.Module:
    return ds.prune_(_mlp([32]), ds.MagnitudePruning(sparsity=0.7))


def _mlp_neurons() -> nn.Module:
    return ds.prune_(_mlp([48, 24]), ds.NeuronPruning(ratio=0.5))


def _mlp_svd() -> nn.Module:
    return ds.factorize_(_mlp([48]), ds.SVDFactorization(rank=4, min_params=0))


def _vgg_channels() -> nn.Module:
    torch.manual_seed(0)
    model = ds.zoo.create("vgg11_cifar", width=0.0625)
    return ds.prune_(model, ds.ChannelPruning(ratio=0.5))


def _cnn_kmeans() -> nn.Module:
    torch.manual_seed(0)
    model = ds.zoo.create("mnist_cnn")
    ds.finalize_(ds.prune_(model, ds.MagnitudePruning(sparsity=0.9)))
    return ds.quantize_(model, ds.KMeansQuantization(bits=4))


def _tied() -> nn.Module:
    torch.manual_seed(0)
    return Tied()


#: name → (builder, model to load into: None for zoo models rebuilt from the header)
SEEDS: dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module] | None]] = {
    "mlp_pruned_kmeans": (_mlp_kmeans, None),
    "mlp_masked": (_mlp_masked, None),
    "mlp_neurons": (_mlp_neurons, None),
    "mlp_svd": (_mlp_svd, None),
    "vgg_channels": (_vgg_channels, None),
    "cnn_kmeans": (_cnn_kmeans, None),
    "tied": (_tied, Tied),
}


def _split(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    *_, size, _, _ = PRELUDE.unpack_from(data)
    start = PRELUDE.size + size
    header = json.loads(zlib.decompress(data[PRELUDE.size : start]))
    sections = []
    while start < len(data):
        length, _ = SECTION.unpack_from(data, start)
        sections.append(data[start + SECTION.size : start + SECTION.size + length])
        start += SECTION.size + length
    return header, sections


def build_seeds(folder: Path, names: list[str] | None = None) -> list[Seed]:
    """Save every seed model (or those in ``names``) and keep its bytes and inputs."""
    seeds = []
    for name, (build, blank) in SEEDS.items():
        if names is not None and name not in names:
            continue
        model = build()
        path = ds.save(model, folder / f"{name}.dsz")
        data = path.read_bytes()
        inputs = model.example_inputs(2) if hasattr(model, "example_inputs") else (
            torch.randn(2, 16, generator=torch.Generator().manual_seed(0)),
        )  # fmt: skip
        header, sections = _split(data)
        seeds.append(Seed(name, data, inputs, blank, header, sections))
    return seeds


# ---------------------------------------------------------------- mutations


class Raw:
    """JSON text put verbatim where this value stands (5,000-digit ints, deep nesting...)."""

    def __init__(self, text: str) -> None:
        self.text = text


HOSTILE: list[Any] = [
    0, -1, 1, 2, 3, 7, 255, 256, 257, 4096, 65535, 65536, 10**6, 10**9, 2**31, 2**62, 2**63,
    2**64, 2**70, -(2**63), 0.5, -0.0, 1e9, 1e308, math.inf, -math.inf, math.nan, "", "A",
    "x" * 5000, "../../x", "os:system", [], [0], [-1], [1e9], [0, 0, 0], list(range(300)),
    [[[]]], {}, {"a": 1}, None, True, False, Raw("1" * 5000), Raw("[" * 20000 + "]" * 20000),
    Raw("1e999"), Raw("-1e999"),
]  # fmt: skip


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) to a node of a JSON tree (lists sampled if long)."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        indices = range(len(value)) if len(value) <= 8 else [0, 1, len(value) - 1]
        for index in indices:
            out += _paths(value[index], (*prefix, index))
    return out


def _get(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: Any, path: tuple, value: Any) -> None:
    _get(tree, path[:-1])[path[-1]] = value


def _variant(rng: random.Random, value: Any) -> Any:
    """A plausible-but-wrong change of ``value`` (numbers scaled, lists shuffled...)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([value + 1, value - 1, -value, value * 2, value * 1000, value << 20,
                           float(value), str(value), math.inf, 0])  # fmt: skip
    if isinstance(value, float):
        whole = int(value) + 1 if math.isfinite(value) else 0
        return rng.choice([value * 1e6, -value, math.inf, math.nan, whole])
    if isinstance(value, str):
        return rng.choice([value + "x", value[:-1], value.upper(), "", value * 3])
    if isinstance(value, list) and value:
        edit = rng.randrange(6)
        copy = list(value)
        if edit == 0:
            copy.append(copy[rng.randrange(len(copy))])  # a duplicate
        elif edit == 1:
            copy.pop(rng.randrange(len(copy)))
        elif edit == 2:
            copy.reverse()
        elif edit == 3:
            copy[rng.randrange(len(copy))] = rng.choice([math.inf, -1, 10**9, 2**40, None])
        elif edit == 4:
            copy = copy * 2
        else:
            copy = copy[: len(copy) // 2]
        return copy
    if isinstance(value, dict) and value:
        copy = dict(value)
        key = rng.choice(list(copy))
        if rng.random() < 0.5:
            del copy[key]
        else:
            copy["unknown_" + str(key)] = copy[key]
        return copy
    return rng.choice(HOSTILE)


def _focus(rng: random.Random, header: dict[str, Any]) -> tuple:
    """A node to edit, favouring the parts a reader must bound: arch, structure, tensors."""
    area = rng.choices(["arch", "structure", "tensors", "aliases", "any"], [3, 4, 4, 1, 1])[0]
    if area != "any" and area in header and header[area]:
        candidates = [p for p in _paths(header[area], (area,))]
    else:
        candidates = _paths(header)[1:]
    return rng.choice(candidates) if candidates else ("metadata",)


def _encode_header(header: dict[str, Any]) -> bytes:
    raws: list[str] = []

    def default(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        raise TypeError(type(value).__name__)

    text = json.dumps(header, default=default, separators=(",", ":"))
    for index, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00RAW{index}\x00"), raw)
    return text.encode()


def assemble(header: dict[str, Any] | bytes, sections: list[bytes]) -> bytes:
    """A file from a header (a dict, or JSON bytes) and section payloads, CRCs made valid."""
    text = header if isinstance(header, bytes) else _encode_header(header)
    compressed = zlib.compress(text, 6)
    parts = [PRELUDE.pack(ds.encode.MAGIC, 1, 0, len(compressed), len(text),
                          zlib.crc32(compressed)), compressed]  # fmt: skip
    for payload in sections:
        parts += [SECTION.pack(len(payload), zlib.crc32(payload)), payload]
    return b"".join(parts)


def edit_header(rng: random.Random, seed: Seed, seeds: list[Seed]) -> bytes:
    header = json.loads(json.dumps(seed.header))
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if rng.random() < 0.08:  # another seed's record: another architecture
            other = rng.choice(seeds).header
            key = rng.choice(["arch", "structure"])
            header[key] = json.loads(json.dumps(other[key]))
            continue
        path = _focus(rng, header)
        if not path:
            continue
        old = _get(header, path)
        new = _variant(rng, old) if rng.random() < 0.6 else rng.choice(HOSTILE)
        _set(header, path, new)
    return assemble(header, seed.sections)


def edit_section(rng: random.Random, seed: Seed) -> bytes:
    sections = list(seed.sections)
    if not sections:
        return seed.data
    index = rng.randrange(len(sections))
    payload = bytearray(sections[index])
    kind = rng.randrange(5)
    if kind == 0 and payload:
        payload = bytearray(rng.randbytes(len(payload)))
    elif kind == 1 and payload:
        for _ in range(rng.randint(1, 4)):
            payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
    elif kind == 2:
        payload = bytearray(b"\xff" * len(payload))
    elif kind == 3:
        payload = payload[: rng.randrange(len(payload) + 1)]
    else:
        payload += rng.randbytes(rng.randint(1, 64))
    sections[index] = bytes(payload)
    return assemble(seed.header, sections)


def edit_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4])):
        kind = rng.randrange(5)
        position = rng.randrange(len(out) + 1)
        if kind == 0 and out:
            out[min(position, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[min(position, len(out) - 1)] = rng.randrange(256)
        elif kind == 2:
            out[position:position] = rng.randbytes(rng.randint(1, 16))
        elif kind == 3:
            del out[position : position + rng.randint(1, 16)]
        else:
            del out[position:]
    return bytes(out)


def cases(seeds: list[Seed], count: int, rng: random.Random, truncations: int = 1 << 14):
    """``(seed, kind, bytes)``: every truncation of files under ``truncations`` bytes, then a
    random mix of byte, header and section mutations."""
    produced = 0
    for seed in seeds:
        if len(seed.data) <= truncations:
            for cut in range(len(seed.data)):
                if produced >= count:
                    return
                produced += 1
                yield seed, "truncate", seed.data[:cut]
    weights = [0.2 if len(seed.data) > truncations else 1.0 for seed in seeds]  # big: slow
    while produced < count:
        seed = rng.choices(seeds, weights)[0]
        kind = rng.choices(["bytes", "header", "section"], [3, 5, 2])[0]
        if kind == "bytes":
            data = edit_bytes(rng, seed.data)
        elif kind == "header":
            data = edit_header(rng, seed, seeds)
        else:
            data = edit_section(rng, seed)
        produced += 1
        yield seed, kind, data


# ---------------------------------------------------------------- running


def _status(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _trim() -> Callable[[], Any]:
    """glibc's ``malloc_trim(0)``: hand freed heap pages back, so that a case cannot hide an
    allocation in memory an earlier case freed (a no-op where there is no glibc)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda *_: 0


_TRIM = _trim()


def _reset_peak() -> bool:
    _TRIM(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Outcome:
    kind: str  # ran, format_error, raw:<Type>, forward:<Type>
    seconds: float
    peak_bytes: int | None
    message: str = ""


def run_case(seed: Seed, data: bytes, path: Path, measure: bool = True) -> Outcome:
    """Load ``data`` as a ``.dsz`` file and, if it loads, run one forward pass."""
    path.write_bytes(data)
    measured = measure and _reset_peak()
    before = _status("VmRSS") if measured else 0
    start = time.perf_counter()
    try:
        model = ds.load(path, model=seed.blank() if seed.blank else None)
    except FormatError as exc:
        return _done("format_error", start, measured, before, str(exc))
    except ConfigError as exc:  # documented for a file with "arch": null loaded without a model
        kind = "no_arch" if "outside the zoo" in str(exc) else f"raw:{type(exc).__name__}"
        return _done(kind, start, measured, before, str(exc))
    except Exception as exc:  # noqa: BLE001 - the fuzzer records every escape
        return _done(f"raw:{type(exc).__name__}", start, measured, before, str(exc))
    try:
        inputs = model.example_inputs(2) if hasattr(model, "example_inputs") else seed.inputs
        with torch.no_grad():
            model.eval()(*inputs)
    except Exception as exc:  # noqa: BLE001
        return _done(f"forward:{type(exc).__name__}", start, measured, before, str(exc))
    return _done("ran", start, measured, before)


_HIGHEST = {"rss": 0}


def _done(kind: str, start: float, measured: bool, before: int, message: str = "") -> Outcome:
    seconds = time.perf_counter() - start
    highest = _status("VmHWM") if measured else 0
    _HIGHEST["rss"] = max(_HIGHEST["rss"], highest)
    peak = max(0, highest - before) if measured else None
    return Outcome(kind, seconds, peak, message[:300])


def fuzz(
    seeds: list[Seed], count: int, folder: Path, *, seed: int = 0, budget_s: float | None = None,
    measure: bool = True, report: Callable[[dict[str, Any]], None] | None = None,
    truncations: int = 1 << 14,
) -> dict[str, Any]:  # fmt: skip
    """Run ``count`` cases (or until ``budget_s``); outcome counts, worst cases, violations."""
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    violations: list[dict[str, Any]] = []
    slowest = {"seconds": 0.0}
    heaviest = {"peak_bytes": 0, "ratio_to_bound": 0.0}
    started = time.perf_counter()
    path = folder / "case.dsz"
    _TRIM(0)
    baseline = _status("VmRSS")
    for number, (item, kind, data) in enumerate(cases(seeds, count, rng, truncations)):
        if budget_s is not None and time.perf_counter() - started > budget_s:
            break
        outcome = run_case(item, data, path, measure)
        counts[outcome.kind] += 1
        by_kind[f"{kind}:{outcome.kind}"] += 1
        bound = BASE_BYTES + FILE_MULTIPLE * len(data)
        info = {"case": number, "seed": item.name, "mutation": kind, "file_bytes": len(data),
                "outcome": outcome.kind, "seconds": round(outcome.seconds, 4),
                "peak_bytes": outcome.peak_bytes, "message": outcome.message}  # fmt: skip
        if outcome.seconds > slowest["seconds"]:
            slowest = info
        if (
            outcome.peak_bytes is not None
            and outcome.peak_bytes / bound > heaviest["ratio_to_bound"]
        ):
            heaviest = {**info, "ratio_to_bound": outcome.peak_bytes / bound}
        bad = outcome.kind not in DOCUMENTED or outcome.seconds > LIMIT_S
        bad = bad or (outcome.peak_bytes or 0) > bound
        if bad:
            violations.append(info)
            logging.warning("violation: %s", info)
        if report is not None and (number + 1) % 5000 == 0:
            report(_summary(counts, by_kind, violations, slowest, heaviest, started, seeds,
                            baseline))  # fmt: skip
    return _summary(counts, by_kind, violations, slowest, heaviest, started, seeds, baseline)


def _summary(
    counts: Counter[str], by_kind: Counter[str], violations: list[dict[str, Any]],
    slowest: dict[str, Any], heaviest: dict[str, Any], started: float, seeds: list[Seed],
    baseline: int,
) -> dict[str, Any]:  # fmt: skip
    total = sum(counts.values())
    return {
        "baseline_rss_bytes": baseline,
        # the highest resident size any case reached (VmHWM after each case; absolute)
        "process_peak_rss_bytes": _HIGHEST["rss"],
        "cases": total,
        "outcomes": dict(counts),
        "by_mutation": dict(sorted(by_kind.items())),
        "violations": len(violations),
        "violation_samples": violations[:50],
        "slowest_case": slowest,
        "peak_memory_case": heaviest,
        "memory_bound": "64 MiB + 64 x file size",
        "wall_s": round(time.perf_counter() - started, 1),
        "seeds": {s.name: len(s.data) for s in seeds},
    }


def scratch() -> tempfile.TemporaryDirectory[str]:
    """A temporary folder in memory where there is one (cases are written and read back)."""
    shm = Path("/dev/shm")
    return tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None)


def main() -> None:
    import os

    from _common import write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="fuzz_dsz")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(1)
    with scratch() as folder:
        seeds = build_seeds(Path(folder))

        def report(partial: dict[str, Any]) -> None:
            write_result(args.out, {**partial, "finished": False, "load_average": os.getloadavg()})

        result = fuzz(seeds, args.cases, Path(folder), seed=args.seed, budget_s=args.budget_s,
                      report=report)  # fmt: skip
    path = write_result(args.out, {**result, "finished": True, "load_average": os.getloadavg()})
    print(json.dumps({k: result[k] for k in ("cases", "outcomes", "violations")}))
    print(path)


if __name__ == "__main__":
    main()
