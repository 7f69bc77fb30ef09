"""1-D k-means for weight sharing (Han et al. 2016, "Deep Compression"), vectorised in torch.

In one dimension every cluster of a Lloyd iteration is a contiguous run of the *sorted* values:
the boundaries are the midpoints between neighbouring (sorted) centroids. So the values are
sorted once; each iteration then costs one :func:`torch.searchsorted` of the ``k - 1`` midpoints
and two lookups into a prefix sum (``O(k log n)``), not a pass over the ``n`` values. The loop
stops at an exact fixed point (no boundary moved), the same end point as Lloyd's algorithm in
scikit-learn with ``tol=0`` from the same initial centroids, including scikit-learn's rule for
clusters left empty: each takes one of the values farthest from their own centroid.

Written here rather than taken from scikit-learn because its general ``KMeans`` does a distance
pass over all values per iteration (``O(nk)``) and is many times slower on a 4M-weight layer; see
``benchmarks/kmeans_speed.py``.

Initialisations (:data:`INITS`): ``"linear"`` (evenly spaced between the minimum and maximum, the
best in Han et al.), ``"density"`` (evenly spaced on the cumulative distribution: quantiles) and
``"random"`` (Forgy: a random sample of the values, seeded by a ``torch.Generator``).

>>> values = torch.tensor([0.0, 0.1, 0.2, 1.0, 1.1, 1.2])
>>> result = kmeans_1d(values, 2)
>>> result.centroids.tolist(), result.labels.tolist()
([0.10000000149011612, 1.100000023841858], [0, 0, 0, 1, 1, 1])
>>> shared = cluster_weight(torch.tensor([[0.0, -1.0], [2.0, 2.1]]), 2)
>>> shared.indices.tolist(), shared.mask.tolist()
([[0, 0], [1, 1]], [[False, True], [True, True]])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from deepshrink._registry import Registry

__all__ = [
    "INITS",
    "KMeansResult",
    "SharedWeight",
    "assign",
    "cluster_weight",
    "index_dtype",
    "initial_centroids",
    "kmeans_1d",
    "shared_values",
]

#: ``init(sorted_values, clusters, generator) -> centroids`` (float64, ascending).
Init = Callable[[Tensor, int, torch.Generator | None], Tensor]
INITS: Registry[Init] = Registry("k-means initialisation")


@INITS.register("linear")
def _linear(sorted_values: Tensor, clusters: int, generator: torch.Generator | None) -> Tensor:
    low, high = float(sorted_values[0]), float(sorted_values[-1])
    return torch.linspace(low, high, clusters, dtype=torch.float64)


@INITS.register("density")
def _density(sorted_values: Tensor, clusters: int, generator: torch.Generator | None) -> Tensor:
    """Quantiles at evenly spaced levels of the CDF (0 and 1 included), interpolated."""
    position = torch.linspace(0, sorted_values.numel() - 1, clusters, dtype=torch.float64)
    below = position.floor().long()
    above = position.ceil().long()
    weight = position - below
    return sorted_values[below] * (1 - weight) + sorted_values[above] * weight


@INITS.register("random")
def _random(sorted_values: Tensor, clusters: int, generator: torch.Generator | None) -> Tensor:
    """Forgy: ``clusters`` distinct positions drawn at random (repeats only when too few)."""
    count = sorted_values.numel()
    chosen = torch.randperm(count, generator=generator)[:clusters]
    if count < clusters:
        chosen = chosen[torch.arange(clusters) % count]
    return sorted_values[chosen].sort().values


@dataclass(frozen=True)
class KMeansResult:
    """Centroids (ascending), each value's cluster, the inertia and the iterations run."""

    centroids: Tensor
    labels: Tensor
    inertia: float
    iterations: int


def _working(values: Tensor) -> Tensor:
    """``values`` flattened, detached, as float32 or float64 (what sorting and searching use)."""
    flat = values.detach().reshape(-1)
    return flat if flat.dtype in (torch.float32, torch.float64) else flat.float()


