"""Weights that are a codebook: ``w = where(w_mask, w_centroids[w_indices], 0)``, for any layer.

A shared weight ``name`` of a module is computed on every access from

* ``<name>_centroids`` — a ``Parameter`` of ``2**bits`` shared values (what training updates),
* ``<name>_indices`` — a ``uint8`` buffer, the shared value of each entry,
* ``<name>_mask`` — a ``bool`` buffer, ``False`` where the weight is exactly zero (pruned).

The module keeps its identity: its class is switched to a subclass (``SharedLinear``,
``SharedLSTM``, ``SharedConv1D`` ...) that computes the shared weights by name, so
``isinstance(layer, nn.Linear)`` holds, forward and hooks are unchanged, and any layer type of
:mod:`deepshrink.graph.layers` works — ``Linear``, convolutions, Hugging Face ``Conv1D``,
``Embedding``, the gate matrices of ``LSTM``/``GRU``/``RNN`` (their flat weight list is rebuilt on
each forward) and ``MultiheadAttention``'s packed projection. A weight that several modules hold
(tied: GPT-2's ``lm_head`` and ``wte``) is shared once: every holder gets the *same* centroid
parameter and index buffers, and :func:`unshare_model_` gives them one plain parameter again.

Autograd sums the gradients of a cluster's entries into its centroid (Han et al. 2016, eq. 3), so
:func:`deepshrink.train.fit` or any optimizer fine-tunes the centroids; pruned entries stay +0.0.

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

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.functional.kmeans import SharedWeight, index_dtype, shared_values
from deepshrink.graph.layers import adapter_of

__all__ = [
    "CENTROIDS",
    "INDICES",
    "MASK",
    "SharedWeightMixin",
    "empty_codebook",
    "is_shareable",
    "is_shared",
    "share_",
    "shared_names",
    "unshare_",
    "unshare_model_",
]

CENTROIDS, INDICES, MASK = "weight_centroids", "weight_indices", "weight_mask"
_SHARED = "_deepshrink_shared"


def _keys(name: str) -> tuple[str, str, str]:
    return f"{name}_centroids", f"{name}_indices", f"{name}_mask"


class SharedWeightMixin:
    """Computes each shared weight from its centroids, indices and mask on every access."""

    _parameters: dict[str, nn.Parameter | None]
    _buffers: dict[str, Tensor | None]

    def computed_parameters(self) -> tuple[str, ...]:
        """Names of the weights computed from a codebook."""
        return tuple(self.__dict__.get(_SHARED, ()))

    def __getattr__(self, name: str) -> Any:
        if name in self.__dict__.get(_SHARED, ()):
            centroids, indices, mask = _keys(name)
            return shared_values(
                self._parameters[centroids], self._buffers[indices], self._buffers[mask]
            )  # type: ignore[arg-type]
        return super().__getattr__(name)  # type: ignore[misc]

    @property
    def clusters(self) -> int:
        """Number of shared values of the first shared weight (``2**bits``)."""
        names = self.computed_parameters()
        centroids = self._parameters.get(_keys(names[0])[0]) if names else None
        return 0 if centroids is None else centroids.numel()

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        return f"{base}, clusters={self.clusters}"


class SharedRecurrentMixin(SharedWeightMixin):
    """For ``nn.RNNBase``: the flat weight list the kernels read is computed on every access and
    never stored (so the module deep-copies and pickles like any other)."""

    @property
    def _flat_weights(self) -> list[Tensor | None]:
        names = self._flat_weights_names  # type: ignore[attr-defined]
        return [getattr(self, n) if hasattr(self, n) else None for n in names]

    @_flat_weights.setter
    def _flat_weights(self, value: list[Tensor | None]) -> None:
        """Ignored: the list is always computed."""

    def _update_flat_weights(self) -> None:
        """Nothing to update: :attr:`_flat_weights` is computed."""


#: plain layer class → its shared subclass (made on first use)
SHARED_TYPES: dict[type[nn.Module], type[nn.Module]] = {}
_PLAIN: dict[type[nn.Module], type[nn.Module]] = {}


def _shared_class(plain: type[nn.Module]) -> type[nn.Module]:
    if plain not in SHARED_TYPES:
        mixin = SharedRecurrentMixin if issubclass(plain, nn.RNNBase) else SharedWeightMixin
        doc = f"A ``{plain.__name__}`` whose weights take shared values."
        shared = type(f"Shared{plain.__name__}", (mixin, plain), {"__doc__": doc})
        shared.__module__ = __name__
        SHARED_TYPES[plain], _PLAIN[shared] = shared, plain
    return SHARED_TYPES[plain]


for _plain in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d):
    globals()[f"Shared{_plain.__name__}"] = _shared_class(_plain)
del _plain


def is_shared(layer: nn.Module) -> bool:
    """Whether some weight of ``layer`` is a codebook."""
    return isinstance(layer, SharedWeightMixin) and bool(layer.computed_parameters())


def shared_names(layer: nn.Module) -> tuple[str, ...]:
    """The names of ``layer``'s shared weights."""
    return layer.computed_parameters() if isinstance(layer, SharedWeightMixin) else ()


