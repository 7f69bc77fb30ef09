"""Speed of 1-D k-means weight sharing: deepshrink's sorted/searchsorted Lloyd vs scikit-learn.

A 4M-weight layer (2048 × 2048, Gaussian, 90 % pruned to zero or dense) is clustered into 32
shared values (5 bits) with the linear initialisation. Both run Lloyd's algorithm from the same
starting centroids to convergence on one thread; the time is the median of ``--repeats`` runs
(scikit-learn: ``--sklearn-repeats``, it is much slower), measured in the same process.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/kmeans_speed.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _common import write_result

from deepshrink.functional.kmeans import cluster_weight, initial_centroids, kmeans_1d


def median_seconds(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def case(weight: torch.Tensor, clusters: int, args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.cluster import KMeans

    values = weight[weight != 0]
    start = initial_centroids(values, clusters, "linear")
    ours, result = median_seconds(lambda: kmeans_1d(values, clusters, init="linear"), args.repeats)
    whole, _ = median_seconds(lambda: cluster_weight(weight, clusters), args.repeats)
    flat = values.numpy()
    sort, _ = median_seconds(lambda: np.sort(flat), args.repeats)
    column = values.double().numpy()[:, None]
    init = start.double().numpy()[:, None]

    def sklearn_fit() -> KMeans:
        return KMeans(clusters, init=init, n_init=1, algorithm="lloyd", tol=0.0,
                      max_iter=300).fit(column)  # fmt: skip

    theirs, fitted = median_seconds(sklearn_fit, args.sklearn_repeats)
    reference = np.sort(fitted.cluster_centers_[:, 0])
    return {
        "nonzero_weights": int(values.numel()),
        "weights": int(weight.numel()),
        "clusters": clusters,
        "deepshrink_kmeans_1d_s": ours,
        "deepshrink_cluster_weight_s": whole,
        "numpy_sort_s": sort,
        "deepshrink_iterations": result.iterations,
        "deepshrink_inertia": result.inertia,
        "sklearn_s": theirs,
        "sklearn_iterations": int(fitted.n_iter_),
        "sklearn_inertia": float(fitted.inertia_),
        "max_centroid_difference": float(
            np.abs(result.centroids.double().numpy() - reference).max()
        ),
        "speedup": theirs / ours,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--clusters", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sklearn-repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits

    generator = torch.Generator().manual_seed(0)
    dense = torch.randn(args.side, args.side, generator=generator) * 0.05
    pruned = dense.masked_fill(dense.abs() < dense.abs().quantile(0.9), 0.0)
    rows = []
    with threadpool_limits(limits=1):
        for label, weight in (("dense", dense), ("90% pruned", pruned)):
            row = {"layer": label, **case(weight, args.clusters, args)}
            rows.append(row)
            print(
                f"{label}: {row['nonzero_weights']:,} values, {args.clusters} clusters: "
                f"deepshrink {row['deepshrink_kmeans_1d_s']:.3f}s "
                f"({row['deepshrink_iterations']} it; one numpy sort {row['numpy_sort_s']:.3f}s), "
                f"whole layer "
                f"{row['deepshrink_cluster_weight_s']:.3f}s; scikit-learn {row['sklearn_s']:.2f}s "
                f"({row['sklearn_iterations']} it); {row['speedup']:.0f}× faster, "
                f"centroids differ by ≤ {row['max_centroid_difference']:.1e}, inertia "
                f"{row['deepshrink_inertia'] / row['sklearn_inertia']:.4f}× scikit-learn's",
                flush=True,
            )
    settings = {"repeats": args.repeats, "sklearn_repeats": args.sklearn_repeats}
    path = write_result("kmeans_speed", {"rows": rows, **settings, "load": os.getloadavg()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
