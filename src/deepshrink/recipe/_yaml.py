"""Reading recipe YAML as plain, bounded data.

``yaml.safe_load`` alone is not enough for a file from someone else: anchors and aliases let a
540-byte file expand into gigabytes ("billion laughs"), a duplicate key silently wins, deep
nesting overflows the recursive composer, and a 5,000-digit integer or ``.inf`` reaches code that
expects a number of a sensible size. Before anything is built from the text, this module checks
its size, scans the YAML events (an iterative parser: no recursion, no expansion) for anchors,
aliases, depth and node count, then composes the node tree and refuses duplicate keys and
oversized numbers, and finally checks every number of the result: integers fit in 64 bits,
floats are finite. Every refusal is a :class:`~deepshrink.errors.ConfigError` naming the key path
(``stages[1].train.lr``) or the line.

>>> load_yaml("a: {b: [1, 2.5]}", "r.yaml")
{'a': {'b': [1, 2.5]}}
>>> load_yaml("a: &x [1]\\nb: *x", "r.yaml")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
deepshrink.errors.ConfigError: r.yaml: line 1, column 4: YAML anchors and aliases are refused...
>>> load_yaml("train: {lr: .inf}", "r.yaml")
Traceback (most recent call last):
...
deepshrink.errors.ConfigError: train.lr: must be a finite number, got inf
"""

from __future__ import annotations

import math
from typing import Any

from deepshrink.errors import ConfigError, quoted

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "check_numbers", "key_path", "load_yaml"]

#: Largest recipe text read, in bytes.
MAX_BYTES = 1 << 20
#: Deepest nesting of mappings and lists.
MAX_DEPTH = 64
#: Most YAML nodes (scalars, mappings, lists) in one document.
MAX_NODES = 200_000
#: Longest integer literal, in characters (64-bit integers have at most 20 digits).
MAX_INT_CHARS = 40
#: Range of integers a recipe may hold (64-bit signed).
INT_RANGE = (-(1 << 63), (1 << 63) - 1)

_INT_TAG = "tag:yaml.org,2002:int"


def key_path(parts: list[str | int]) -> str:
    """``["stages", 1, "train", "lr"]`` → ``stages[1].train.lr``."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return text.removeprefix(".") or "recipe"


def _loader() -> Any:
    """libyaml's safe loader where PyYAML was built with it (many times faster), else PyYAML's."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _where(source: str, mark: Any) -> str:
    return f"{source}: line {mark.line + 1}, column {mark.column + 1}"


def _scan_events(text: str, source: str) -> None:
    """Refuse anchors, aliases, nesting deeper than MAX_DEPTH and more than MAX_NODES nodes."""
    import yaml

    depth = nodes = 0
    for event in yaml.parse(text, Loader=_loader()):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ConfigError(
                f"{_where(source, event.start_mark)}: YAML anchors and aliases are refused in "
                "recipes (&name, *name); write each value out"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(
                    f"{_where(source, event.start_mark)}: nested deeper than {MAX_DEPTH} levels; "
                    "a recipe is a few levels of mappings and lists"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_NODES:
                raise ConfigError(
                    f"{_where(source, event.start_mark)}: more than {MAX_NODES:,} values; "
                    "a recipe is far smaller"
                )


def _check_nodes(node: Any, parts: list[str | int]) -> None:
    """Refuse duplicate keys and integer literals too long to be a 64-bit integer."""
    import yaml

    if isinstance(node, yaml.ScalarNode):
        if node.tag == _INT_TAG and len(node.value) > MAX_INT_CHARS:
            raise ConfigError(
                f"{key_path(parts)}: an integer of {len(node.value)} characters is out of range "
                f"(at most {MAX_INT_CHARS})"
            )
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_nodes(item, [*parts, index])
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            if isinstance(key_node, yaml.ScalarNode) and key in seen:
                raise ConfigError(
                    f"{key_path([*parts, key])}: duplicate key (line "
                    f"{key_node.start_mark.line + 1}); a key may appear once per mapping"
                )
            seen.add(key)
            _check_nodes(value_node, [*parts, str(key)[:60]])


def check_numbers(value: Any, parts: list[str | int] | None = None) -> None:
    """Refuse non-finite floats, integers outside 64 bits and strings holding a NUL character
    anywhere in ``value``."""
    parts = parts or []
    if isinstance(value, bool):
        return
    if isinstance(value, str) and "\x00" in value:
        raise ConfigError(f"{key_path(parts)}: a NUL character is not allowed in a recipe string")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key_path(parts)}: must be a finite number, got {value}")
    if isinstance(value, int) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise ConfigError(
            f"{key_path(parts)}: {quoted(value, 40)} is out of range (a 64-bit integer)"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            check_numbers(key, parts)
            check_numbers(item, [*parts, str(key)[:60]])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_numbers(item, [*parts, index])


def load_yaml(text: str, source: str, at: list[str | int] | None = None) -> Any:
    """The data of the YAML ``text`` (named ``source`` in errors), checked as described above;
    ``at``: the key path of the text in a larger document (errors name it)."""
    import yaml

    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters; a recipe is at most {MAX_BYTES:,}")
    try:
        _scan_events(text, source)
        loader = _loader()(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_nodes(node, list(at or []))
            document = loader.construct_document(node)
        finally:
            loader.dispose()
    except ConfigError:
        raise
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: {_yaml_message(error)}") from None
    except ValueError as error:  # a constructor refusing a literal (e.g. a bad timestamp)
        raise ConfigError(f"{source}: {str(error)[:200]}") from None
    check_numbers(document, at)
    return document


def _yaml_message(error: Any) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error)
    if "could not determine a constructor" in str(error):
        problem += " (recipes are plain YAML data: tags such as !!python/object are refused)"
    return f"{where}{problem[:240]}"
