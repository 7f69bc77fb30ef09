"""The factorization configs: one frozen, validated pydantic model per method, registered by name.

Every config shares the *policy* fields of :class:`FactorizationConfig`: which layers are worth
trying (``min_params``) and when a factorized layer is kept (``policy``: ``"none"`` always,
``"smaller"`` when it has fewer parameters, ``"faster"`` when its measured latency beats the
dense layer by ``min_speedup``). Invalid values raise :class:`~deepshrink.errors.ConfigError`
when the config is built.

>>> SVDFactorization(energy=0.9).policy
'smaller'
>>> factorization("tucker", ranks=[8, 4]).ranks
(8, 4)
>>> factorization("svdd", rank=2)
Traceback (most recent call last):
...
deepshrink.errors.UnknownNameError: unknown factorization 'svdd'; did you mean 'svd'? ...
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, model_validator

from deepshrink._config import MethodConfig
from deepshrink._registry import Registry

__all__ = [
    "FACTORIZATIONS",
    "CPFactorization",
    "FactorizationConfig",
    "Policy",
    "SVDFactorization",
    "SeparableFactorization",
    "TTFactorization",
    "TuckerFactorization",
    "factorization",
]

Policy = Literal["none", "smaller", "faster"]


class FactorizationConfig(MethodConfig):
    """Fields shared by every factorization: which layers to try and which results to keep.

    ``min_params``: layers with fewer weight elements are left alone. ``policy``: keep a
    factorized layer ``"none"`` (always), ``"smaller"`` (fewer parameters than the dense layer)
    or ``"faster"`` (median latency on ``threads`` CPU threads at least ``min_speedup`` times
    lower than the dense layer's, measured on the layer's real input shape).
    """

    #: The name the method is registered under (``"svd"``, ``"tucker"``, ...).
    name: ClassVar[str] = ""

    min_params: int = 0
    policy: Policy = "smaller"
    min_speedup: float = 1.1
    threads: int = 1

    @model_validator(mode="after")
    def _check_policy(self) -> FactorizationConfig:
        _at_least("min_params", self.min_params, 0)
        _at_least("threads", self.threads, 1)
        if self.min_speedup <= 0:
            raise ValueError(f"min_speedup must be > 0, got {self.min_speedup}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as a recipe entry: ``{"method": name, **settings}``."""
        return {"method": self.name, **self.model_dump(mode="json")}


def _at_least(field: str, value: int | None, lowest: int) -> None:
    if value is not None and value < lowest:
        raise ValueError(f"{field} must be ≥ {lowest}, got {value}")


def _one_of(config: BaseModel, fields: tuple[str, ...]) -> None:
    given = [field for field in fields if getattr(config, field) is not None]
    if len(given) != 1:
        options = ", ".join(f"{field}=" for field in fields)
        raise ValueError(f"give exactly one of {options} (got {len(given)}: {given or 'none'})")


def _check_energy(energy: float | None) -> None:
    if energy is not None and not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1] (fraction of Σσ² kept), got {energy}")


def _check_compression(compression: float | None) -> None:
    if compression is not None and compression <= 1:
        raise ValueError(
            f"compression must be > 1 (weights of the dense layer ÷ weights kept), got "
            f"{compression}"
        )


class _RankChoice(FactorizationConfig):
    """A single rank chosen explicitly, by retained energy, or by a compression target."""

    rank: int | None = None
    energy: float | None = None
    compression: float | None = None

    @model_validator(mode="after")
    def _check_rank(self) -> _RankChoice:
        _one_of(self, ("rank", "energy", "compression"))
        _at_least("rank", self.rank, 1)
        _check_energy(self.energy)
        _check_compression(self.compression)
        return self


class SVDFactorization(_RankChoice):
    """Linear ``W ≈ U_r S_r V_rᵀ`` → ``Linear(in, r, bias=False)`` then ``Linear(r, out)``.

    ``rank`` (≤ min(in, out)), ``energy`` (smallest rank keeping that fraction of Σσ²) or
    ``compression`` (largest rank with ``dense weights / factor weights ≥ compression``).

    >>> SVDFactorization(rank=0)
    Traceback (most recent call last):
    ...
    deepshrink.errors.ConfigError: SVDFactorization: rank must be ≥ 1, got 0
    """

    name: ClassVar[str] = "svd"


class SeparableFactorization(_RankChoice):
    """Conv ``k_h×k_w`` → ``k_h×1`` (``rank`` filters) then ``1×k_w``, by SVD of the kernel.

    The kernel reshaped to ``(C·k_h) × (F·k_w)`` is truncated like a matrix, so ``rank`` is at
    most ``min(C·k_h, F·k_w)`` and full rank is exact (Jaderberg et al. 2014, scheme 2).

    >>> SeparableFactorization(compression=4).compression
    4.0
    """

    name: ClassVar[str] = "separable"


