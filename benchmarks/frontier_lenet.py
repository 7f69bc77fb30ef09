"""Past Deep Compression on LeNet-300-100 and LeNet-5: error vs compression of delivered files.

Every point is a ``.dsz`` file measured the same way: loaded back with ``ds.load``, its top-1
error on the 10,000 MNIST test images, and the fp32 bytes of all parameters (1,066,440 B for
LeNet-300-100, 1,724,320 B for LeNet-5) divided by the file's size on disk. Each file given is
also re-encoded with its float tensors (codebooks, biases) at float16
(``EncodeConfig(floats="float16")``), loaded back and measured again, so the plot shows what
half-width side information buys on its own. Deep Compression's points come from
``results/deep_compression.json``; the papers' points are constants.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/frontier_lenet.py \\
      --file lenet300 "iterative 96 %, 4-bit k-means" runs/a/lenet300.dsz ...
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import RESULTS, write_result

import deepshrink as ds
from deepshrink.encode import EncodeConfig

DENSE_BYTES = {"lenet300": 1_066_440, "lenet5": 1_724_320}
#: (method, compression, error) as published
PAPERS = {
    "lenet300": [("Deep Compression (Han et al. 2016)", 40, 0.0158),
                 ("Soft weight-sharing (Ullrich et al. 2017)", 64, 0.0194)],
    "lenet5": [("Deep Compression (Han et al. 2016)", 39, 0.0074),
               ("Soft weight-sharing (Ullrich et al. 2017)", 162, 0.0097)],
}  # fmt: skip
#: the goal: at least this compression at most this error
GOALS = {"lenet300": (64, 0.0164), "lenet5": (162, 0.0080)}
PLOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "frontier_lenet.png"


def measure(path: Path, model_name: str, test: Any) -> dict[str, Any]:
    """Error of the model loaded from ``path`` and its compression against dense fp32."""
    loaded = ds.load(path).eval()
    result = ds.train.evaluate(loaded, test)
    size = path.stat().st_size
    return {
        "file_bytes": size,
        "compression": DENSE_BYTES[model_name] / size,
        "error": 1 - result.top1,
        "nonzero": sum(int(torch.count_nonzero(p)) for p in loaded.parameters()),
        "table": ds.size_table(path).to_markdown(),
        "entropy_coder_headroom": coder_headroom(path),
    }


def coder_headroom(path: Path) -> dict[str, int]:
    """Bytes an ideal entropy coder (no table) could save on the file's coded streams, and the
    symbols they hold: what an rANS or arithmetic coder could buy at most."""
    from deepshrink.encode.container import encode_all

    container = ds.encode.read(path)
    items = encode_all(container.tensors, EncodeConfig(**container.header["encoding"]))
    stats = [item.stats[k] for item in items for k in ("values", "gaps") if k in item.stats]
    saved = sum(s["symbols"] * (s["coded_bits"] - s["entropy"]) for s in stats) / 8
    return {"bytes": round(saved), "symbols": sum(int(s["symbols"]) for s in stats)}


def points(model: str, label: str, path: Path, test: Any, folder: Path) -> list[dict[str, Any]]:
    """The file as given, and re-encoded with float16 side information."""
    given = {"model": model, "label": label, "file": str(path), **measure(path, model, test)}
    half = folder / f"{model}-{len(label)}-{path.stem}.dsz"
    ds.save(ds.load(path), half, EncodeConfig(index_bits="auto", floats="float16"))
    narrow = {"model": model, "label": f"{label} + fp16 side info", "file": None,
              **measure(half, model, test)}  # fmt: skip
    for row in (given, narrow):
        print(f"{model} {row['label']}: {row['file_bytes']:,} B, {row['compression']:.1f}×, "
              f"error {row['error']:.2%}", flush=True)  # fmt: skip
    return [given, narrow]


def deep_compression_points() -> list[dict[str, Any]]:
    path = RESULTS / "deep_compression.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text())["rows"]
    return [{"model": r["model"], "label": "Deep Compression (this repo)", "file": None,
             "file_bytes": r["file_bytes"], "compression": r["compression"],
             "error": r["error"]} for r in rows if r.get("kmeans")]  # fmt: skip


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 7.2))
    for axis, model in zip(axes, ("lenet300", "lenet5"), strict=True):
        ratio, error = GOALS[model]
        axis.fill_between([ratio, 400], 0, 100 * error, color="tab:green", alpha=0.08,
                          label=f"goal: ≥ {ratio}×, ≤ {100 * error:.2f} % error")  # fmt: skip
        bases = [r["label"] for r in rows if r["model"] == model and "fp16" not in r["label"]]
        for row in (r for r in rows if r["model"] == model):
            base = row["label"].removesuffix(" + fp16 side info")
            color = f"C{bases.index(base)}"
            half = base != row["label"]
            marker = "s" if "Deep Compression" in base else "o"
            axis.scatter(row["compression"], 100 * row["error"], marker=marker, s=46, zorder=3,
                         facecolors="none" if half else color, edgecolors=color,
                         label=row["label"])  # fmt: skip
        for name, paper_ratio, paper_error in PAPERS[model]:
            axis.scatter(paper_ratio, 100 * paper_error, marker="*", s=140, color="black",
                         zorder=3)  # fmt: skip
            axis.annotate(name.split(" (")[0] + " (paper)", (paper_ratio, 100 * paper_error),
                          textcoords="offset points", xytext=(6, 4), fontsize=7)  # fmt: skip
        axis.set_xscale("log")
        axis.set_xlim(25, 320)
        axis.set_ylim(*((1.0, 2.1) if model == "lenet300" else (0.4, 1.1)))
        ticks = [30, 40, 64, 100, 162, 300]
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.minorticks_off()
        axis.set_xlabel("compression (dense fp32 bytes ÷ .dsz file bytes)")
        axis.set_ylabel("top-1 error on 10,000 MNIST test images (%)")
        axis.set_title({"lenet300": "LeNet-300-100", "lenet5": "LeNet-5"}[model])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
    figure.suptitle(
        "Delivered .dsz files, measured after loading (stars: published numbers; "
        "open markers: the same file with float16 side information)"
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", nargs=3, action="append", default=[],
                        metavar=("MODEL", "LABEL", "DSZ"), help="a .dsz file")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--replot", action="store_true", help="plot the saved JSON again")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads((RESULTS / "frontier_lenet.json").read_text())["rows"], args.plot)
        return
    torch.set_num_threads(args.threads)
    data = ds.data.load("mnist")
    began = time.perf_counter()
    rows = deep_compression_points()
    with tempfile.TemporaryDirectory() as folder:
        for model, label, path in args.file:
            rows += points(model, label, Path(path), data.test, Path(folder))
    plot(rows, args.plot)
    out = write_result("frontier_lenet", {
        "rows": rows, "dense_bytes": DENSE_BYTES, "papers": PAPERS, "goals": GOALS,
        "seconds": round(time.perf_counter() - began, 1), "plot": str(args.plot),
    })  # fmt: skip
    print(f"wrote {out} and {args.plot}")


if __name__ == "__main__":
    main()
