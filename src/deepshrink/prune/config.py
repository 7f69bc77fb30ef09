"""The pruning configs: one frozen, validated pydantic model per method, registered by name.

Bad values raise :class:`~deepshrink.errors.ConfigError` when the config is built, naming the
field, the value and the valid range.

>>> MagnitudePruning(sparsity=0.9).scope
'layer'
>>> pruning("neuron", ratio=0.5).criterion
'l2'
>>> MagnitudePruning(sparsity=1.5)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
deepshrink.errors.ConfigError: MagnitudePruning: sparsity must be in [0, 1), got 1.5; ...
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import field_validator, model_validator

from deepshrink._config import MethodConfig
from deepshrink._registry import Registry
from deepshrink.prune.criteria import CRITERIA

__all__ = [
    "ALIGN",
    "METHODS",
    "ChannelPruning",
    "MagnitudePruning",
    "NeuronPruning",
    "PruneConfig",
    "pruning",
]

#: Channel multiple of ``ChannelPruning(round_to="auto")``: ONNX Runtime on an AVX2 CPU ran
#: ResNet-56 at 12/23/45 channels no faster than dense and at 16/24/48 1.29x faster.
ALIGN = 8


class PruneConfig(MethodConfig):
    """Base of every pruning config: frozen, no unknown fields, errors as ConfigError."""

    #: The name the method is registered under (``"magnitude"``, ``"neuron"``, ...).
    method: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The config as a recipe entry: ``{"method": name, **settings}``."""
        return {"method": self.method, **self.model_dump(mode="json")}


def check_fraction(field: str, value: float | None, meaning: str) -> None:
    """Raise ``ValueError`` unless ``value`` is ``None`` or in [0, 1)."""
    if value is not None and not 0.0 <= value < 1.0:
        raise ValueError(f"{field} must be in [0, 1), got {value}; {meaning}")


def check_known_criterion(value: str) -> str:
    if value not in CRITERIA:
        raise ValueError(CRITERIA.unknown_message(value))
    return value


def _check_overrides(overrides: dict[str, float], field: str, meaning: str) -> None:
    for pattern, value in overrides.items():
        if field == "quality":
            if value < 0:
                raise ValueError(f"overrides[{pattern!r}]: quality must be ≥ 0, got {value}")
        else:
            check_fraction(f"overrides[{pattern!r}] ({field})", value, meaning)


class MagnitudePruning(PruneConfig):
    """Unstructured pruning: zero the individual weights with the lowest scores.

    Give exactly one target: ``sparsity`` (fraction of weights zeroed, in [0, 1)) or ``quality``
    (Han et al. 2015: prune ``|w| < quality × std(w)``). ``scope="layer"`` applies it to every
    layer separately, ``"global"`` ranks (or thresholds) the weights of all layers together.
    ``overrides`` maps layer-name globs to their own target, in the same unit (e.g. keep the
    first convolution denser with ``{"conv1": 0.3}``); a layer matched by several globs takes the
    last. ``criterion`` is a name in :data:`~deepshrink.prune.criteria.CRITERIA` (``"random"``
    is the baseline, seeded by ``seed``). Weights of ``Linear`` and convolution layers are
    pruned; biases are not.

    >>> MagnitudePruning(quality=1.0, overrides={"fc3": 0.5}).quality
    1.0
    """

    method: ClassVar[str] = "magnitude"

    sparsity: float | None = None
    quality: float | None = None
    scope: Literal["layer", "global"] = "layer"
    criterion: str = "magnitude"
    overrides: dict[str, float] = {}
    seed: int = 0

    _check_criterion = field_validator("criterion")(check_known_criterion)

    @model_validator(mode="after")
    def _check(self) -> MagnitudePruning:
        given = [f for f in ("sparsity", "quality") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of sparsity= (fraction of weights to zero) or quality= "
                f"(threshold = quality × std of the layer's weights), got {given or 'neither'}"
            )
        check_fraction("sparsity", self.sparsity, "0.9 zeroes 90% of the weights")
        if self.quality is not None and self.quality < 0:
            raise ValueError(f"quality must be ≥ 0 (a multiple of the std), got {self.quality}")
        if self.quality is not None and self.criterion == "random":
            raise ValueError(
                "quality= compares |w| with quality × std(w), which random scores cannot; "
                "use sparsity= with criterion='random'"
            )
        _check_overrides(self.overrides, given[0], "0.9 zeroes 90% of the layer's weights")
        return self

    @property
    def target(self) -> float:
        """The sparsity or the quality, whichever was given."""
        return self.sparsity if self.sparsity is not None else float(self.quality or 0.0)


