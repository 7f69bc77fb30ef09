"""Exceptions raised for user mistakes and bad input.

Every error a user can cause derives from :class:`DeepshrinkError`; the CLI turns these into one
line on stderr and exit code 2. Messages say what went wrong, why, and how to fix it.
"""

from __future__ import annotations

from typing import Any

#: Characters of a user-given value quoted in an error message (a hostile value may be huge).
QUOTED = 200


class DeepshrinkError(Exception):
    """Base class for errors caused by input (arguments, files, configs), not by bugs."""


class ConfigError(DeepshrinkError, ValueError):
    """An argument or config value is out of range or inconsistent."""


class UnknownNameError(DeepshrinkError, LookupError):
    """A name (model, method, dataset) is not registered."""

    def __str__(self) -> str:  # LookupError would repr() the message in quotes
        return str(self.args[0]) if self.args else ""


class DataError(DeepshrinkError):
    """A dataset is missing, truncated, corrupted or fails its checksum."""


class FormatError(DeepshrinkError):
    """A file does not follow its declared format (checkpoint sidecar, container)."""


def quoted(value: Any, limit: int = QUOTED) -> str:
    """``repr(value)`` cut to ``limit`` characters, safe on any value (a 5,000-digit integer,
    a deeply nested list).

    >>> quoted("x" * 500)[-6:], len(quoted("x" * 500))
    ("xx...'", 200)
    >>> quoted(10**5000)
    '<an integer of 16610 bits>'
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"<an integer of {value.bit_length()} bits>"  # repr() refuses > 4300 digits
    if isinstance(value, (str, bytes)) and len(value) > limit:
        value = value[:limit]  # repr() of the head only: never format a huge value whole
        text = repr(value)
        return text[: limit - 4] + "..." + text[-1]
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str, limit: int = 300) -> str:
    """``message`` on one line of at most ``limit`` characters (the CLI's ``error:`` line).

    A longer message first loses the leading folders of long paths (``.../model.dsz``),
    then its middle: the start says what is wrong, the last clause (after the last ``. `` or
    ``; ``) how to fix it.

    >>> one_line("bad value" + chr(10) + "  in file")
    'bad value in file'
    >>> len(one_line("x: " + "y" * 1000 + " fix: z"))
    300
    """
    text = " ".join(message.split())
    if len(text) > limit:
        text = " ".join(_short_path(word) for word in text.split(" "))
    if len(text) > limit:
        cut = max(text.rfind(". "), text.rfind("; "))
        tail = text[cut + 2 :] if cut > 0 else ""
        if not tail or len(tail) > limit * 2 // 3:
            tail = text[len(text) - limit // 3 :]
        text = f"{text[: limit - len(tail) - 5]} ... {tail}"
    return text


def _short_path(word: str) -> str:
    parts = word.split("/")
    if not word.startswith("/") or len(word) <= 40 or len(parts) <= 2:
        return word
    return ".../" + parts[-1]
