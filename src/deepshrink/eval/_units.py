"""Human-readable numbers for the Markdown tables (decimal SI prefixes, as file managers use)."""

from __future__ import annotations

MISSING = "n/a"


def count(value: int | None) -> str:
    """``266610`` → ``"266,610"``."""
    return MISSING if value is None else f"{value:,}"


def size(value: int | None) -> str:
    """Bytes with decimal prefixes: ``532`` → ``"532 B"``, ``1066440`` → ``"1.07 MB"``."""
    return _scaled(value, "B", ("B", "kB", "MB", "GB", "TB"))


def macs(value: int | None) -> str:
    """``384`` → ``"384 MACs"``, ``266200`` → ``"266.20 k MACs"``, ``4.2e6`` → ``"4.20 M MACs"``."""
    return _scaled(value, "MACs", ("MACs", "k MACs", "M MACs", "G MACs", "T MACs"))


def _scaled(value: int | None, plain: str, units: tuple[str, ...]) -> str:
    if value is None:
        return MISSING
    if abs(value) < 1000:
        return f"{value} {plain}"
    number = float(value)
    for unit in units[1:]:
        number /= 1000
        if abs(number) < 1000 or unit == units[-1]:
            break
    return f"{number:.2f} {unit}"


def milliseconds(value: float | None) -> str:
    """``0.0523`` → ``"0.052 ms"``."""
    return MISSING if value is None else f"{value:.3f} ms"


def percent(fraction: float | None) -> str:
    """``0.98234`` → ``"98.23%"``."""
    return MISSING if fraction is None else f"{100 * fraction:.2f}%"


def points(delta: float | None) -> str:
    """A difference in percentage points: ``-0.5`` → ``"-0.50 pp"``."""
    return MISSING if delta is None else f"{delta:+.2f} pp"


def ratio(value: float | None, better: str, worse: str) -> str:
    """A before/after ratio: ``4.0`` → ``"4.00× <better>"``, ``0.5`` → ``"2.00× <worse>"``."""
    if value is None or value <= 0:
        return MISSING
    if value == 1:
        return "1.00×"
    if value > 1:
        return f"{value:.2f}× {better}"
    return f"{1 / value:.2f}× {worse}"


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
