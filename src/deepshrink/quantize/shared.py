"""Layers whose weight is a codebook: ``weight = where(weight_mask, weight_centroids[idx], 0)``.

A shared layer is the same ``Linear``/convolution object with its class switched to a subclass
(``SharedLinear``, ``SharedConv2d``, ...) whose ``weight`` is a property computed from

* ``weight_centroids`` — a ``Parameter`` of ``2**bits`` shared values (what training updates),
* ``weight_indices`` — a ``uint8`` buffer, the shared value of each entry,
* ``weight_mask`` — a ``bool`` buffer, ``False`` where the weight is exactly zero (pruned).

The layer stays an instance of its class (``isinstance(layer, nn.Linear)``), its forward and its
hooks are unchanged, and ``layer.weight`` is always current. Autograd sums the gradients of the
entries of a cluster into its centroid (Han et al. 2016, eq. 3), so :func:`deepshrink.train.fit`
fine-tunes the centroids with any optimizer; pruned entries stay +0.0. :func:`unshare_` turns the
layer back into its plain class with the shared values as an ordinary ``weight`` parameter.

>>> import torch
>>> from deepshrink.functional.kmeans import cluster_weight
>>> layer = nn.Linear(4, 2)
>>> share_(layer, cluster_weight(layer.weight, 4))
>>> type(layer).__name__, isinstance(layer, nn.Linear), len(layer.weight.unique()) <= 4
('SharedLinear', True, True)
>>> sorted(name for name, _ in layer.named_parameters())
['bias', 'weight_centroids']
>>> type(unshare_(layer)).__name__, sorted(layer.state_dict())
('Linear', ['bias', 'weight'])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepshrink.functional.kmeans import SharedWeight, index_dtype, shared_values
from deepshrink.prune.targets import PRUNABLE_TYPES

__all__ = [
    "SHAREABLE",
    "SHARED_TYPES",
    "CENTROIDS",
    "INDICES",
    "MASK",
    "SharedWeightMixin",
    "is_shareable",
    "is_shared",
    "share_",
    "unshare_",
]

CENTROIDS, INDICES, MASK = "weight_centroids", "weight_indices", "weight_mask"


class SharedWeightMixin:
    """Computes ``weight`` from the layer's centroids, indices and mask on every access."""

    _parameters: dict[str, nn.Parameter | None]
    _buffers: dict[str, Tensor | None]

    @property
    def weight(self) -> Tensor:
        centroids = self._parameters[CENTROIDS]
        indices, mask = self._buffers[INDICES], self._buffers[MASK]
        assert centroids is not None and indices is not None and mask is not None
        return shared_values(centroids, indices, mask)

    @property
    def clusters(self) -> int:
        """Number of shared values (``2**bits``)."""
        centroids = self._parameters[CENTROIDS]
        return 0 if centroids is None else centroids.numel()

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        return f"{base}, clusters={self.clusters}"


class SharedLinear(SharedWeightMixin, nn.Linear):
    """A ``Linear`` whose weight takes shared values."""


class SharedConv1d(SharedWeightMixin, nn.Conv1d):
    """A ``Conv1d`` whose weight takes shared values."""


class SharedConv2d(SharedWeightMixin, nn.Conv2d):
    """A ``Conv2d`` whose weight takes shared values."""


class SharedConv3d(SharedWeightMixin, nn.Conv3d):
    """A ``Conv3d`` whose weight takes shared values."""


class SharedConvTranspose1d(SharedWeightMixin, nn.ConvTranspose1d):
    """A ``ConvTranspose1d`` whose weight takes shared values."""


class SharedConvTranspose2d(SharedWeightMixin, nn.ConvTranspose2d):
    """A ``ConvTranspose2d`` whose weight takes shared values."""


class SharedConvTranspose3d(SharedWeightMixin, nn.ConvTranspose3d):
    """A ``ConvTranspose3d`` whose weight takes shared values."""