def _sorted(flat: Tensor) -> Tensor:
    """Ascending copy of ``flat``: numpy's sort on a CPU (a few times faster than torch's)."""
    if flat.device.type == "cpu":
        return torch.from_numpy(np.sort(flat.numpy()))
    return flat.sort().values


def initial_centroids(
    values: Tensor, clusters: int, init: str = "linear", generator: torch.Generator | None = None
) -> Tensor:
    """The ``clusters`` starting centroids of ``values`` (any shape, non-empty), ascending.

    >>> initial_centroids(torch.tensor([3.0, 0.0, 1.0]), 3).tolist()
    [0.0, 1.5, 3.0]
    """
    sorted_values = _sorted(_working(values))
    return INITS.get(init)(sorted_values, clusters, generator).to(values.dtype)


def _midpoints(centroids: Tensor, dtype: torch.dtype) -> Tensor:
    """Cluster boundaries between ascending float64 ``centroids``, in the values' ``dtype``."""
    return ((centroids[1:] + centroids[:-1]) / 2).to(dtype)


def assign(values: Tensor, centroids: Tensor) -> Tensor:
    """Index of the nearest of the ascending ``centroids`` for each value (ties: the lower).

    >>> assign(torch.tensor([0.2, 0.5, 0.9]), torch.tensor([0.0, 1.0])).tolist()
    [0, 0, 1]
    """
    flat = _working(values)
    labels = torch.bucketize(flat, _midpoints(centroids.to(torch.float64), flat.dtype))
    return labels.reshape(values.shape)


def _lloyd(sorted_values: Tensor, centroids: Tensor, max_iterations: int) -> tuple[Tensor, int]:
    """Lloyd iterations on sorted values until no cluster boundary moves; float64 centroids."""
    count = sorted_values.numel()
    prefix = torch.cat([centroids.new_zeros(1), sorted_values.cumsum(0, dtype=torch.float64)])
    outer = torch.tensor([0, count])
    previous = None
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - the count is returned
        inner = torch.searchsorted(
            sorted_values, _midpoints(centroids, sorted_values.dtype), right=True
        )
        edges = torch.cat([outer[:1], inner, outer[1:]])
        if previous is not None and torch.equal(edges, previous):
            break
        sizes = edges[1:] - edges[:-1]
        sums = prefix[edges[1:]] - prefix[edges[:-1]]
        if bool((sizes == 0).any()):
            sums, sizes = _relocate_empty(sorted_values, edges, sizes, sums, centroids)
        centroids = torch.where(sizes > 0, sums / sizes.clamp(min=1), centroids).sort().values
        previous = edges
    return centroids, iterations


def _relocate_empty(
    sorted_values: Tensor, edges: Tensor, sizes: Tensor, sums: Tensor, centroids: Tensor
) -> tuple[Tensor, Tensor]:
    """Give each empty cluster one of the values farthest from their centroid (scikit-learn's rule).

    The ``m`` farthest values lie among the ``m`` lowest and ``m`` highest of each cluster's run,
    so only those are compared. Each chosen value leaves its cluster's sum and size and becomes
    an empty cluster's only member. Without this, linear initialisation would leave centroids in
    the gap that pruning makes around zero, never used.
    """
    empty = torch.nonzero(sizes == 0).flatten()
    offsets = torch.arange(empty.numel())
    starts, stops = edges[:-1, None], edges[1:, None]
    used = sizes > 0
    low = (starts + offsets).minimum(stops - 1)[used]
    high = (stops - 1 - offsets).maximum(starts)[used]
    positions = torch.cat([low.flatten(), high.flatten()]).unique()
    owners = torch.searchsorted(edges[1:], positions, right=True)
    values = sorted_values[positions].to(torch.float64)
    distance = (values - centroids[owners]).abs()
    chosen = distance.topk(min(empty.numel(), positions.numel())).indices
    sums, sizes = sums.clone(), sizes.clone()
    sums.index_add_(0, owners[chosen], -values[chosen])
    sizes.index_add_(0, owners[chosen], -torch.ones_like(owners[chosen]))
    targets = empty[: chosen.numel()]
    sums[targets] = values[chosen]
    sizes[targets] = 1
    return sums, sizes


