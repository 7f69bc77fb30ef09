"""How the ``.dsz`` writer codes tensors: relative-index width, Huffman on or off, float width
and BatchNorm folding.

>>> EncodeConfig().bits_for((300, 784)), EncodeConfig().bits_for((20, 1, 5, 5))
([5], [8])
>>> EncodeConfig(index_bits="auto").bits_for((3,))[:3]
[1, 2, 3]
>>> EncodeConfig(index_bits=17)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
deepshrink.errors.ConfigError: EncodeConfig: index_bits must be in [1, 16], got 17
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from deepshrink._config import MethodConfig

__all__ = ["MAX_INDEX_BITS", "EncodeConfig"]

#: Widest relative index: a Huffman table over ``2**16`` gap symbols stays small.
MAX_INDEX_BITS = 16
_PAPER_BITS = {"conv": 8, "linear": 5}


class EncodeConfig(MethodConfig):
    """Settings of :func:`deepshrink.save`.

    ``index_bits``: width b of the relative indices of sparse tensors — one number, ``"auto"``
    (the b in 1…16 that makes each tensor smallest), or per kind ``{"conv": 8, "linear": 5}``
    (the default, as in Han et al. 2016; tensors of 3 or more dimensions count as conv).
    ``huffman``: also try canonical Huffman codes for every stream and keep them where smaller
    (P+Q+H); ``False`` gives fixed-width fields only (P+Q).
    ``floats``: ``"exact"`` (the default) stores every tensor bit for bit; ``"float16"`` or
    ``"bfloat16"`` rounds float32/float64 tensors (codebooks, biases, raw values) to that type
    in the file and widens them back on loading — lossy, half the bytes of side information;
    zero stays zero and non-zero stays non-zero. Such files are format version 2.
    ``batchnorm``: ``"exact"`` (the default) stores BatchNorm's four vectors as they are;
    ``"fold"`` stores each as one per-channel scale and shift with zero mean and unit variance
    (:mod:`deepshrink.encode.batchnorm`): the same evaluation output up to float rounding, about
    half the bytes of BatchNorm side information. Applied by :func:`deepshrink.save`, which has
    the model (each layer's ``eps``).
    """

    index_bits: int | Literal["auto"] | dict[str, int] = Field(
        default_factory=lambda: dict(_PAPER_BITS)
    )
    huffman: bool = True
    floats: Literal["exact", "float16", "bfloat16"] = "exact"
    batchnorm: Literal["exact", "fold"] = "exact"

    @field_validator("index_bits", mode="before")
    @classmethod
    def _check_bits(cls, value: Any) -> Any:
        def check(bits: Any) -> int:
            if isinstance(bits, bool) or not isinstance(bits, int):
                raise ValueError(f"index_bits must be whole numbers, got {bits!r}")
            if not 1 <= bits <= MAX_INDEX_BITS:
                raise ValueError(f"index_bits must be in [1, {MAX_INDEX_BITS}], got {bits}")
            return bits

        if isinstance(value, dict):
            unknown = set(value) - set(_PAPER_BITS)
            if unknown:
                raise ValueError(f"index_bits keys are 'conv' and 'linear', got {sorted(unknown)}")
            return {**_PAPER_BITS, **{key: check(bits) for key, bits in value.items()}}
        return value if value == "auto" else check(value)

    def bits_for(self, shape: tuple[int, ...]) -> list[int]:
        """The index widths to try for a tensor of ``shape``."""
        if self.index_bits == "auto":
            return list(range(1, MAX_INDEX_BITS + 1))
        if isinstance(self.index_bits, dict):
            return [self.index_bits["conv" if len(shape) >= 3 else "linear"]]
        return [self.index_bits]