#: The layer types whose weight can be shared (their subclasses too): those pruning masks.
SHAREABLE: tuple[type[nn.Module], ...] = PRUNABLE_TYPES
#: plain layer class → its shared subclass (subclasses of ``SHAREABLE`` are added when met)
SHARED_TYPES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: SharedLinear,
    nn.Conv1d: SharedConv1d,
    nn.Conv2d: SharedConv2d,
    nn.Conv3d: SharedConv3d,
    nn.ConvTranspose1d: SharedConvTranspose1d,
    nn.ConvTranspose2d: SharedConvTranspose2d,
    nn.ConvTranspose3d: SharedConvTranspose3d,
}
_PLAIN = {shared: plain for plain, shared in SHARED_TYPES.items()}


def is_shared(layer: nn.Module) -> bool:
    """Whether ``layer``'s weight is a codebook (a ``Shared*`` layer)."""
    return isinstance(layer, SharedWeightMixin)


def is_shareable(layer: nn.Module) -> bool:
    """Whether :func:`share_` can share ``layer``'s weight (or already has)."""
    return is_shared(layer) or (
        isinstance(layer, SHAREABLE) and layer._parameters.get("weight") is not None
    )


def _shared_class(plain: type[nn.Module]) -> type[nn.Module]:
    """The shared subclass of ``plain``, made on first use for subclasses of ``SHAREABLE``."""
    if plain not in SHARED_TYPES:
        name = f"Shared{plain.__name__}"
        doc = f"A ``{plain.__name__}`` whose weight takes shared values."
        SHARED_TYPES[plain] = type(name, (SharedWeightMixin, plain), {"__doc__": doc})
        _PLAIN[SHARED_TYPES[plain]] = plain
    return SHARED_TYPES[plain]


def _replace_parameter(layer: nn.Module, old: str, new: str, value: nn.Parameter) -> None:
    """Put ``value`` under ``new`` where ``old`` was, keeping the parameters' order."""
    items = [
        (new, value) if name == old else (name, parameter)
        for name, parameter in layer._parameters.items()
    ]
    layer._parameters.clear()
    layer._parameters.update(items)


def share_(layer: nn.Module, shared: SharedWeight) -> None:
    """Make ``layer``'s weight ``shared`` (already shared layers get the new codebook)."""
    if not is_shareable(layer):
        raise TypeError(f"{type(layer).__name__} has no weight parameter that can be shared")
    shared_class = _shared_class(_PLAIN.get(type(layer), type(layer)))
    old = CENTROIDS if is_shared(layer) else "weight"
    reference = layer._parameters[old]
    assert reference is not None
    shape = layer.weight.shape
    if shared.indices.shape != shape or shared.mask.shape != shape:
        raise ValueError(
            f"codebook indices of shape {tuple(shared.indices.shape)} do not fit the weight "
            f"of shape {tuple(shape)}"
        )
    centroids = nn.Parameter(
        shared.centroids.detach().to(reference.device, reference.dtype).clone(),
        requires_grad=reference.requires_grad,
    )
    _replace_parameter(layer, old, CENTROIDS, centroids)
    layer._buffers[INDICES] = shared.indices.to(reference.device).clone()
    layer._buffers[MASK] = shared.mask.to(reference.device, torch.bool).clone()
    layer.__class__ = shared_class


def empty_codebook(layer: nn.Module, clusters: int) -> SharedWeight:
    """A placeholder codebook of ``clusters`` values for ``layer`` (a state dict fills it)."""
    weight = layer.weight.detach()
    return SharedWeight(
        torch.zeros(clusters, dtype=weight.dtype),
        torch.zeros(weight.shape, dtype=index_dtype(clusters)),
        torch.ones(weight.shape, dtype=torch.bool),
    )


def unshare_(layer: nn.Module) -> nn.Module:
    """Turn a shared layer back into its plain class, its weight a parameter of shared values."""
    if not is_shared(layer):
        return layer
    centroids = layer._parameters[CENTROIDS]
    assert centroids is not None
    with torch.no_grad():
        weight = nn.Parameter(layer.weight.clone(), requires_grad=centroids.requires_grad)
    layer.__class__ = _PLAIN[type(layer)]
    _replace_parameter(layer, CENTROIDS, "weight", weight)
    del layer._buffers[INDICES]
    del layer._buffers[MASK]
    return layer
