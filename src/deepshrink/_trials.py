"""Run independent trials one after another or as Ray tasks; a failed trial is kept, not fatal.

A trial is one call ``fn(item)``, or ``fn(shared, item)`` when ``shared`` is given (a model and
dataset every trial reads: Ray puts it in its object store once, not once per task). Each trial
gives back a :class:`Trial`: its value, or the one-line error it raised. The order of the
results is the order of ``items``, whichever worker finished first.

``backend="ray"`` runs each trial as a Ray task (one CPU each, ``gpus`` GPUs each): on the
cluster at ``address`` (or ``RAY_ADDRESS``), else on a local Ray started for the call and shut
down after it (``workers`` CPUs, no dashboard, a small object store). A Ray session the caller
already started is used as it is. Ray is an optional extra, imported only here and only then.

>>> import math
>>> [(t.value, t.error) for t in map_trials(math.sqrt, [4.0, -1.0])]
[(2.0, None), (None, 'ValueError: math domain error')]
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from deepshrink.errors import ConfigError, one_line, quoted

__all__ = ["BACKENDS", "INSTALL_HINT", "Trial", "check_backend", "map_trials", "ray_session"]

logger = logging.getLogger(__name__)

BACKENDS = ("serial", "ray")

INSTALL_HINT = "the ray backend needs Ray: pip install 'deepshrink[ray]'"

#: Object store of a Ray started on demand: trials send back small results, ``shared`` once.
OBJECT_STORE_BYTES = 256 * 1024**2

#: Seconds to wait for a cluster's address to accept a connection.
CONNECT_SECONDS = 5

#: Characters of a trial's error kept in its result.
ERROR_CHARS = 200


@dataclass(frozen=True)
class Trial:
    """One trial: its item, and its value or the error it raised (``TypeName: message``)."""

    item: Any
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_backend(
    backend: str, address: str | None = None, workers: int | None = None, gpus: float = 0
) -> None:
    """Refuse a backend or option that cannot run, before any trial: Ray installed, and a
    cluster's address answering."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend {quoted(backend, 60)}: expected one of {', '.join(BACKENDS)}")
    if workers is not None and not 1 <= workers <= 4096:
        raise ConfigError(f"workers must be in [1, 4096], got {workers}")
    if not 0 <= gpus <= 64:
        raise ConfigError(f"gpus per trial must be in [0, 64], got {gpus}")
    if backend == "serial" and (address is not None or workers is not None or gpus):
        raise ConfigError("address, workers and gpus are for the ray backend; add backend ray")
    if backend == "ray":
        _import_ray()
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address is not None:
            _check_reachable(address)


def map_trials(
    fn: Callable[..., Any],
    items: Iterable[Any],
    *,
    backend: str = "serial",
    address: str | None = None,
    workers: int | None = None,
    gpus: float = 0,
    shared: Any = None,
    label: Callable[[Any], str] = str,
) -> list[Trial]:
    """``fn`` over ``items`` (see the module docstring); one :class:`Trial` per item, in order.

    ``label(item)`` names a trial in the log line at its end.
    """
    check_backend(backend, address, workers, gpus)
    items = list(items)
    if backend == "serial":
        trials = []
        for index, item in enumerate(items):
            trials.append(Trial(item, *_call(fn, shared, item)))
            _log_done(index, len(items), trials[-1], label)
        return trials
    with ray_session(address, workers, gpus) as ray:
        return _map_ray(ray, fn, items, workers, gpus, shared, label)


def _call(fn: Callable[..., Any], shared: Any, item: Any) -> tuple[Any, str | None]:
    """``(value, None)`` or ``(None, error)``; runs in the worker, so no exception travels."""
    try:
        return (fn(item) if shared is None else fn(shared, item)), None
    except Exception as error:  # a trial's failure, whatever it is, is its result
        logger.debug("trial %s failed", quoted(item, 100), exc_info=True)
        return None, f"{type(error).__name__}: {one_line(str(error), ERROR_CHARS)}"


