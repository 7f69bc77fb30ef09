"""k-means weight sharing on modules: sharing, zeros, gradients, fit, checkpoints, finalize."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

import deepshrink as ds
from deepshrink.data.dataset import ArrayDataset
from deepshrink.functional.kmeans import kmeans_1d
from deepshrink.graph import structure_of
from deepshrink.prune import MagnitudePruning, prune_
from deepshrink.quantize import KMeansQuantization, finalize_, is_shared, quantize_

from .conftest import distinct_nonzeros, tiny_cnn


def test_each_layer_takes_at_most_two_to_the_bits_values(cnn: nn.Sequential) -> None:
    quantize_(cnn, KMeansQuantization(bits={"conv": 3, "linear": 2}, overrides={"5": 1}))
    assert [distinct_nonzeros(cnn[i].weight) for i in (0, 3, 5)] == [8, 4, 2]
    assert all(is_shared(cnn[i]) for i in (0, 3, 5))
    assert cnn[0].weight_indices.dtype == torch.uint8


def test_centroids_are_the_kmeans_of_the_layer(cnn: nn.Sequential) -> None:
    weight = cnn[3].weight.detach().clone()
    quantize_(cnn, KMeansQuantization(bits=4, init="density"), include="3")
    oracle = kmeans_1d(weight, 16, init="density")
    assert torch.allclose(cnn[3].weight_centroids, oracle.centroids)
    assert torch.equal(cnn[3].weight, oracle.centroids[oracle.labels])
    assert not is_shared(cnn[0]) and not is_shared(cnn[5])


def test_pruned_zeros_stay_exactly_zero_through_fit(cnn: nn.Sequential, images) -> None:
    prune_(cnn, MagnitudePruning(sparsity=0.7))
    zeros = {i: cnn[i].weight == 0 for i in (0, 3, 5)}
    quantize_(cnn, KMeansQuantization(bits=2))
    before = cnn[3].weight_centroids.detach().clone()
    ds.fit(cnn, images, epochs=2, batch_size=16, lr=0.1, progress=False)
    assert not torch.equal(before, cnn[3].weight_centroids)  # the centroids were trained
    for i, zero in zeros.items():
        assert torch.equal(cnn[i].weight == 0, zero)
        assert distinct_nonzeros(cnn[i].weight) <= 4
        assert "weight_mask" in dict(cnn[i].named_buffers())
    finalize_(cnn)
    for i, zero in zeros.items():
        weight = cnn[i].weight
        assert type(weight) is nn.Parameter and torch.equal(weight == 0, zero)
        assert not torch.signbit(weight[zero]).any()  # +0.0, not -0.0


def test_centroid_gradient_is_the_sum_of_its_weights_gradients(cnn: nn.Sequential) -> None:
    prune_(cnn, MagnitudePruning(sparsity=0.5))
    quantize_(cnn, KMeansQuantization(bits=3))
    plain = finalize_(copy.deepcopy(cnn))
    x = torch.rand(5, 1, 8, 8)
    cnn(x).square().sum().backward()
    plain(x).square().sum().backward()
    for i in (0, 3, 5):
        layer, grad = cnn[i], plain[i].weight.grad
        assert grad is not None and layer.weight_centroids.grad is not None
        mask, indices = layer.weight_mask, layer.weight_indices.long()
        oracle = torch.zeros(layer.clusters).index_add_(0, indices[mask], grad[mask])
        assert torch.allclose(layer.weight_centroids.grad, oracle, atol=1e-6)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = ds.zoo.create("lenet5")
    prune_(model, MagnitudePruning(sparsity=0.8))
    quantize_(model, KMeansQuantization(bits={"conv": 5, "linear": 3}, init="random"))
    with torch.no_grad():
        model.fc1.weight_centroids.add_(0.01)  # as after fine-tuning
    path = ds.save_checkpoint(model, tmp_path / "q")
    loaded, _ = ds.load_checkpoint(path)
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))
    assert type(loaded.conv1).__name__ == "SharedConv2d"
    assert [e["kind"] for e in structure_of(loaded)] == ["quantize.kmeans"]
    finalize_(loaded)
    path = ds.save_checkpoint(loaded, tmp_path / "final")
    again, _ = ds.load_checkpoint(path)
    assert torch.equal(again(x), model(x)) and structure_of(again) == []


def test_finalize_is_idempotent_and_keeps_outputs(cnn: nn.Sequential) -> None:
    quantize_(cnn, KMeansQuantization(bits=3))
    x = torch.rand(3, 1, 8, 8)
    expected = cnn(x)
    once = {k: v.clone() for k, v in finalize_(cnn).state_dict().items()}
    twice = finalize_(cnn).state_dict()
    assert once.keys() == twice.keys() and all(torch.equal(once[k], twice[k]) for k in once)
    assert list(once) == ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight", "5.bias"]
    assert torch.equal(cnn(x), expected) and structure_of(cnn) == []


def test_quantizing_again_replaces_the_codebook(cnn: nn.Sequential, tmp_path: Path) -> None:
    quantize_(cnn, KMeansQuantization(bits=4))
    quantize_(cnn, KMeansQuantization(bits=2), include="3")
    assert distinct_nonzeros(cnn[3].weight) <= 4 and cnn[3].clusters == 4
    fresh = tiny_cnn(seed=1)
    ds.save_checkpoint(cnn, tmp_path / "m")
    ds.load_checkpoint(tmp_path / "m", fresh)
    assert torch.equal(fresh(torch.ones(1, 1, 8, 8)), cnn(torch.ones(1, 1, 8, 8)))


def test_deepcopy_and_dtype_moves(cnn: nn.Sequential) -> None:
    quantize_(cnn, KMeansQuantization(bits=2))
    copied = copy.deepcopy(cnn).double()
    assert copied[3].weight.dtype == torch.float64
    assert torch.equal(copied[3].weight.float(), cnn[3].weight)


def test_eight_bits_stay_close_to_the_float_model(images: ArrayDataset) -> None:
    model = tiny_cnn()
    ds.fit(model, images, epochs=3, batch_size=16, lr=0.1, progress=False)
    x = torch.rand(8, 1, 8, 8)
    dense = model(x)
    quantize_(model, KMeansQuantization(bits=8))
    assert (model(x) - dense).abs().max() < 0.05 * dense.abs().max()  # 8 bits ≈ the float model


def test_subclasses_of_linear_are_shared_too() -> None:
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2)  # out_proj is a subclass of nn.Linear
    x = torch.rand(5, 1, 8)
    quantize_(attention, KMeansQuantization(bits=3))
    assert type(attention.out_proj).__name__ == "SharedNonDynamicallyQuantizableLinear"
    assert distinct_nonzeros(attention.out_proj.weight) <= 8
    shared_output = attention(x, x, x)[0]
    finalize_(attention)
    assert type(attention.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
    assert torch.equal(attention(x, x, x)[0], shared_output)


def test_replaying_a_kmeans_record_on_a_shared_layer_computes_no_weight(tmp_path) -> None:
    """A record replayed twice re-shares a shared layer from its stored tensors; gathering the
    codebook on the meta device (torch then imports sympy: seconds and ~75 MB) is not needed."""
    import json
    import subprocess
    import sys

    import deepshrink as ds

    model = ds.zoo.create("digits_mlp")
    ds.quantize_(model, ds.KMeansQuantization(bits=3))
    path = ds.save_checkpoint(model, tmp_path / "m")
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    record["structure"] = record["structure"] * 2
    sidecar.write_text(json.dumps(record))
    code = (
        "import sys, deepshrink as ds\n"
        f"ds.load_checkpoint({str(path)!r})\n"
        "print('sympy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)  # fmt: skip
    assert done.stdout.strip() == "False"
