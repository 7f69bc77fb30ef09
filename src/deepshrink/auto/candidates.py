"""Per-layer candidates (magnitude sparsity × k-means bits), each costed by measurement.

For every weight layer and every ``(sparsity, bits)`` pair the layer alone is pruned by
magnitude (:class:`~deepshrink.prune.MagnitudePruning`, per layer) and its surviving weights
shared by 1-D k-means (``2**bits`` centroids, linear init), the other layers staying as they
are. Each candidate gets two measured numbers:

* **bytes**: the layer's weight coded alone by the real ``.dsz`` encoder (its sections and their
  framing; the header and the other tensors are the allocation's fixed part);
* **loss**: the increase of the cross-entropy on held-out *training* samples (never the test set)
  when only this layer is compressed, clipped at 0, and the top-1 accuracy beside it.

>>> Option(0.9, 4, 1200, 0.01, 0.98).label
's0.9/b4'
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError

__all__ = ["Option", "layer_bytes", "option_weight", "scan", "weight_layer_names"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Option:
    """One layer setting: magnitude ``sparsity``, k-means ``bits``, and what it costs."""

    sparsity: float
    bits: int
    bytes: int
    loss: float
    accuracy: float

    @property
    def label(self) -> str:
        return f"s{self.sparsity:g}/b{self.bits}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def weight_layer_names(model: nn.Module, include: Any = None, exclude: Any = None) -> list[str]:
    """The ``Linear``/convolution layers to compress, in model order."""
    from deepshrink.prune.targets import select, weight_layers

    return list(select(weight_layers(model), include, exclude, method="auto compression"))


def option_weight(
    model: nn.Module, layer: str, sparsity: float, bits: int, *, seed: int = 0
) -> Tensor:
    """``layer``'s weight pruned to ``sparsity`` by magnitude, then k-means shared at ``bits``.

    ``model`` is not changed.
    """
    from deepshrink.functional.kmeans import cluster_weight, shared_values
    from deepshrink.prune import MagnitudePruning, prune_

    trial = copy.deepcopy(model.get_submodule(layer))
    if sparsity > 0:
        holder = nn.ModuleDict({"layer": trial})
        prune_(holder, MagnitudePruning(sparsity=sparsity), include=["layer"])
    weight = trial.weight.detach()
    shared = cluster_weight(
        weight, 2**bits, init="linear", generator=torch.Generator().manual_seed(seed)
    )
    return shared_values(shared.centroids, shared.indices.long(), shared.mask).to(weight.dtype)


def layer_bytes(name: str, tensor: Tensor, config: Any = None) -> int:
    """Bytes of ``tensor`` coded alone by the ``.dsz`` encoder (sections with their framing)."""
    from deepshrink.encode.config import EncodeConfig
    from deepshrink.encode.container import SECTION, encode_all

    coded = encode_all({name: tensor.detach().cpu()}, config or EncodeConfig())[0]
    return sum(len(payload) + SECTION.size for _, payload in coded.sections)


def _batches(dataset: Any, samples: int) -> list[tuple[Tensor, Tensor]]:
    from deepshrink.data.dataset import ArrayDataset

    if not isinstance(dataset, ArrayDataset):
        raise ConfigError(
            f"the held-out data must be an ArrayDataset (a deepshrink dataset), got "
            f"{type(dataset).__name__}; load it with deepshrink.data.load"
        )
    count = min(samples, len(dataset))
    x, y = dataset.without_transform().batch(torch.arange(count))
    return [(x[i : i + 500], y[i : i + 500]) for i in range(0, count, 500)]


@torch.no_grad()
def measure(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]]) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy of ``model`` on ``batches`` (eval mode)."""
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    for x, y in batches:
        logits = model(x)
        total += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        count += len(y)
    model.train(was_training)
    return total / count, correct / count


def scan(
    model: nn.Module,
    held_out: Any,
    layers: Sequence[str],
    sparsities: Sequence[float],
    bits: Sequence[int],
    *,
    samples: int = 2000,
    seed: int = 0,
) -> tuple[dict[str, list[Option]], tuple[float, float]]:
    """Every layer's options, measured; and the uncompressed ``(loss, accuracy)`` reference."""
    batches = _batches(held_out, samples)
    reference = measure(model, batches)
    logger.info(
        "auto scan: %d layers × %d sparsities × %d widths on %d held-out training samples "
        "(reference loss %.4f, accuracy %.2f%%)",
        len(layers), len(sparsities), len(bits), sum(len(y) for _, y in batches),
        reference[0], 100 * reference[1],
    )  # fmt: skip
    table: dict[str, list[Option]] = {}
    for index, layer in enumerate(layers, 1):
        began = time.perf_counter()
        table[layer] = _scan_layer(model, layer, batches, reference, sparsities, bits, seed)
        logger.info(
            "auto scan %d/%d %s: %d options in %.1f s", index, len(layers), layer,
            len(table[layer]), time.perf_counter() - began,
        )  # fmt: skip
    return table, reference


def _scan_layer(
    model: nn.Module,
    layer: str,
    batches: Sequence[tuple[Tensor, Tensor]],
    reference: tuple[float, float],
    sparsities: Sequence[float],
    bits: Sequence[int],
    seed: int,
) -> list[Option]:
    weight = model.get_submodule(layer).weight
    original = weight.detach().clone()
    options = []
    try:
        for sparsity in sorted(set(sparsities)):
            for width in sorted(set(bits)):
                with torch.no_grad():
                    weight.copy_(original)  # each option starts from the uncompressed weight
                trial = option_weight(model, layer, sparsity, width, seed=seed)
                with torch.no_grad():
                    weight.copy_(trial)
                loss, accuracy = measure(model, batches)
                size = layer_bytes(f"{layer}.weight", trial)
                options.append(
                    Option(sparsity, width, size, max(0.0, loss - reference[0]), accuracy)
                )
            logger.info(
                "auto scan %s sparsity %g: %s", layer, sparsity,
                ", ".join(f"{o.bits} bits {o.bytes} B loss +{o.loss:.4f}"
                          for o in options if o.sparsity == sparsity),
            )  # fmt: skip
    finally:
        with torch.no_grad():
            weight.copy_(original)
    return options