def _log_done(index: int, total: int, trial: Trial, label: Callable[[Any], str]) -> None:
    outcome = "done" if trial.ok else f"failed: {trial.error}"
    logger.info("trial %d of %d (%s) %s", index + 1, total, label(trial.item)[:100], outcome)


def _map_ray(
    ray: Any, fn: Callable[..., Any], items: list[Any], workers: int | None, gpus: float,
    shared: Any, label: Callable[[Any], str],
) -> list[Trial]:  # fmt: skip
    """At most ``workers`` tasks in flight (all when None); results in the order of ``items``."""
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=1)(_call)
    shared_ref = ray.put(shared) if shared is not None else None
    pending: dict[Any, int] = {}
    results: list[Trial | None] = [None] * len(items)
    submitted = 0
    try:
        while submitted < len(items) or pending:
            while submitted < len(items) and len(pending) < (workers or len(items)):
                pending[task.remote(fn, shared_ref, items[submitted])] = submitted
                submitted += 1
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ref)
            results[index] = Trial(items[index], *_fetch(ray, ref))
            _log_done(sum(r is not None for r in results) - 1, len(items), results[index], label)
    finally:
        for ref in pending:  # interrupted: the tasks still queued or running are cancelled
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
    return [r for r in results if r is not None]


def _fetch(ray: Any, ref: Any) -> tuple[Any, str | None]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:  # the worker died, or Ray could not run the task
        return None, f"{type(error).__name__}: {one_line(str(error), ERROR_CHARS)}"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


@contextlib.contextmanager
def ray_session(
    address: str | None = None, workers: int | None = None, gpus: float = 0
) -> Iterator[Any]:
    """The ``ray`` module, connected: to the caller's session, to ``address`` (or
    ``RAY_ADDRESS``), or to a local Ray started here and shut down on exit; refused when the
    cluster has fewer than ``gpus`` GPUs (Ray would wait for them forever)."""
    ray = _import_ray()
    if ray.is_initialized():
        _check_gpus(ray, gpus)
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address is not None:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            cpus = workers or os.cpu_count() or 1
            # "local": a new Ray of our own, even where `ray start` left one on this machine
            ray.init(address="local", num_cpus=cpus, object_store_memory=OBJECT_STORE_BYTES,
                     include_dashboard=False, logging_level=logging.WARNING)  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as error:
        if address is None:
            raise ConfigError(f"cannot start a local Ray: {one_line(str(error), 200)}") from None
        raise ConfigError(
            f"cannot join the Ray cluster at {quoted(address, 100)}: {one_line(str(error), 80)}; "
            "a cluster with token authentication needs RAY_AUTH_MODE=token here and its token "
            "(RAY_AUTH_TOKEN, or `ray get-auth-token` on its head node)"
        ) from None
    try:
        _check_gpus(ray, gpus)
        yield ray
    finally:
        ray.shutdown()


def _check_gpus(ray: Any, gpus: float) -> None:
    available = ray.cluster_resources().get("GPU", 0)
    if gpus > available:
        raise ConfigError(f"gpus per trial: {gpus:g} asked, the Ray cluster has {available:g} "
                          "GPUs; ask for fewer (0 runs on CPUs)")  # fmt: skip


def _check_reachable(address: str) -> None:
    """Refuse at once an address where nothing listens (Ray itself retries for minutes)."""
    if address == "auto":  # the cluster ``ray start`` left on this machine; Ray says if none
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {quoted(address, 100)}: expected HOST:PORT as `ray start "
                          "--head` prints it, ray://HOST:PORT or auto")  # fmt: skip
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
            pass
    except OSError as error:
        raise ConfigError(
            f"--address {quoted(address, 100)}: no Ray cluster answers there "
            f"({error.strerror or type(error).__name__}); start one with `ray start --head` "
            "or leave --address out for a local Ray"
        ) from None