class TuckerFactorization(FactorizationConfig):
    """Conv → ``1×1`` (C→r_in), core ``k×k`` (r_in→r_out), ``1×1`` (r_out→F) (Kim et al. 2016).

    ``ranks``: ``(r_out, r_in)`` or one int for both; ``energy``: per mode, the fraction of the
    unfolding's Σσ² kept; ``compression``: ranks proportional to the channel counts, as large as
    the weight budget allows. Decomposed by tensorly's ``partial_tucker`` (HOOI).

    >>> TuckerFactorization(ranks=4).ranks
    (4, 4)
    """

    name: ClassVar[str] = "tucker"

    ranks: tuple[int, int] | None = None
    energy: float | None = None
    compression: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _pair(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("ranks"), int):
            data = {**data, "ranks": (data["ranks"], data["ranks"])}
        return data

    @model_validator(mode="after")
    def _check_ranks(self) -> TuckerFactorization:
        _one_of(self, ("ranks", "energy", "compression"))
        for rank in self.ranks or ():
            _at_least("each of ranks", rank, 1)
        _check_energy(self.energy)
        _check_compression(self.compression)
        return self


class CPFactorization(FactorizationConfig):
    """Conv → ``1×1`` (C→r), depthwise ``k_h×1``, depthwise ``1×k_w``, ``1×1`` (r→F).

    The rank-``r`` CP decomposition of the kernel (Lebedev et al. 2015) by tensorly's
    ``parafac`` (ALS, SVD initialisation, ``iterations`` at most). ``rank`` or ``compression``.

    >>> CPFactorization(rank=16).iterations
    200
    """

    name: ClassVar[str] = "cp"

    rank: int | None = None
    compression: float | None = None
    iterations: int = 200

    @model_validator(mode="after")
    def _check_rank(self) -> CPFactorization:
        _one_of(self, ("rank", "compression"))
        _at_least("rank", self.rank, 1)
        _at_least("iterations", self.iterations, 1)
        _check_compression(self.compression)
        return self


class TTFactorization(FactorizationConfig):
    """Linear → :class:`~deepshrink.factorize.TTLinear` (Tensor-Train matrix, Novikov et al.).

    ``input_modes`` / ``output_modes`` must multiply to the layer's in / out features; when
    left out they are split into ``order`` near-equal factors. ``ranks``: one int (a cap at
    every boundary), ``order - 1`` ints, or ``None`` for the full (exact) ranks. ``init``:
    ``"tt-svd"`` starts from the dense weights, ``"random"`` trains the layer from scratch.

    >>> TTFactorization(input_modes=[4, 7, 4, 7], output_modes=[3, 4, 5, 5], ranks=8).order
    4
    """

    name: ClassVar[str] = "tt"

    input_modes: tuple[int, ...] | None = None
    output_modes: tuple[int, ...] | None = None
    ranks: int | tuple[int, ...] | None = 8
    order: int = 3
    init: Literal["tt-svd", "random"] = "tt-svd"

    @model_validator(mode="before")
    @classmethod
    def _order_from_modes(cls, data: Any) -> Any:
        if isinstance(data, dict) and "order" not in data:
            modes = data.get("input_modes") or data.get("output_modes")
            if isinstance(modes, (list, tuple)):
                data = {**data, "order": len(modes)}
        return data

    @model_validator(mode="after")
    def _check_modes(self) -> TTFactorization:
        _at_least("order", self.order, 1)
        for field in ("input_modes", "output_modes"):
            modes = getattr(self, field)
            if modes is not None and (len(modes) != self.order or min(modes) < 1):
                raise ValueError(
                    f"{field} must be {self.order} positive integers (one per TT core, the "
                    f"same count for input and output), got {list(modes)}"
                )
        ranks = (self.ranks,) if isinstance(self.ranks, int) else self.ranks or ()
        for rank in ranks:
            _at_least("each TT rank", rank, 1)
        if isinstance(self.ranks, tuple) and len(self.ranks) != self.order - 1:
            raise ValueError(
                f"ranks must list {self.order - 1} inner TT-ranks for {self.order} cores, got "
                f"{list(self.ranks)}"
            )
        return self


FACTORIZATIONS: Registry[type[FactorizationConfig]] = Registry("factorization")
for _config in (
    SVDFactorization,
    SeparableFactorization,
    TuckerFactorization,
    CPFactorization,
    TTFactorization,
):
    FACTORIZATIONS.add(_config.name, _config)


def factorization(name: str, **settings: Any) -> FactorizationConfig:
    """Build the config registered as ``name`` (``svd``, ``separable``, ``tucker``, ``cp``, ``tt``).

    >>> factorization("svd", energy=0.95)
    SVDFactorization(min_params=0, policy='smaller', min_speedup=1.1, threads=1, rank=None, \
energy=0.95, compression=None)
    """
    return FACTORIZATIONS.get(name)(**settings)
