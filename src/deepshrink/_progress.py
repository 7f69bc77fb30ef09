"""Progress on long work, never silent: a rich bar on a terminal, plain log lines elsewhere.

On a terminal (or in Jupyter) training shows a rich progress bar on stderr. When stderr is
redirected (a file, a pipe, a batch job's log) a bar would print nothing until it ends, so the
loops log plain lines instead, through :mod:`logging`: one per epoch and per recipe stage, and,
within long work, one at least every :data:`INTERVAL` seconds (a :class:`Heartbeat` decides when).
rich is imported only when a bar or a handler is built.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

#: Longest silence, in seconds, between progress lines during long work when not on a terminal.
INTERVAL = 10.0


class Heartbeat:
    """Says when a progress line is due: when ``interval`` seconds have passed since the last
    one (or since the start). ``clock`` returns seconds; tests pass a stub.

    >>> now = [0.0]
    >>> beat = Heartbeat(10.0, clock=lambda: now[0])
    >>> now[0] = 9.9; beat.due()
    False
    >>> now[0] = 10.0; beat.due(), beat.due()
    (True, False)
    """

    def __init__(
        self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.last = clock()

    def due(self) -> bool:
        """True (and the silence restarts) when a line is due; False otherwise."""
        now = self.clock()
        if now - self.last < self.interval:
            return False
        self.last = now
        return True

    def reset(self) -> None:
        """Restart the silence now (after a line was written by other means)."""
        self.last = self.clock()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def on_terminal() -> bool:
    """Whether stderr shows a live bar: a terminal or a Jupyter notebook (as rich sees it)."""
    console = _stderr_console()
    return bool(console.is_terminal or console.is_jupyter)


def progress_bar() -> Any:
    """A transient rich progress bar on stderr (a context manager), for terminals."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=_stderr_console(),
        transient=True,
    )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (not the stream of the
    moment it was made), so a handler outliving a redirected or captured stderr never writes to
    a closed file."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignored: the current ``sys.stderr`` is always used."""


def log_handler() -> logging.Handler:
    """The CLI's log handler: rich on a terminal; elsewhere one plain, timestamped line per
    record on stderr (flushed each time, never wrapped), so a redirected run's log reads well.
    Under torchrun only rank 0's info lines pass; every rank's warnings and errors do."""
    handler: logging.Handler
    if on_terminal():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, show_time=False, console=_stderr_console())
    else:
        handler = _StderrHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
        )
    handler.addFilter(_main_rank_only)
    return handler


def _main_rank_only(record: logging.LogRecord) -> bool:
    """Under torchrun, ranks other than 0 show warnings and errors only (rank 0 logs)."""
    from deepshrink._io import follower

    return record.levelno >= logging.WARNING or not follower()


def samples_line(prefix: str, seen: int, total: int | None, loss: float, top1: float | None) -> str:
    """``"epoch 1/3: 12,800/60,000 samples, loss 0.4100, acc 87.50%"`` (total may be unknown)."""
    count = f"{seen:,}/{total:,}" if total else f"{seen:,}"
    accuracy = "" if top1 is None else f", acc {top1:.2%}"
    return f"{prefix}: {count} samples, loss {loss:.4f}{accuracy}"


def ticking(items: Any, what: str, log: logging.Logger, interval: float = INTERVAL) -> Any:
    """Yield ``items``; when one is slow to finish, log "``what``: N batches done (Ts)" at most
    every ``interval`` seconds, so long evaluations are never silent.

    >>> list(ticking(range(3), "scoring", logging.getLogger("test")))
    [0, 1, 2]
    """
    beat = Heartbeat(interval)
    started = beat.last
    for done, item in enumerate(items):
        if beat.due():
            log.info("%s: %d batches done (%.0fs)", what, done, beat.last - started)
        yield item
