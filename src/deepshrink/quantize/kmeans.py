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
from deepshrink.graph.structure import STRUCTURE_ATTRIBUTE
from deepshrink.prune.masking import MASK_KIND, enforce_masks_, mask_of, remove_mask_
from deepshrink.prune.targets import Patterns, layer_values, select
from deepshrink.quantize.config import KMeansQuantization, kind_of
from deepshrink.quantize.shared import empty_codebook, is_shareable, share_, unshare_

__all__ = ["KMEANS_KIND", "finalize_kmeans_", "quantize_kmeans_", "shareable_layers"]

logger = logging.getLogger(__name__)

#: Kind of the structure record written when layers are shared.
KMEANS_KIND = "quantize.kmeans"
_METHOD = "k-means quantization"


def shareable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Named ``Linear``/convolution layers with a weight (or already shared), in model order."""
    return {name: module for name, module in model.named_modules() if is_shareable(module)}


@contextlib.contextmanager
def _worded() -> Iterator[None]:
    """Layer-selection errors come from the pruning helpers; say "quantize" in them."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("can prune", "can quantize")) from None


def layer_bits(layers: dict[str, nn.Module], config: KMeansQuantization) -> dict[str, int]:
    """Each layer's width: by its kind, then ``config.overrides`` (the last matching glob wins)."""
    with _worded():
        overridden = layer_values(list(layers), 0, config.overrides, _METHOD)
    bits = {name: int(overridden[name]) or config.bits_for(kind_of(layer)) or 0
            for name, layer in layers.items()}  # fmt: skip
    missing = [name for name, value in bits.items() if not value]
    if missing:
        kinds = sorted({str(kind_of(layers[name])) for name in missing})
        raise ConfigError(
            f"bits={config.bits!r} gives no width for {', '.join(kinds)} layers "
            f"({', '.join(missing)}); add {kinds[0]!r} to bits, or leave them out with exclude="
        )
    return bits


def _adopt_prune_mask(model: nn.Module, name: str, layer: nn.Module) -> None:
    """Drop a pruning mask (its zeros are in the weight) and its record; ours replaces it."""
    if mask_of(layer, "weight") is None:
        return
    remove_mask_(layer, "weight")
    qualified = f"{name}.weight" if name else "weight"
    entries = []
    for entry in structure_of(model):
        if entry["kind"] == MASK_KIND and qualified in entry.get("parameters", []):
            entry = {**entry, "parameters": [p for p in entry["parameters"] if p != qualified]}
            if not entry["parameters"]:
                continue
        entries.append(entry)
    setattr(model, STRUCTURE_ATTRIBUTE, entries)


def quantize_kmeans_(
    model: nn.Module,
    config: KMeansQuantization,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
) -> nn.Module:
    """Share the weights of the selected layers as ``config`` says (``quantize_`` calls this)."""
    with _worded():
        layers = select(shareable_layers(model), include, exclude, method=_METHOD)
    bits = layer_bits(layers, config)
    enforce_masks_(model)
    generator = torch.Generator().manual_seed(config.seed)
    for name, layer in layers.items():
        _adopt_prune_mask(model, name, layer)
        shared = cluster_weight(
            layer.weight.detach(), 2 ** bits[name], init=config.init,
            max_iterations=config.max_iterations, generator=generator,
        )  # fmt: skip
        share_(layer, shared)
    record(model, KMEANS_KIND, layers={name: 2 ** bits[name] for name in layers})
    logger.info(
        "k-means weight sharing (%s init): %s", config.init,
        ", ".join(f"{name} {value} bits" for name, value in bits.items()),
    )  # fmt: skip
    return model


def finalize_kmeans_(model: nn.Module) -> nn.Module:
    """Write the shared values into plain ``weight`` parameters; drop codebooks and records.

    Every non-zero of a finalized weight is one of its layer's centroids; zeros are +0.0.
    """
    for module in model.modules():
        unshare_(module)
    forget(model, KMEANS_KIND)
    return model


@register_rebuilder(KMEANS_KIND)
def _rebuild_shared(model: nn.Module, entry: dict[str, Any]) -> None:
    """Make the layers named shared, with placeholder codebooks the state dict then fills."""
    layers = entry.get("layers")
    if not isinstance(layers, dict):
        raise FormatError(f"{KMEANS_KIND}: entry has no 'layers' mapping: {entry!r}")
    for name, clusters in layers.items():
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            raise FormatError(f"{KMEANS_KIND}: the model has no module {name!r}") from None
        if not isinstance(clusters, int) or not 1 <= clusters <= 2**16:
            raise FormatError(f"{KMEANS_KIND}: {name}: bad number of clusters {clusters!r}")
        if not is_shareable(layer):
            raise FormatError(f"{KMEANS_KIND}: {name} is a {type(layer).__name__}, not shareable")
        if mask_of(layer, "weight") is not None:
            remove_mask_(layer, "weight")
        share_(layer, empty_codebook(layer, clusters))
