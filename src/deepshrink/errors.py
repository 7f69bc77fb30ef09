"""Exceptions raised for user mistakes and bad input.

Every error a user can cause derives from :class:`DeepshrinkError`; the CLI turns these into one
line on stderr and exit code 2. Messages say what went wrong, why, and how to fix it.
"""

from __future__ import annotations


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