def is_shareable(layer: nn.Module, name: str = "weight") -> bool:
    """Whether :func:`share_` can share weight ``name`` of ``layer`` (or already has)."""
    if name in shared_names(layer):
        return True
    return adapter_of(layer) is not None and layer._parameters.get(name) is not None


def _replace_parameter(layer: nn.Module, old: str, new: str, value: nn.Parameter) -> None:
    """Put ``value`` under ``new`` where ``old`` was, keeping the parameters' order."""
    items = [(new, value) if key == old else (key, p) for key, p in layer._parameters.items()]
    layer._parameters.clear()
    layer._parameters.update(items)


def share_(
    layer: nn.Module,
    shared: SharedWeight,
    name: str = "weight",
    *,
    tied: Sequence[tuple[nn.Module, str]] = (),
) -> None:
    """Make weight ``name`` of ``layer`` (and of every ``(module, name)`` in ``tied``, which
    hold the same parameter) take the values of ``shared``; one codebook for all of them."""
    if not is_shareable(layer, name):
        raise TypeError(f"{type(layer).__name__} has no weight {name!r} that can be shared")
    shape = _stored(layer, name)[1]
    if shared.indices.shape != shape or shared.mask.shape != shape:
        raise ValueError(
            f"codebook indices of shape {tuple(shared.indices.shape)} do not fit the weight "
            f"of shape {tuple(shape)}"
        )
    old = layer._parameters.get(_keys(name)[0] if name in shared_names(layer) else name)
    assert old is not None
    centroids = nn.Parameter(
        shared.centroids.detach().to(old.device, old.dtype).clone(),
        requires_grad=old.requires_grad,
    )
    indices = shared.indices.to(old.device).clone()
    mask = shared.mask.to(old.device, torch.bool).clone()
    for module, key in ((layer, name), *tied):
        _install(module, key, centroids, indices, mask)


def _install(
    module: nn.Module, name: str, centroids: nn.Parameter, indices: Tensor, mask: Tensor
) -> None:
    keys = _keys(name)
    old = keys[0] if name in shared_names(module) else name
    _replace_parameter(module, old, keys[0], centroids)
    module._buffers[keys[1]] = indices
    module._buffers[keys[2]] = mask
    module.__class__ = _shared_class(_PLAIN.get(type(module), type(module)))
    module.__dict__.pop("_flat_weights", None)  # an RNN's stored list: computed from now on
    names = module.__dict__.setdefault(_SHARED, [])
    if name not in names:
        names.append(name)


def _stored(layer: nn.Module, name: str) -> tuple[torch.dtype, torch.Size]:
    """The dtype and shape of weight ``name`` from the stored tensors, without computing it (a
    shared weight would gather its codebook for nothing, on the meta device too)."""
    if name in shared_names(layer):
        centroids, indices = (getattr(layer, key) for key in _keys(name)[:2])
        return centroids.dtype, indices.shape
    weight = getattr(layer, name)
    return weight.dtype, weight.shape


def empty_codebook(layer: nn.Module, clusters: int, name: str = "weight") -> SharedWeight:
    """A placeholder codebook of ``clusters`` values for weight ``name`` (a state dict fills it)."""
    dtype, shape = _stored(layer, name)
    return SharedWeight(
        torch.zeros(clusters, dtype=dtype),
        torch.zeros(shape, dtype=index_dtype(clusters)),
        torch.ones(shape, dtype=torch.bool),
    )


def _plain_weight(module: nn.Module, name: str, done: dict[int, nn.Parameter]) -> None:
    keys = _keys(name)
    centroids = module._parameters[keys[0]]
    assert centroids is not None
    if id(centroids) not in done:  # tied holders get the very same new parameter
        with torch.no_grad():
            value = getattr(module, name).clone()
        done[id(centroids)] = nn.Parameter(value, requires_grad=centroids.requires_grad)
    _replace_parameter(module, keys[0], name, done[id(centroids)])
    del module._buffers[keys[1]], module._buffers[keys[2]]
    module.__dict__[_SHARED].remove(name)


def unshare_(layer: nn.Module, *, _done: dict[int, nn.Parameter] | None = None) -> nn.Module:
    """Turn a shared layer back into its plain class, shared values as ordinary parameters.

    Use :func:`unshare_model_` on a model with tied weights: it keeps them one parameter.
    """
    done = {} if _done is None else _done
    for name in shared_names(layer):
        _plain_weight(layer, name, done)
    if isinstance(layer, SharedWeightMixin):
        layer.__class__ = _PLAIN[type(layer)]
        layer.__dict__.pop(_SHARED, None)
        if isinstance(layer, nn.RNNBase):
            layer._init_flat_weights()
    return layer


def unshare_model_(model: nn.Module) -> nn.Module:
    """Unshare every layer of ``model``; weights shared by several modules stay one parameter."""
    done: dict[int, nn.Parameter] = {}
    for module in model.modules():
        unshare_(module, _done=done)
    return model
