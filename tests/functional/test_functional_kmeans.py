"""1-D k-means against scikit-learn, brute force and hand-computed results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepshrink.errors import UnknownNameError
from deepshrink.functional.kmeans import (
    assign,
    cluster_weight,
    initial_centroids,
    kmeans_1d,
    shared_values,
)


def test_hand_computed_two_clusters() -> None:
    values = torch.tensor([1.0, 2.0, 3.0, 10.0, 11.0, 15.0], dtype=torch.float64)
    result = kmeans_1d(values, 2)  # linear init: 1 and 15, boundary 8
    assert result.centroids.tolist() == [2.0, 12.0]
    assert result.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert result.inertia == pytest.approx(1 + 0 + 1 + 4 + 1 + 9)


@pytest.mark.parametrize(
    ("init", "pruned"), [("linear", False), ("density", False), ("random", False), ("linear", True)]
)
def test_matches_scikit_learn_lloyd_from_the_same_start(init: str, pruned: bool) -> None:
    from sklearn.cluster import KMeans

    generator = torch.Generator().manual_seed(3)
    values = torch.cat([torch.randn(600, generator=generator), 3 + torch.rand(200)]).double()
    if pruned:  # a gap around zero: linear-init centroids there go empty and are relocated
        values = values[values.abs() > 1]
    start = initial_centroids(values, 8, init, torch.Generator().manual_seed(0))
    ours = kmeans_1d(values, 8, init=start)
    theirs = KMeans(8, init=start.numpy()[:, None], n_init=1, algorithm="lloyd", tol=0.0,
                    max_iter=300).fit(values.numpy()[:, None])  # fmt: skip
    order = np.argsort(theirs.cluster_centers_[:, 0])
    assert np.allclose(ours.centroids.numpy(), theirs.cluster_centers_[order, 0], atol=1e-9)
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-9)
    assert np.array_equal(ours.labels.numpy(), np.argsort(order)[theirs.labels_])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=60),
    st.integers(1, 9),
    st.sampled_from(["linear", "density", "random"]),
)
def test_result_is_a_lloyd_fixed_point(values: list[float], clusters: int, init: str) -> None:
    x = torch.tensor(values, dtype=torch.float64)
    result = kmeans_1d(x, clusters, init=init, generator=torch.Generator().manual_seed(1))
    c = result.centroids
    assert torch.all(c[1:] >= c[:-1])
    distance = (x[:, None] - c[None, :]).abs()  # every value sits at its nearest centroid
    assert torch.allclose(distance[torch.arange(len(x)), result.labels], distance.min(1).values)
    for k in result.labels.unique():  # every used centroid is the mean of its members
        assert c[k].item() == pytest.approx(x[result.labels == k].mean().item(), abs=1e-9)


def test_initialisations() -> None:
    values = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0])
    assert initial_centroids(values, 3, "linear").tolist() == [0.0, 5.0, 10.0]
    density = initial_centroids(values, 3, "density")
    assert np.allclose(density.numpy(), np.quantile(values.numpy(), [0, 0.5, 1]))
    first = initial_centroids(values, 3, "random", torch.Generator().manual_seed(0))
    again = initial_centroids(values, 3, "random", torch.Generator().manual_seed(0))
    assert torch.equal(first, again) and set(first.tolist()) <= set(values.tolist())
    assert len(set(first.tolist())) == 3  # a sample without repeats
    with pytest.raises(UnknownNameError, match="did you mean 'linear'"):
        initial_centroids(values, 3, "linaer")


def test_fewer_values_than_clusters_and_empty_input() -> None:
    small = kmeans_1d(torch.tensor([1.0, 5.0]), 4, init="random")
    assert set(small.centroids.tolist()) == {1.0, 5.0} and small.inertia == 0.0
    empty = kmeans_1d(torch.zeros(0), 4)
    assert empty.centroids.shape == (4,) and empty.labels.numel() == 0
    pruned_away = cluster_weight(torch.zeros(3, 2), 4)
    assert not pruned_away.mask.any() and not pruned_away.indices.any()


def test_assign_breaks_ties_towards_the_lower_centroid() -> None:
    assert assign(torch.tensor([0.5, 0.50001]), torch.tensor([0.0, 1.0])).tolist() == [0, 1]


def test_cluster_weight_leaves_zeros_out() -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(20, 30, generator=generator)
    weight[weight.abs() < 0.8] = 0
    shared = cluster_weight(weight, 8)
    rebuilt = shared_values(shared.centroids, shared.indices, shared.mask)
    assert torch.equal(rebuilt == 0, weight == 0)
    assert len(rebuilt[rebuilt != 0].unique()) <= 8
    alone = kmeans_1d(weight[weight != 0], 8)  # the zeros do not move any centroid
    assert torch.allclose(shared.centroids, alone.centroids)
    assert shared.indices.dtype == torch.uint8


def test_shared_values_gradient_is_the_sum_over_each_cluster() -> None:
    centroids = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    indices = torch.tensor([[0, 1, 2], [2, 2, 0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    upstream = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    (shared_values(centroids, indices, mask) * upstream).sum().backward()
    assert centroids.grad is not None
    assert centroids.grad.tolist() == [1.0 + 6.0, 2.0, 4.0 + 5.0]  # the masked 3.0 is not in it


def test_empty_clusters_move_onto_the_data() -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4000, generator=generator)
    values = weight[weight.abs() > 1.0]  # pruned: a gap around zero holds linear-init centroids
    start = initial_centroids(values, 16, "linear")
    assert ((start > -1) & (start < 1)).sum() >= 4
    result = kmeans_1d(values, 16)
    assert len(result.labels.unique()) == 16  # every shared value is used
    assert result.inertia < kmeans_1d(values, 16, max_iterations=1).inertia
