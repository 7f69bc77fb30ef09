"""The commands that read one model file: ``eval``, ``inspect`` and ``export``.

Each checks the file's kind by its suffix first and reads it without unpickling anything; a file
it cannot read is a FormatError (one ``error:`` line, exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deepshrink._cli_common import PATH as _PATH
from deepshrink._cli_common import check_fits as _check_fits
from deepshrink._cli_common import data_options
from deepshrink._cli_common import load_data as _load_data
from deepshrink.errors import ConfigError, FormatError

#: The model files ``eval`` and ``inspect`` read.
_KINDS = ".safetensors, .dsz, .onnx, .tflite"


def _model_file(path: Path) -> str:
    """The kind of the model file at ``path`` (its suffix); ConfigError for anything else."""
    kind = path.suffix.lower()
    accepted = f"give a model file: {_KINDS} (a .safetensors with its .json sidecar beside it)"
    if kind not in _KINDS.split(", "):
        what = "a directory" if path.is_dir() else f"a {kind or 'suffix-less'} file"
        raise ConfigError(f"{path} is {what}, not a model file; {accepted}")
    if not path.is_file():
        state = "is a directory" if path.exists() else "does not exist"
        side = path.with_suffix(".json")
        sidecar = (
            f" (nor its sidecar {side.name})"
            if kind == ".safetensors" and not side.exists()
            else ""
        )
        raise ConfigError(f"{path} {state}{sidecar}; {accepted}")
    return kind


def _outside_zoo(path: Path, call: str) -> ConfigError:
    return ConfigError(
        f"{path} holds a model outside the zoo (no 'arch' recorded), which the command line "
        f"cannot rebuild; load it in Python with your module: {call}({str(path)!r}, model=...)"
    )


def _load_pytorch(path: Path, kind: str) -> tuple[Any, dict[str, Any]]:
    """The model of a ``.dsz`` or ``.safetensors`` file, rebuilt from its zoo arch, and its
    header or sidecar. Nothing is unpickled."""
    from deepshrink import encode, train

    if kind == ".dsz":
        header = encode.read(path).header
        if not header.get("arch"):
            raise _outside_zoo(path, "ds.load")
        return encode.load(path), header
    sidecar = train.checkpoint.read_sidecar(path)
    if not sidecar.get("arch"):
        raise _outside_zoo(path, "ds.load_checkpoint")
    return train.load_checkpoint(path)[0], sidecar


def _onnx_session(path: Path) -> Any:
    """An ONNX Runtime session on ``path``; a file ONNX Runtime cannot read is a FormatError."""
    from deepshrink.export.runtime import session

    try:
        return session(path)
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        raise FormatError(f"{path} is not a readable ONNX model: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _eval_onnx(path: Path, bundle: Any) -> Any:
    """The ONNX classifier at ``path`` scored in ONNX Runtime."""
    from types import SimpleNamespace

    from deepshrink.export.runtime import evaluate_onnx

    sess = _onnx_session(path)
    dims = list(sess.get_inputs()[0].shape)[1:]
    if len(sess.get_inputs()) == 1 and all(isinstance(d, int) for d in dims):
        _check_fits(SimpleNamespace(input_shape=dims), path.name, bundle)
    try:
        return evaluate_onnx(sess, bundle.test)
    except Exception as exc:
        if not type(exc).__module__.startswith("onnxruntime"):
            raise
        raise ConfigError(
            f"{path} does not run on this data in ONNX Runtime: "
            f"{_first_line(exc)}; pick the dataset it was made for"
        ) from None


def _eval_tflite(path: Path, bundle: Any) -> Any:
    """The TFLite classifier at ``path`` scored in the LiteRT interpreter."""
    from types import SimpleNamespace

    from deepshrink.export.tflite import evaluate_tflite, interpreter

    runner = interpreter(path)
    shape = [int(d) for d in runner.get_input_details()[0]["shape"]][1:]
    if len(runner.get_input_details()) == 1:
        _check_fits(SimpleNamespace(input_shape=shape), path.name, bundle)
    return evaluate_tflite(runner, bundle.test)


def _eval_runtime(path: Path, bundle: Any) -> str:
    """Accuracy of an exported classifier in its own runtime, as a Markdown table."""
    from deepshrink.eval import _units
    from deepshrink.eval.agreement import accuracy_interval

    if path.suffix.lower() == ".tflite":
        result, runtime = _eval_tflite(path, bundle), "LiteRT interpreter (CPU, 1 thread)"
    else:
        result, runtime = _eval_onnx(path, bundle), "ONNX Runtime (CPU, 1 thread)"
    rows = [
        ("model", path.name),
        ("runtime", runtime),
        ("top-1 accuracy", _units.percent(result.top1)),
        ("top-1 95% interval", accuracy_interval(result.top1, result.count)),
        ("top-5 accuracy", _units.percent(result.top5)),
        ("loss", f"{result.loss:.4f}"),
        ("test samples", _units.count(result.count)),
        ("file size", _units.size(path.stat().st_size)),
    ]
    return _units.table(("metric", "value"), rows)


@click.command("eval")
@click.argument("file", type=_PATH)
@data_options
@click.option("--latency/--no-latency", default=True, help="Measure CPU latency (PyTorch).")
@click.option("--threads", type=int, help="torch CPU threads for latency.")
def eval_command(file: Path, data_name: str, data_root: Path | None, latency: bool,
                 threads: int | None) -> None:  # fmt: skip
    """Evaluate a model FILE (.safetensors with its .json, .dsz, .onnx, .tflite) on --data.

    Accuracy with its 95 % interval and test samples, the file's size on disk; .onnx runs in
    ONNX Runtime, .tflite in the LiteRT interpreter; for PyTorch models (.safetensors, .dsz)
    also parameters, MACs and latency.
    """
    from deepshrink import eval as ds_eval

    kind = _model_file(file)
    if kind in (".onnx", ".tflite"):
        markdown = _eval_runtime(file, _load_data(data_name, data_root))
    else:
        net, fields = _load_pytorch(file, kind)
        bundle = _load_data(data_name, data_root)
        name = (fields.get("arch") or {}).get("name", file.stem)
        _check_fits(net, name, bundle)
        result = ds_eval.report(net, bundle.test, name=name, file=file, latency=latency,
                                threads=threads)  # fmt: skip
        markdown = result.to_markdown() + (
            f"\n\ntop-1 error {1 - result.accuracy:.2%} on {result.samples:,} test images; the "
            f"file is {result.dense_bytes / file.stat().st_size:.1f}x smaller than the dense fp32 "
            f"parameters ({result.dense_bytes:,} B)"
        )
    click.echo(markdown)
    click.echo(f"file: {file} ({file.stat().st_size:,} B on disk)")


def _arch_lines(fields: dict[str, Any]) -> list[str]:
    """The arch and structure-change kinds of a ``.dsz`` header or checkpoint sidecar."""
    arch = fields.get("arch")
    kwargs = ", ".join(f"{k}={v}" for k, v in (arch or {}).get("kwargs", {}).items())
    name = f"{arch.get('name')}({kwargs})" if arch else "none (a model outside the zoo)"
    changes = [e.get("kind", "?") for e in fields.get("structure") or [] if isinstance(e, dict)]
    counts = ", ".join(f"{kind} ×{changes.count(kind)}" for kind in sorted(set(changes)))
    return [f"arch: {name}", f"structure: {counts or 'unchanged'}", ""]


def _inspect_dsz(path: Path) -> list[str]:
    from deepshrink import encode

    header = encode.read(path).header
    _validated(path, ".dsz", header)
    return [
        *_arch_lines(header),
        encode.size_table(path).to_markdown(),
    ]


def _validated(path: Path, kind: str, fields: dict[str, Any]) -> None:
    """Rebuild a zoo model's file as ``eval`` would, so ``inspect`` refuses what ``eval``
    refuses (arguments out of bounds, records for another architecture, indices past a
    codebook); a model outside the zoo is shown from its header alone."""
    if fields.get("arch"):
        _load_pytorch(path, kind)


def _inspect_safetensors(path: Path) -> list[str]:
    from safetensors import SafetensorError, safe_open

    from deepshrink.eval import _units
    from deepshrink.train.checkpoint import read_sidecar

    sidecar = read_sidecar(path)
    _validated(path, ".safetensors", sidecar)
    rows = []
    try:
        with safe_open(str(path), framework="pt") as tensors:
            for name in tensors.keys():  # noqa: SIM118 (safe_open has no __iter__)
                item = tensors.get_slice(name)
                shape, dtype = item.get_shape(), item.get_dtype()
                size = _DTYPE_BYTES.get(dtype, 0) * _numel(shape)
                rows.append((name, "×".join(map(str, shape)) or "scalar", dtype, f"{size:,}"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"{path} is not a readable safetensors file: {exc}") from None
    return [
        *_arch_lines(sidecar),
        _units.table(("tensor", "shape", "dtype", "bytes"), rows),
    ]


_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2,
                "BF16": 2, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1}  # fmt: skip


def _numel(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _onnx_values(values: Any) -> list[tuple[str, str, str]]:
    import onnx

    rows = []
    for value in values:
        tensor = value.type.tensor_type
        dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?")
                for d in tensor.shape.dim]  # fmt: skip
        rows.append((value.name, onnx.TensorProto.DataType.Name(tensor.elem_type).lower(),
                     "×".join(dims) or "scalar"))  # fmt: skip
    return rows


def _inspect_onnx(path: Path) -> list[str]:
    from collections import Counter

    import onnx

    from deepshrink.eval import _units

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and onnx's own errors
        raise FormatError(f"{path} is not a readable ONNX model: {_first_line(exc)}") from None
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    ops = Counter(node.op_type for node in graph.node)
    header = ("name", "dtype", "shape")
    return [
        "inputs:", _units.table(header, _onnx_values(inputs)), "",
        "outputs:", _units.table(header, _onnx_values(graph.output)), "",
        "ops:", _units.table(("op", "count"), [(op, str(n)) for op, n in ops.most_common()]),
    ]  # fmt: skip


def _inspect_tflite(path: Path) -> list[str]:
    from deepshrink.eval import _units
    from deepshrink.export.tflite import describe_tflite

    described = describe_tflite(path)
    header = ("name", "dtype", "shape", "scale / zero point")

    def rows(entries: list[dict[str, Any]]) -> list[tuple[str, ...]]:
        return [
            (e["name"], e["dtype"], "×".join(map(str, e["shape"])) or "scalar",
             "{scale:.6g} / {zero_point}".format(**e["quantization"]) if e["quantization"]
             else "")
            for e in entries
        ]  # fmt: skip

    ops = sorted(described["ops"].items(), key=lambda item: -item[1])
    constants = [(kind, f"{size:,}") for kind, size in sorted(described["tensor_bytes"].items())]
    return [
        "inputs:", _units.table(header, rows(described["inputs"])), "",
        "outputs:", _units.table(header, rows(described["outputs"])), "",
        "ops:", _units.table(("op", "count"), [(op, str(n)) for op, n in ops]), "",
        "constant tensors:", _units.table(("dtype", "bytes"), constants),
    ]  # fmt: skip


@click.command("inspect")
@click.argument("file", type=_PATH)
def inspect_command(file: Path) -> None:
    """Show what a model FILE holds (.safetensors with its .json, .dsz, .onnx, .tflite); no
    data needed.

    .dsz: arch and the per-layer size table; .safetensors: arch, structure and each tensor's
    shape, dtype and bytes; .onnx and .tflite: inputs, outputs and op counts (.tflite: input
    quantization and constant bytes by dtype too). Nothing is unpickled.
    """
    kind = _model_file(file)
    show = {".dsz": _inspect_dsz, ".safetensors": _inspect_safetensors, ".onnx": _inspect_onnx,
            ".tflite": _inspect_tflite}  # fmt: skip
    for line in show[kind](file):
        click.echo(line)
    click.echo(f"file: {file} ({file.stat().st_size:,} B on disk)")


@click.command("export")
@click.argument("checkpoint", type=_PATH)
@click.option("--to", "target", type=click.Choice(["onnx", "tflite"]), default="onnx",
              show_default=True, help="Deployment format.")  # fmt: skip
@click.option(
    "--int8",
    type=click.Choice(["static", "dynamic"]),
    help="int8 weights: static (activations too, calibrated on --data) or dynamic.",
)
@click.option("--fp16", is_flag=True, help="fp16 weights.")
@click.option("-o", "--out", type=_PATH, help="Output file (default: beside CHECKPOINT).")
@data_options
@click.option("--calibration-samples", default=256, show_default=True,
              help="Training samples that calibrate static int8.")  # fmt: skip
@click.option(
    "--verify/--no-verify",
    default=True,
    help="Score the written file in its runtime against PyTorch on --data.",
)
def export_command(checkpoint: Path, target: str, int8: str | None, fp16: bool,
                   out: Path | None, data_name: str, data_root: Path | None,
                   calibration_samples: int, verify: bool) -> None:  # fmt: skip
    """Write CHECKPOINT (.safetensors with its .json, or .dsz) as ONNX or TFLite.

    The file is written atomically; with --verify (the default) its accuracy in its runtime is
    printed beside PyTorch's on --data's test set, with the predictions that changed.
    """
    import torch

    from deepshrink.export import export

    kind = _model_file(checkpoint)
    if kind not in (".safetensors", ".dsz"):
        raise ConfigError(f"{checkpoint} is already a {kind} file; export reads a PyTorch "
                          "model: a .safetensors checkpoint (with its .json) or a .dsz "
                          "container")  # fmt: skip
    if int8 and fp16:
        raise ConfigError("choose one of --int8 and --fp16")
    if calibration_samples < 1:
        raise ConfigError(f"--calibration-samples must be at least 1, got {calibration_samples}")
    mode = f"int8-{int8}" if int8 else "fp16" if fp16 else "fp32"
    path = out or checkpoint.with_name(f"{checkpoint.stem}.{mode}.{target}")
    _check_writable(path)
    net, fields = _load_pytorch(checkpoint, kind)
    name = (fields.get("arch") or {}).get("name", checkpoint.stem)
    bundle = _load_data(data_name, data_root) if verify or int8 == "static" else None
    calibration = None
    if int8 == "static" and bundle is not None:
        _check_fits(net, name, bundle)
        train = bundle.train.without_transform()
        calibration = train.subset(torch.arange(min(calibration_samples, len(train))))
    export(net, path, int8=int8 or False, fp16=fp16, calibration=calibration)
    click.echo(f"wrote {path} ({path.stat().st_size:,} B, {mode} {target})")
    if verify and bundle is not None:
        _check_fits(net, name, bundle)
        click.echo(_verify_lines(net, path, bundle))


def _check_writable(path: Path) -> None:
    """Refuse, before any work, an output whose folder cannot be made or written."""
    import os

    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror} ({path.parent})") from None
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"cannot write {path}: {path.parent} is not writable")


def _verify_lines(net: Any, path: Path, bundle: Any) -> str:
    """PyTorch's accuracy, the file's in its runtime, and how many predictions changed."""
    from deepshrink.eval import _units
    from deepshrink.eval.agreement import (
        changed_predictions,
        model_forward,
        predicted_classes,
        scored_labels,
    )
    from deepshrink.export.files import file_forward, runtime_name

    forward, runtime = file_forward(path), runtime_name(path)
    before = predicted_classes(model_forward(net), bundle.test)
    after = predicted_classes(forward, bundle.test)
    labels = scored_labels(bundle.test)
    rows = [
        ("PyTorch", _units.percent(float((before == labels).float().mean()))),
        (runtime, _units.percent(float((after == labels).float().mean()))),
        ("predictions changed", f"{changed_predictions(before, after):,} of {len(labels):,}"),
    ]
    return _units.table(("top-1 on the test set", "value"), rows)
