"""The JSON header of a ``.dsz`` file, validated strictly (no coercion, no unknown fields).

>>> check_header({"format": "x"}, lambda where, problem: ValueError(f"{where}: {problem}"))
Traceback (most recent call last):
...
ValueError: header: format: Input should be 'deepshrink-dsz', got 'x'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deepshrink._config import validation_message
from deepshrink.encode.tensors import DTYPES, MAX_CODEBOOK

__all__ = ["Header", "StreamSpec", "TensorEntry", "check_header"]

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)


class StreamSpec(BaseModel):
    """How one symbol stream is coded (see :mod:`deepshrink.encode.streams`)."""

    model_config = _STRICT
    coding: Literal["fixed", "huffman"]
    bits: int | None = Field(None, ge=1, le=16)
    alphabet: int | None = Field(None, ge=1, le=1 << 16)
    length_bits: int | None = Field(None, ge=1, le=5)

    @model_validator(mode="after")
    def _complete(self) -> StreamSpec:
        needed = ["bits"] if self.coding == "fixed" else ["alphabet", "length_bits"]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.coding} stream needs {missing}")
        return self


class TensorEntry(BaseModel):
    """One row of the tensor table."""

    model_config = _STRICT
    name: str = Field(min_length=1, max_length=4096)
    dtype: str
    shape: list[Annotated[int, Field(ge=0, le=1 << 62)]] = Field(max_length=32)
    layout: Literal["raw", "dense", "sparse", "support"]
    entries: int | None = Field(None, ge=0)
    index_bits: int | None = Field(None, ge=1, le=16)
    codebook: int | None = Field(None, ge=0, le=MAX_CODEBOOK + 1)
    gaps: StreamSpec | None = None
    values: StreamSpec | None = None
    of: str | None = None
    #: a narrower float type the values are kept in (format version 2), widened on reading
    stored: Literal["float16", "bfloat16"] | None = None

    @field_validator("dtype")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"unknown dtype {value!r}; known: {sorted(DTYPES)}")
        return value

    @model_validator(mode="after")
    def _narrowable(self) -> TensorEntry:
        if self.stored is not None and self.dtype not in ("float32", "float64"):
            raise ValueError(
                f"tensor {self.name!r}: only float32/float64 tensors are stored as "
                f"{self.stored}, not {self.dtype}"
            )
        return self


class Header(BaseModel):
    """The whole header."""

    model_config = _STRICT
    format: Literal["deepshrink-dsz"]
    arch: dict[str, Any] | None
    structure: list[dict[str, Any]]
    metadata: dict[str, Any]
    encoding: dict[str, Any]
    tensors: list[TensorEntry]
    #: state-dict names that are the same tensor as a stored one (tied weights): alias → stored
    aliases: dict[Annotated[str, Field(min_length=1, max_length=4096)], str] = {}

    @model_validator(mode="after")
    def _unique(self) -> Header:
        names = [entry.name for entry in self.tensors]
        if len(set(names)) != len(names):
            raise ValueError("tensor names repeat")
        stored = set(names)
        for alias, source in self.aliases.items():
            if alias in stored:
                raise ValueError(f"aliases: {alias!r} is also a stored tensor")
            if source not in stored:
                raise ValueError(f"aliases: {alias!r} refers to {source!r}, which is not stored")
        return self


def check_header(header: Any, fail: Callable[[str, str], Exception]) -> dict[str, Any]:
    """``header`` if it is a valid header dictionary (tensor fields set to ``null`` dropped);
    else ``fail("header", problem)``."""
    try:
        valid = Header.model_validate(header)
    except ValidationError as exc:
        raise fail("header", validation_message("", exc).lstrip(".")) from None
    return {**header, "tensors": [entry.model_dump(exclude_none=True) for entry in valid.tensors]}
