"""The base of every method config: frozen, no unknown fields, invalid values → ConfigError.

>>> from pydantic import Field
>>> class Example(MethodConfig):
...     ratio: float = Field(0.5, ge=0, lt=1)
>>> Example(ratio=1.5)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
deepshrink.errors.ConfigError: Example.ratio: Input should be less than 1, got 1.5
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from deepshrink.errors import ConfigError, quoted


class MethodConfig(BaseModel):
    """Pydantic model whose validation errors become one-line :class:`ConfigError` messages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **settings: Any) -> None:
        try:
            super().__init__(**settings)
        except ValidationError as exc:
            raise ConfigError(validation_message(type(self).__name__, exc)) from None


def validation_message(title: str, exc: ValidationError) -> str:
    """``Title.field: what is wrong, got value`` for the first error of ``exc``."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    text = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "value_error" or not where:
        return f"{title}: {text}"
    return f"{title}.{where}: {text}, got {quoted(first['input'])}"
