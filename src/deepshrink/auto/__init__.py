"""Compression under a budget: per-layer options measured, allocated, delivered and checked.

>>> from deepshrink.auto import allocate, auto_compress
>>> callable(auto_compress)
True
"""

from __future__ import annotations

from deepshrink.auto.allocate import allocate, front, uniform
from deepshrink.auto.candidates import Option, scan
from deepshrink.auto.compress import FineTune
from deepshrink.auto.search import AutoResult, auto_compress

__all__ = [
    "AutoResult",
    "FineTune",
    "Option",
    "allocate",
    "auto_compress",
    "front",
    "scan",
    "uniform",
]