def _fit(
    flat: Tensor,
    clusters: int,
    init: str | Tensor,
    max_iterations: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, int]:
    """Float64 centroids (ascending) of the non-empty working values ``flat``, and iterations."""
    if clusters < 1:
        raise ValueError(f"clusters must be ≥ 1, got {clusters}")
    sorted_values = _sorted(flat)
    if isinstance(init, Tensor):
        start = init.detach().reshape(-1).to(torch.float64).sort().values
    else:
        start = INITS.get(init)(sorted_values, clusters, generator).to(torch.float64)
    return _lloyd(sorted_values, start.to(flat.device), max_iterations)


def kmeans_1d(
    values: Tensor,
    clusters: int,
    *,
    init: str | Tensor = "linear",
    max_iterations: int = 300,
    generator: torch.Generator | None = None,
) -> KMeansResult:
    """Cluster the scalars in ``values`` (any shape) into ``clusters`` groups with Lloyd's method.

    ``init`` is a name in :data:`INITS` or a tensor of starting centroids. Sums are taken in
    float64; centroids come back in the dtype of ``values``, labels as int64 in their shape.

    >>> kmeans_1d(torch.tensor([1.0, 2.0, 10.0, 12.0]), 2, init="density").centroids.tolist()
    [1.5, 11.0]
    """
    flat = _working(values)
    if flat.numel() == 0:
        empty = torch.zeros(clusters, dtype=values.dtype, device=values.device)
        return KMeansResult(empty, torch.zeros_like(values, dtype=torch.long), 0.0, 0)
    centroids, iterations = _fit(flat, clusters, init, max_iterations, generator)
    labels = assign(flat, centroids)
    inertia = float(((flat.to(torch.float64) - centroids[labels]) ** 2).sum())
    return KMeansResult(
        centroids.to(values.dtype), labels.reshape(values.shape), inertia, iterations
    )


def index_dtype(clusters: int) -> torch.dtype:
    """The smallest integer dtype that holds cluster indices ``0 .. clusters - 1``."""
    return torch.uint8 if clusters <= 256 else torch.int32


@dataclass(frozen=True)
class SharedWeight:
    """A weight as a codebook: ``weight = where(mask, centroids[indices], 0)``."""

    centroids: Tensor
    indices: Tensor
    mask: Tensor


def cluster_weight(
    weight: Tensor,
    clusters: int,
    *,
    init: str = "linear",
    max_iterations: int = 300,
    generator: torch.Generator | None = None,
) -> SharedWeight:
    """k-means over the non-zero entries of ``weight``; zeros stay zero and are not clustered.

    Indices of zero entries are 0 (the mask says they are zero).
    """
    mask = weight.detach() != 0
    values = _working(weight)[mask.reshape(-1)]
    if values.numel() == 0:
        centroids = torch.zeros(clusters, dtype=torch.float64, device=weight.device)
    else:
        centroids, _ = _fit(values, clusters, init, max_iterations, generator)
    labels = assign(weight, centroids).masked_fill_(~mask, 0)
    return SharedWeight(centroids.to(weight.dtype), labels.to(index_dtype(clusters)), mask)


def shared_values(centroids: Tensor, indices: Tensor, mask: Tensor) -> Tensor:
    """``where(mask, centroids[indices], 0)``: differentiable in ``centroids``, zeros +0.0.

    The gradient of a centroid is the sum of the gradients of the entries that use it
    (Han et al. 2016, eq. 3): indexing's backward adds them up.

    >>> shared_values(torch.tensor([-1.0, 2.0]), torch.tensor([1, 0, 0]),
    ...               torch.tensor([True, True, False])).tolist()
    [2.0, -1.0, 0.0]
    """
    values = centroids[indices.long()]
    return torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
