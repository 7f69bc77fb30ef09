"""Module-tree bookkeeping shared by the methods: structure records and their replay."""

from __future__ import annotations

from deepshrink.graph.structure import forget, rebuild, record, register_rebuilder, structure_of

__all__ = ["forget", "rebuild", "record", "register_rebuilder", "structure_of"]
