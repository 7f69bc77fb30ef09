"""Tampered checkpoints (JSON sidecar + safetensors): each must load and run, or be refused.

Every case rewrites the sidecar or the tensor file of a real checkpoint (a pruned, k-means
shared ``digits_mlp``) and calls ``deepshrink.load_checkpoint`` under an audit hook that records
any process start, ``os.system``, ``exec`` of code, file opened for writing, and import of a
module outside deepshrink and its libraries. The contract: the outcome is a
:class:`~deepshrink.errors.DeepshrinkError` (``FormatError`` for a malformed file) or a model
whose forward pass runs; no raw exception, no audit event, no file written, peak memory within
64 MiB + 64 × the files' size (measured as in ``fuzz_dsz.py``).

    python benchmarks/tamper_checkpoints.py
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import deepshrink as ds
from deepshrink.errors import DeepshrinkError

Files = tuple[bytes, bytes]  # sidecar, tensors
#: Modules a load may import for the first time (lazy imports of the libraries it uses).
#: sympy and mpmath: torch imports them the first time a meta kernel checks a shape.
ALLOWED = ("deepshrink", "torch", "safetensors", "numpy", "json", "pydantic", "encodings",
           "sympy", "mpmath")  # fmt: skip
_WATCH = {"active": False, "events": []}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _WATCH["active"]:
        return
    if event in ("os.system", "subprocess.Popen", "os.posix_spawn", "os.exec", "os.spawn",
                 "os.fork", "ctypes.dlopen"):  # fmt: skip
        _WATCH["events"].append(f"{event}: {str(args)[:120]}")
    elif event == "exec" and not getattr(args[0], "co_filename", "").endswith(".py"):
        _WATCH["events"].append(f"exec of code from {getattr(args[0], 'co_filename', '?')}")
    elif event == "open" and len(args) >= 2 and isinstance(args[1], str):
        if any(flag in args[1] for flag in "wax+"):
            _WATCH["events"].append(f"open for writing: {args[0]}")
    elif event == "open" and len(args) >= 3 and isinstance(args[2], int):
        if args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            _WATCH["events"].append(f"open for writing: {args[0]}")
    elif event == "import" and not str(args[0]).startswith(ALLOWED):
        _WATCH["events"].append(f"import {args[0]}")


def base_files(folder: Path) -> Files:
    """A real checkpoint: pruned, k-means shared digits_mlp (structure records included)."""
    torch.manual_seed(0)
    model = ds.zoo.create("digits_mlp", hidden_sizes=[32])
    ds.prune_(model, ds.MagnitudePruning(sparsity=0.8))
    ds.quantize_(model, ds.KMeansQuantization(bits=3))
    path = ds.save_checkpoint(model, folder / "base")
    return path.with_suffix(".json").read_bytes(), path.read_bytes()


# --------------------------------------------------------------- safetensors surgery


def split_tensors(data: bytes) -> tuple[dict[str, Any], bytes]:
    (size,) = struct.unpack_from("<Q", data)
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def join_tensors(header: dict[str, Any] | bytes, body: bytes) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def _first_tensor(header: dict[str, Any], suffix: str) -> str:
    return next(k for k in header if k != "__metadata__" and k.endswith(suffix))


def _tensor_edit(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Files], Files]:
    def apply(files: Files) -> Files:
        header, body = split_tensors(files[1])
        edit(header)
        return files[0], join_tensors(header, body)

    return apply


def _retype(header: dict[str, Any]) -> None:
    name = _first_tensor(header, "fc1.bias")
    begin, end = header[name]["data_offsets"]
    header[name]["dtype"] = "I32"


def _indices_past_codebook(files: Files) -> Files:
    header, body = split_tensors(files[1])
    name = _first_tensor(header, "weight_indices")
    begin, end = header[name]["data_offsets"]
    body = body[:begin] + b"\xff" * (end - begin) + body[end:]
    return files[0], join_tensors(header, body)


def _nan_weights(files: Files) -> Files:
    header, body = split_tensors(files[1])
    name = _first_tensor(header, "fc1.bias")
    begin, end = header[name]["data_offsets"]
    body = body[:begin] + struct.pack("<f", math.nan) * ((end - begin) // 4) + body[end:]
    return files[0], join_tensors(header, body)


# --------------------------------------------------------------- sidecar surgery


def _sidecar_edit(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Files], Files]:
    def apply(files: Files) -> Files:
        sidecar = json.loads(files[0])
        edit(sidecar)
        return json.dumps(sidecar).encode(), files[1]

    return apply


def _sidecar_text(replace: Callable[[str], str]) -> Callable[[Files], Files]:
    return lambda files: (replace(files[0].decode()).encode(), files[1])


def _kwargs(**values: Any) -> Callable[[Files], Files]:
    return _sidecar_edit(lambda s: s["arch"]["kwargs"].update(values))


def _raw_kwarg(text: str) -> Callable[[Files], Files]:
    marker = "__RAW__"

    def apply(files: Files) -> Files:
        sidecar = json.loads(files[0])
        sidecar["arch"]["kwargs"]["num_classes"] = marker
        return json.dumps(sidecar).replace(f'"{marker}"', text).encode(), files[1]

    return apply


def _entry(kind: str, edit: Callable[[dict[str, Any]], Any]) -> Callable[[Files], Files]:
    def change(sidecar: dict[str, Any]) -> None:
        edit(next(e for e in sidecar["structure"] if e["kind"] == kind))

    return _sidecar_edit(change)


def _first_layer(entry: dict[str, Any], value: Any) -> None:
    layers = entry["layers"]
    layers[next(iter(layers))] = value


def _deep(levels: int) -> Callable[[Files], Files]:
    return _sidecar_text(
        lambda text: text.replace(
            '"metadata": {}', '"metadata": {"x": ' + "[" * levels + "]" * levels + "}"
        )  # fmt: skip
    )


def _other_arch_structure(files: Files) -> Files:
    torch.manual_seed(0)
    other = ds.zoo.create("digits_mlp", hidden_sizes=[48, 24])
    ds.prune_(other, ds.NeuronPruning(ratio=0.5))
    sidecar = json.loads(files[0])
    sidecar["structure"] = ds.graph.structure_of(other)
    return json.dumps(sidecar).encode(), files[1]


CASES: dict[str, Callable[[Files], Files]] = {
    "sidecar: not JSON": lambda f: (b"\x00\xffnot json", f[1]),
    "sidecar: empty": lambda f: (b"", f[1]),
    "sidecar: invalid UTF-8": lambda f: (f[0][:10] + b"\xc3\x28" + f[0][10:], f[1]),
    "sidecar: a JSON list": lambda f: (b"[1, 2]", f[1]),
    "sidecar: a JSON string": lambda f: (b'"deepshrink-checkpoint"', f[1]),
    "sidecar: no format": _sidecar_edit(lambda s: s.pop("format")),
    "sidecar: other format": _sidecar_edit(lambda s: s.update(format="pickle")),
    "sidecar: no version": _sidecar_edit(lambda s: s.pop("version")),
    "sidecar: version as text": _sidecar_edit(lambda s: s.update(version="1")),
    "sidecar: version 2": _sidecar_edit(lambda s: s.update(version=2)),
    "sidecar: version true": _sidecar_edit(lambda s: s.update(version=True)),
    "sidecar: version 5,000 digits": _sidecar_text(
        lambda t: t.replace('"version": 1', '"version": ' + "9" * 5000)
    ),
    "sidecar: unknown key": _sidecar_edit(lambda s: s.update(factory="os:system")),
    "sidecar: metadata a list": _sidecar_edit(lambda s: s.update(metadata=[1])),
    "sidecar: training a list": _sidecar_edit(lambda s: s.update(training=[])),
    "sidecar: nesting 20,000 deep": _deep(20_000),
    "sidecar: nesting 100 deep": _deep(100),
    "sidecar: 5,000-digit int in metadata": _sidecar_text(
        lambda t: t.replace('"metadata": {}', '"metadata": {"n": ' + "7" * 5000 + "}")
    ),
    "sidecar: NaN in metadata": _sidecar_text(
        lambda t: t.replace('"metadata": {}', '"metadata": {"n": NaN}')
    ),
    "sidecar: 17 MB": _sidecar_text(
        lambda t: t.replace('"metadata": {}', '"metadata": {"n": "' + "x" * (17 << 20) + '"}')
    ),
    "arch: a list": _sidecar_edit(lambda s: s.update(arch=[1])),
    "arch: a string": _sidecar_edit(lambda s: s.update(arch="digits_mlp")),
    "arch: empty object": _sidecar_edit(lambda s: s.update(arch={})),
    "arch: no name": _sidecar_edit(lambda s: s["arch"].pop("name")),
    "arch: name an int": _sidecar_edit(lambda s: s["arch"].update(name=7)),
    "arch: unknown model": _sidecar_edit(lambda s: s["arch"].update(name="nope")),
    "arch: name os:system": _sidecar_edit(lambda s: s["arch"].update(name="os:system")),
    "arch: name 10,000 chars": _sidecar_edit(lambda s: s["arch"].update(name="m" * 10_000)),
    "arch: kwargs a list": _sidecar_edit(lambda s: s["arch"].update(kwargs=[1])),
    "arch: extra field": _sidecar_edit(lambda s: s["arch"].update(factory="os:system")),
    "kwargs: num_classes 1e9": _kwargs(num_classes=1e9),
    "kwargs: num_classes 10**9": _kwargs(num_classes=10**9),
    "kwargs: num_classes 10**6": _kwargs(num_classes=10**6),
    "kwargs: num_classes -1": _kwargs(num_classes=-1),
    "kwargs: num_classes 0": _kwargs(num_classes=0),
    "kwargs: num_classes true": _kwargs(num_classes=True),
    "kwargs: num_classes '10'": _kwargs(num_classes="10"),
    "kwargs: num_classes nested": _kwargs(num_classes={"a": [1]}),
    "kwargs: num_classes 5,000 digits": _raw_kwarg("3" * 5000),
    "kwargs: num_classes Infinity": _raw_kwarg("Infinity"),
    "kwargs: num_classes NaN": _raw_kwarg("NaN"),
    "kwargs: num_classes 1e999": _raw_kwarg("1e999"),
    "kwargs: num_classes 11 (model mismatch)": _kwargs(num_classes=11),
    "kwargs: hidden_sizes [10**6]": _kwargs(hidden_sizes=[10**6]),
    "kwargs: hidden_sizes 10,000 layers": _kwargs(hidden_sizes=[4] * 10_000),
    "kwargs: hidden_sizes [1e308]": _kwargs(hidden_sizes=[1e308]),
    "kwargs: hidden_sizes [-3]": _kwargs(hidden_sizes=[-3]),
    "kwargs: unknown argument": _kwargs(layers=3),
    "structure: an object": _sidecar_edit(lambda s: s.update(structure={"kind": "x"})),
    "structure: list of ints": _sidecar_edit(lambda s: s.update(structure=[1, 2])),
    "structure: unknown kind": _sidecar_edit(lambda s: s["structure"].append({"kind": "zip"})),
    "structure: no kind": _sidecar_edit(lambda s: s["structure"].append({"layers": {}})),
    "structure: kmeans 10**9 clusters": _entry("quantize.kmeans", lambda e: _first_layer(e, 10**9)),
    "structure: kmeans clusters inf": _entry(
        "quantize.kmeans", lambda e: _first_layer(e, math.inf)
    ),
    "structure: kmeans unknown layer": _entry(
        "quantize.kmeans", lambda e: e["layers"].update({"nope": 4})
    ),
    "structure: kmeans layers a list": _entry("quantize.kmeans", lambda e: e.update(layers=[])),
    "structure: another architecture's record": _other_arch_structure,
    "structure: records twice": _sidecar_edit(lambda s: s.update(structure=s["structure"] * 2)),
    "structure: dropped": _sidecar_edit(lambda s: s.update(structure=[])),
    "tensors: empty file": lambda f: (f[0], b""),
    "tensors: truncated in half": lambda f: (f[0], f[1][: len(f[1]) // 2]),
    "tensors: last byte cut": lambda f: (f[0], f[1][:-1]),
    "tensors: header length 2**63": lambda f: (f[0], struct.pack("<Q", 2**63) + f[1][8:]),
    "tensors: header length past the end": lambda f: (
        f[0],
        struct.pack("<Q", len(f[1])) + f[1][8:],
    ),  # fmt: skip
    "tensors: header not JSON": lambda f: (f[0], join_tensors(b"{not json", b"")),
    "tensors: offsets past the end": _tensor_edit(
        lambda h: h[_first_tensor(h, "fc1.bias")].update(data_offsets=[0, 2**40])
    ),
    "tensors: shape [2**40]": _tensor_edit(
        lambda h: h[_first_tensor(h, "fc1.bias")].update(shape=[2**40])
    ),
    "tensors: negative shape": _tensor_edit(
        lambda h: h[_first_tensor(h, "fc1.bias")].update(shape=[-32])
    ),
    "tensors: unknown dtype": _tensor_edit(
        lambda h: h[_first_tensor(h, "fc1.bias")].update(dtype="Q99")
    ),
    "tensors: dtype changed (F32 -> I32)": _tensor_edit(_retype),
    "tensors: a tensor renamed": _tensor_edit(
        lambda h: h.update({"renamed": h.pop(_first_tensor(h, "fc1.bias"))})
    ),
    "tensors: a tensor dropped": _tensor_edit(lambda h: h.pop(_first_tensor(h, "fc1.bias"))),
    "tensors: shape transposed": _tensor_edit(
        lambda h: h[_first_tensor(h, "fc2.weight_indices")].update(
            shape=h[_first_tensor(h, "fc2.weight_indices")]["shape"][::-1]
        )
    ),
    "tensors: code indices past the codebook": _indices_past_codebook,
    "tensors: NaN biases (loads)": _nan_weights,
    "tensors: metadata with code": _tensor_edit(
        lambda h: h.update(__metadata__={"format": "pt", "x": "__import__('os').system('id')"})
    ),
}


def _peak_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def run_case(folder: Path, files: Files, measure: bool = True) -> dict[str, Any]:
    """Write the two files, load them under the audit hook, run the model if it loads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_bytes(files[0])
    (folder / "model.safetensors").write_bytes(files[1])
    before_files = sorted(p.name for p in folder.iterdir())
    measured = measure and _peak_reset()
    rss = _status("VmRSS") if measured else 0
    _WATCH["events"] = []
    start = time.perf_counter()
    _WATCH["active"] = True
    try:
        model, _ = ds.load_checkpoint(folder / "model.safetensors")
        with torch.no_grad():
            model.eval()(*model.example_inputs(2))
        outcome, message = "ran", ""
    except DeepshrinkError as exc:
        outcome, message = type(exc).__name__, str(exc)
    except Exception as exc:  # noqa: BLE001 - recorded as a violation
        outcome, message = f"raw:{type(exc).__name__}", str(exc)
    finally:
        _WATCH["active"] = False
    seconds = time.perf_counter() - start
    peak = max(0, _status("VmHWM") - rss) if measured else None
    written = sorted(p.name for p in folder.iterdir()) != before_files
    return {
        "outcome": outcome, "message": message[:300], "seconds": round(seconds, 4),
        "peak_bytes": peak, "audit_events": list(_WATCH["events"]), "files_written": written,
        "bound_bytes": (64 << 20) + 64 * (len(files[0]) + len(files[1])),
    }  # fmt: skip


