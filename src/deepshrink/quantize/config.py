"""The quantization configs: one frozen, validated pydantic model per method, registered by name.

>>> KMeansQuantization(bits=6).clusters("linear")
64
>>> quantization("kmeans", bits={"conv": 8, "linear": 5}).clusters("conv")
256
>>> KMeansQuantization(bits=17)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
deepshrink.errors.ConfigError: KMeansQuantization: bits must be an integer from 1 to 8 ...
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator
from torch import nn

from deepshrink._config import MethodConfig
from deepshrink._registry import Registry
from deepshrink.functional.kmeans import INITS

__all__ = ["LAYER_KINDS", "METHODS", "KMeansQuantization", "QuantizeConfig", "quantization"]

MIN_BITS, MAX_BITS = 1, 8

#: Layer kinds a per-kind ``bits`` mapping may name, and the module types of each.
LAYER_KINDS: Registry[tuple[type[nn.Module], ...]] = Registry("layer kind")
LAYER_KINDS.add("linear", (nn.Linear,))
LAYER_KINDS.add(
    "conv",
    (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
)
LAYER_KINDS.add("embedding", (nn.Embedding, nn.EmbeddingBag))
LAYER_KINDS.add("recurrent", (nn.RNNBase,))
LAYER_KINDS.add("attention", (nn.MultiheadAttention,))
#: Kinds that take the ``linear`` width when a ``bits`` mapping does not name them.
LINEAR_LIKE = ("recurrent", "attention", "embedding")


def kind_of(layer: nn.Module) -> str | None:
    """The layer's kind (``"linear"``, ``"conv"``, ``"embedding"``, ``"recurrent"``,
    ``"attention"``, see :mod:`deepshrink.graph.layers`), or ``None`` for any other module."""
    from deepshrink.graph.layers import adapter_of

    adapter = adapter_of(layer)
    return None if adapter is None else adapter.kind


class QuantizeConfig(MethodConfig):
    """Base of every quantization config: frozen, no unknown fields, errors as ConfigError."""

    #: The name the method is registered under (``"kmeans"``, ...).
    method: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The config as a recipe entry: ``{"method": name, **settings}``."""
        return {"method": self.method, **self.model_dump(mode="json")}


def _check_bits(where: str, value: int) -> None:
    if isinstance(value, bool) or not MIN_BITS <= value <= MAX_BITS:
        raise ValueError(
            f"{where} must be an integer from {MIN_BITS} to {MAX_BITS} "
            f"(2 to 256 shared values per layer), got {value!r}"
        )


class KMeansQuantization(QuantizeConfig):
    """Weight sharing by k-means (Han et al. 2016): each layer's non-zero weights take one of
    ``2**bits`` shared values (centroids), fine-tuned by training; zeros stay exactly zero.

    ``bits`` is one width for every weight matrix, or one per layer kind:
    ``{"conv": 8, "linear": 5}`` (Han et al.'s widths, the default); recurrent gate matrices,
    attention projections and embeddings take the ``linear`` width unless the mapping names
    their kind (``"recurrent"``, ``"attention"``, ``"embedding"``). ``overrides`` maps layer-name
    globs to their own width (the last matching glob wins). ``init`` names the starting centroids
    (``"linear"``, ``"density"`` or ``"random"``, seeded by ``seed``); k-means stops when no
    cluster changes or after ``max_iterations``. Biases are not shared.

    >>> KMeansQuantization(bits=5, overrides={"fc3": 8}).init
    'linear'
    """

    method: ClassVar[str] = "kmeans"

    bits: int | dict[str, int] = {"conv": 8, "linear": 5}
    init: str = "linear"
    overrides: dict[str, int] = {}
    max_iterations: int = Field(300, ge=1)
    seed: int = 0

    @field_validator("init")
    @classmethod
    def _check_init(cls, value: str) -> str:
        if value not in INITS:
            raise ValueError(INITS.unknown_message(value))
        return value

    @model_validator(mode="after")
    def _check(self) -> KMeansQuantization:
        if isinstance(self.bits, dict):
            if not self.bits:
                raise ValueError('bits mapping is empty; give e.g. {"conv": 8, "linear": 5}')
            for kind, value in self.bits.items():
                if kind not in LAYER_KINDS:
                    raise ValueError(f"bits: {LAYER_KINDS.unknown_message(kind)}")
                _check_bits(f"bits[{kind!r}]", value)
        else:
            _check_bits("bits", self.bits)
        for pattern, value in self.overrides.items():
            _check_bits(f"overrides[{pattern!r}]", value)
        return self

    def bits_for(self, kind: str | None) -> int | None:
        """The width for layers of ``kind`` before overrides (``None``: the mapping lacks it)."""
        if isinstance(self.bits, int):
            return self.bits
        if kind in LINEAR_LIKE and kind not in self.bits:
            kind = "linear"
        return self.bits.get(kind) if kind is not None else None

    def clusters(self, kind: str) -> int:
        """Number of shared values for layers of ``kind`` (before overrides)."""
        bits = self.bits_for(kind)
        if bits is None:
            raise KeyError(kind)
        return 2**bits


METHODS: Registry[type[QuantizeConfig]] = Registry("quantization method")
METHODS.add("kmeans", KMeansQuantization)


def quantization(name: str, **settings: Any) -> QuantizeConfig:
    """Build the config of the quantization method called ``name`` (as a recipe would).

    >>> quantization("kmeans", bits=4).to_dict()["bits"]
    4
    """
    return METHODS.get(name)(**settings)
