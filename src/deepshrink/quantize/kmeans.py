"""k-means weight sharing (Deep Compression, step 2): cluster each layer, then train centroids.

Each selected ``Linear``/convolution weight is clustered by 1-D k-means over its non-zero entries
(:func:`deepshrink.functional.kmeans.cluster_weight`) and becomes a shared layer
(:mod:`deepshrink.quantize.shared`): ``2**bits`` trainable centroids, a ``uint8`` index per entry
and a mask of the zeros. A pruning mask already on the layer is taken over (the zeros it made stay
zero). Fine-tune with :func:`deepshrink.train.fit` as usual; :func:`finalize_kmeans_` writes the
shared values into plain weights. Each quantization is recorded (``"quantize.kmeans"``) so that
:func:`deepshrink.train.load_checkpoint` rebuilds shared layers on a fresh model.

>>> import torch
>>> from torch import nn
>>> from deepshrink.quantize import KMeansQuantization, quantize_
>>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
>>> _ = quantize_(model, KMeansQuantization(bits=2), exclude="2")
>>> len(model[0].weight.unique()), type(model[2]).__name__
(4, 'Linear')
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from deepshrink.errors import ConfigError, FormatError
from deepshrink.functional.kmeans import cluster_weight
from deepshrink.graph import forget, record, register_rebuilder, structure_of
from deepshrink.graph.coverage import measure_coverage, report_coverage
from deepshrink.graph.layers import Slot, unknown_reasons, weight_slots
from deepshrink.graph.structure import STRUCTURE_ATTRIBUTE
from deepshrink.prune.masking import MASK_KIND, enforce_masks_, mask_of, remove_mask_
from deepshrink.prune.targets import Patterns, layer_values, select
from deepshrink.quantize.config import KMeansQuantization
from deepshrink.quantize.shared import empty_codebook, share_, unshare_model_

__all__ = ["KMEANS_KIND", "finalize_kmeans_", "quantize_kmeans_", "shareable_layers"]

logger = logging.getLogger(__name__)

#: Kind of the structure record written when layers are shared.
KMEANS_KIND = "quantize.kmeans"
_METHOD = "k-means quantization"


def shareable_layers(model: nn.Module) -> dict[str, Slot]:
    """Every weight matrix of ``model`` (:func:`deepshrink.graph.layers.weight_slots`) that can
    be shared, tied ones once, in model order."""
    return weight_slots(model)


@contextlib.contextmanager
def _worded() -> Iterator[None]:
    """Layer-selection errors come from the pruning helpers; say "quantize" in them."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("can prune", "can quantize")) from None


def layer_bits(layers: dict[str, Slot], config: KMeansQuantization) -> dict[str, int]:
    """Each slot's width: by its kind, then ``config.overrides`` (the last matching glob wins)."""
    with _worded():
        overridden = layer_values(list(layers), 0, config.overrides, _METHOD)
    bits = {name: int(overridden[name]) or config.bits_for(slot.kind) or 0
            for name, slot in layers.items()}  # fmt: skip
    missing = [name for name, value in bits.items() if not value]
    if missing:
        kinds = sorted({layers[name].kind for name in missing})
        raise ConfigError(
            f"bits={config.bits!r} gives no width for {', '.join(kinds)} layers "
            f"({', '.join(missing)}); add {kinds[0]!r} to bits, or leave them out with exclude="
        )
    return bits


def _adopt_prune_mask(model: nn.Module, slot: Slot) -> None:
    """Drop a pruning mask (its zeros are in the weight) and its record; ours replaces it."""
    if mask_of(slot.module, slot.parameter) is None:
        return
    remove_mask_(slot.module, slot.parameter)
    entries = []
    for entry in structure_of(model):
        if entry["kind"] == MASK_KIND and slot.qualified in entry.get("parameters", []):
            kept = [p for p in entry["parameters"] if p != slot.qualified]
            if not kept:
                continue
            entry = {**entry, "parameters": kept}
        entries.append(entry)
    setattr(model, STRUCTURE_ATTRIBUTE, entries)


def _tied(model: nn.Module, slot: Slot) -> list[tuple[nn.Module, str]]:
    return [(model.get_submodule(module), name) for module, name in slot.aliases]


def quantize_kmeans_(
    model: nn.Module,
    config: KMeansQuantization,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
) -> nn.Module:
    """Share the weights of the selected layers as ``config`` says (``quantize_`` calls this)."""
    with _worded():
        unknown = unknown_reasons(model)
        layers = select(
            shareable_layers(model), include, exclude, method=_METHOD, unavailable=unknown
        )
    bits = layer_bits(layers, config)
    enforce_masks_(model)
    generator = torch.Generator().manual_seed(config.seed)
    for name, width in bits.items():
        slot = layers[name]
        _adopt_prune_mask(model, slot)
        shared = cluster_weight(
            slot.tensor.detach(), 2**width, init=config.init,
            max_iterations=config.max_iterations, generator=generator,
        )  # fmt: skip
        share_(slot.module, shared, slot.parameter, tied=_tied(model, slot))
    if bits:
        record(model, KMEANS_KIND, layers={name: 2**width for name, width in bits.items()})
    narrowed = include is not None or exclude is not None
    report_coverage(model, measure_coverage(_METHOD, model, list(bits), narrowed=narrowed))
    logger.info(
        "k-means weight sharing (%s init): %s", config.init,
        ", ".join(f"{name} {value} bits" for name, value in bits.items()),
    )  # fmt: skip
    return model


def finalize_kmeans_(model: nn.Module) -> nn.Module:
    """Write the shared values into plain parameters; drop codebooks and records.

    Every non-zero of a finalized weight is one of its layer's centroids; zeros are +0.0. Tied
    weights stay one parameter.
    """
    unshare_model_(model)
    forget(model, KMEANS_KIND)
    return model


@register_rebuilder(KMEANS_KIND)
def _rebuild_shared(model: nn.Module, entry: dict[str, Any]) -> None:
    """Make the layers named shared, with placeholder codebooks the state dict then fills."""
    layers = entry.get("layers")
    if not isinstance(layers, dict):
        raise FormatError(f"{KMEANS_KIND}: entry has no 'layers' mapping: {entry!r}")
    slots = weight_slots(model)
    for name, clusters in layers.items():
        slot = slots.get(str(name))
        if slot is None:
            raise FormatError(f"{KMEANS_KIND}: the model has no weight {name!r} to share")
        if not isinstance(clusters, int) or not 1 <= clusters <= 2**16:
            raise FormatError(f"{KMEANS_KIND}: {name}: bad number of clusters {clusters!r}")
        if mask_of(slot.module, slot.parameter) is not None:
            remove_mask_(slot.module, slot.parameter)
        codebook = empty_codebook(slot.module, clusters, slot.parameter)
        share_(slot.module, codebook, slot.parameter, tied=_tied(model, slot))