def violations(result: dict[str, Any]) -> list[str]:
    problems = []
    if result["outcome"].startswith("raw:"):
        problems.append(result["outcome"])
    if result["audit_events"]:
        problems.append("audit events")
    if result["files_written"]:
        problems.append("files written")
    if result["peak_bytes"] is not None and result["peak_bytes"] > result["bound_bytes"]:
        problems.append("memory")
    return problems


def run_all(folder: Path, measure: bool = True) -> dict[str, dict[str, Any]]:
    """Every case of :data:`CASES` in its own subfolder of ``folder``, after two warm-up loads
    (named ``warm-up *``: first-use imports of torch, counted apart)."""
    sys.addaudithook(_audit)
    base = base_files(folder)
    # lazy imports happen once, here: a valid file, then one whose replay indexes on meta
    warm = [run_case(folder / "warm", base, measure=False)]
    warm.append(run_case(folder / "warm2", CASES["structure: records twice"](base), measure=True))
    results = {"warm-up " + str(i): item for i, item in enumerate(warm)}
    for index, (name, tamper) in enumerate(CASES.items()):
        results[name] = run_case(folder / f"case{index}", tamper(base), measure)
    return results


def main() -> None:
    from _common import write_result

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        results = run_all(Path(folder))
    warm = {name: results.pop(name) for name in list(results) if name.startswith("warm-up")}
    outcomes: dict[str, int] = {}
    for result in results.values():
        outcomes[result["outcome"]] = outcomes.get(result["outcome"], 0) + 1
    bad = {name: violations(r) for name, r in results.items() if violations(r)}
    path = write_result("fuzz_checkpoints", {
        "cases": len(results), "outcomes": outcomes, "violations": bad,
        "slowest_s": max(r["seconds"] for r in results.values()),
        "peak_bytes": max(r["peak_bytes"] or 0 for r in results.values()),
        "results": results, "warm_up": warm, "load_average": os.getloadavg(),
    })  # fmt: skip
    print(json.dumps({"cases": len(results), "outcomes": outcomes, "violations": bad}))
    print(path)


if __name__ == "__main__":
    main()