class NeuronPruning(PruneConfig):
    """Remove whole units of dense layers: the rows of a ``Linear`` weight with the lowest norm.

    ``ratio`` (in [0, 1)) of each selected layer's units go, scored by ``criterion`` over the
    row (``"l2"``, ``"l1"``/``"magnitude"`` or ``"random"``). With ``physical=True`` (default) the
    ``Linear`` layer and the input of the next ``Linear`` shrink (a smaller, faster model); with
    ``physical=False`` the same units are only masked. Only a ``Linear`` whose output reaches
    exactly one other ``Linear`` through element-wise operations (activations, dropout) can be
    pruned, so the classifier layer never is. At least one unit per layer is kept.

    >>> NeuronPruning(ratio=0.25, overrides={"fc1": 0.5}).physical
    True
    """

    method: ClassVar[str] = "neuron"

    ratio: float
    criterion: str = "l2"
    overrides: dict[str, float] = {}
    physical: bool = True
    seed: int = 0

    _check_criterion = field_validator("criterion")(check_known_criterion)

    @model_validator(mode="after")
    def _check(self) -> NeuronPruning:
        check_fraction("ratio", self.ratio, "0.5 removes half the units of each layer")
        _check_overrides(self.overrides, "ratio", "0.5 removes half of the layer's units")
        return self


def _check_channel_criterion(value: str) -> str:
    from deepshrink.prune.channel_criteria import CHANNEL_CRITERIA

    if value not in CHANNEL_CRITERIA:
        raise ValueError(CHANNEL_CRITERIA.unknown_message(value))
    return value


class ChannelPruning(PruneConfig):
    """Structured pruning: remove whole filters/channels, so the model is physically smaller.

    ``ratio`` (in [0, 1)) of the channels go: of each coupled group separately
    (``scope="local"``), or the lowest-scoring channels over all groups together
    (``scope="global"``; meant for comparable scores such as ``"bn_scale"``). ``criterion`` is a
    name in :data:`~deepshrink.prune.channel_criteria.CHANNEL_CRITERIA`; ``taylor`` and
    ``apoz`` need ``calibration=`` batches. ``overrides`` maps layer globs to their own ratio;
    ``ignore`` lists layer globs whose output channels are never removed (a coupled group is
    left whole when any layer producing its channels matches; ``"fc"`` or ``"conv1"``). Each
    group keeps a multiple of ``round_to`` channels, at least ``round_to`` (or all it has);
    ``"auto"`` (the default) rounds up to a multiple of :data:`ALIGN` (8: what ONNX Runtime's CPU
    kernels run fastest, measured in ``benchmarks/RESULTS.md``) unless that would keep the whole
    group, which then keeps its exact count; ``round_to=1`` gives exact ratios everywhere.
    Channels that reach the model's output are never removed. On transformers ``ratio`` prunes
    the feed-forward widths and ``heads`` (in [0, 1)) removes that share of whole attention
    heads from every attention module channel pruning recognises (see ``docs/pruning.md``).

    >>> ChannelPruning(ratio=0.5, ignore=["fc"]).criterion
    'l1'
    >>> ChannelPruning(ratio=0.5, heads=0.25).heads
    0.25
    """

    method: ClassVar[str] = "channel"

    ratio: float
    criterion: str = "l1"
    scope: Literal["local", "global"] = "local"
    overrides: dict[str, float] = {}
    ignore: list[str] = []
    round_to: int | Literal["auto"] = "auto"
    heads: float = 0.0
    seed: int = 0

    _check_criterion = field_validator("criterion")(_check_channel_criterion)

    @model_validator(mode="after")
    def _check(self) -> ChannelPruning:
        check_fraction("ratio", self.ratio, "0.5 removes half the channels")
        check_fraction("heads", self.heads, "0.5 removes half the heads of each attention module")
        _check_overrides(self.overrides, "ratio", "0.5 removes half of the layer's channels")
        if self.round_to != "auto" and (isinstance(self.round_to, bool) or self.round_to < 1):
            raise ValueError(
                f"round_to must be 'auto' or ≥ 1 (kept channels are a multiple of it), got "
                f"{self.round_to}"
            )
        return self


METHODS: Registry[type[PruneConfig]] = Registry("pruning method")
METHODS.add("magnitude", MagnitudePruning)
METHODS.add("neuron", NeuronPruning)
METHODS.add("channel", ChannelPruning)


def pruning(name: str, **settings: Any) -> PruneConfig:
    """Build the config of the pruning method called ``name`` (as a recipe would).

    >>> pruning("magnitude", sparsity=0.5).to_dict()["method"]
    'magnitude'
    """
    return METHODS.get(name)(**settings)
