"""Data-parallel training under ``torchrun``: the process group, each rank's share of every
global batch, and checks that every rank holds the same model.

deepshrink brings no launcher: ``torchrun`` starts the processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`join` joins its
process group (gloo for CPU tensors, NCCL for CUDA tensors) once per process, with a timeout of
``DEEPSHRINK_DIST_TIMEOUT`` seconds (default 600) on every collective, so a rank whose peer
died fails instead of waiting for ever. Training wraps the model in PyTorch's
``DistributedDataParallel`` (:mod:`deepshrink.train.loop`).

``batch_size`` is per process. Each rank takes its slice of the global batches one process
would see with ``batch_size × world size`` (same shuffle), so N processes train like one
process with an N-times larger batch, up to float summation order.

Outside ``torchrun`` everything here is a no-op and nothing is imported from
``torch.distributed`` until a process group exists.

>>> world().size, is_main()
(1, True)
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError, DeepshrinkError

__all__ = [
    "TIMEOUT_VARIABLE",
    "World",
    "active",
    "adopt_main",
    "barrier",
    "check_agreement",
    "decided",
    "is_main",
    "join",
    "launched",
    "local_device",
    "lost_peers",
    "quiet",
    "rank_batches",
    "reduce_sums",
    "share",
    "sync_buffers",
    "synced_range",
    "syncing_ranges",
    "timeout_seconds",
    "world",
    "wrap",
]

logger = logging.getLogger(__name__)

#: Seconds a collective waits for the other ranks before it fails.
TIMEOUT_VARIABLE = "DEEPSHRINK_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
_LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size``, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (its rendezvous variables are set)."""
    return all(os.environ.get(name) for name in _LAUNCH_VARIABLES)


def active() -> bool:
    """Whether a process group is initialised in this process."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world() -> World:
    """This process's rank and the number of processes (rank 0 of 1 without a group)."""
    if not active():
        return World()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return World(torch.distributed.get_rank(), torch.distributed.get_world_size(), local)


def is_main() -> bool:
    """Whether this process logs and writes files: rank 0, or the only process."""
    return world().main


def timeout_seconds() -> float:
    """``DEEPSHRINK_DIST_TIMEOUT`` (seconds, > 0), or the default of 600."""
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e7:
        raise ConfigError(
            f"{TIMEOUT_VARIABLE}={text[:40]!r}: must be a number of seconds > 0 (default "
            f"{DEFAULT_TIMEOUT:.0f}); unset it or give e.g. 1800"
        )
    return value


def join(distributed: bool | None = None) -> World | None:
    """Join torchrun's process group (once per process); the World, or None for one process.

    ``distributed``: None joins when launched by torchrun, True requires it, False never joins.
    """
    if distributed is False:
        return None
    if active():
        return world()
    if not launched():
        if distributed:
            raise ConfigError(
                "distributed=True needs the process group torchrun sets up (RANK, WORLD_SIZE, "
                "MASTER_ADDR, MASTER_PORT are not all set): start the script with "
                "`torchrun --nproc_per_node N script.py`, or leave distributed unset"
            )
        return None
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    timeout = timedelta(seconds=timeout_seconds())
    torch.distributed.init_process_group(backend, timeout=timeout)
    atexit.register(_leave)
    joined = world()
    logger.debug("rank %d of %d joined the process group (%s)", joined.rank, joined.size, backend)
    return joined


def _leave() -> None:
    if active():
        with contextlib.suppress(Exception):
            torch.distributed.destroy_process_group()


def local_device(device: torch.device, requested: str, joined: World) -> torch.device:
    """The device of this rank: a CUDA device becomes the GPU of ``LOCAL_RANK``."""
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    mine = joined.local_rank % count
    if requested.startswith("cuda:") and joined.size > 1:
        raise ConfigError(
            f"device {requested!r} names one GPU, but under torchrun each process trains on the "
            "GPU of its LOCAL_RANK (cuda:LOCAL_RANK): use device: auto or cuda"
        )
    return torch.device("cuda", mine)


def barrier() -> None:
    """Wait until every rank gets here (nothing without a process group)."""
    if active():
        torch.distributed.barrier()


def share(value: Any) -> Any:
    """Rank 0's JSON-able ``value`` on every rank (sent as UTF-8 bytes, never pickled)."""
    if not active():
        return value
    data = json.dumps(value).encode("utf-8") if is_main() else b""
    size = torch.tensor([len(data)], dtype=torch.int64)
    torch.distributed.broadcast(size, src=0)
    buffer = torch.zeros(int(size.item()), dtype=torch.uint8)
    if is_main():
        buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    torch.distributed.broadcast(buffer, src=0)
    return value if is_main() else json.loads(buffer.numpy().tobytes().decode("utf-8"))


def reduce_sums(values: list[float]) -> list[float]:
    """``values`` summed over the ranks (float64)."""
    if not active():
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


# --- each rank's share of the global batches ---------------------------------------------------


def rank_batches(
    size: int, batch_size: int, joined: World, generator: torch.Generator, drop_last: bool
) -> Iterator[tuple[Tensor, Tensor]]:
    """(global batch indices, this rank's positions in it) for one epoch.

    The order is the single process's: ``randperm(size)`` from ``generator``, cut into global
    batches of ``batch_size × joined.size``; a rank takes the ``joined.rank``-th near-equal part.
    """
    if size < joined.size:
        raise ConfigError(
            f"the training set holds {size} samples, too few to give each of the {joined.size} "
            "processes one; use fewer processes or more data"
        )
    total = batch_size * joined.size
    order = torch.randperm(size, generator=generator)
    stop = size - size % total if drop_last else size
    for start in range(0, stop, total):
        chunk = order[start : start + total]
        positions = torch.tensor_split(torch.arange(len(chunk)), joined.size)[joined.rank]
        yield chunk, positions


# --- observers: one range over the global batch -----------------------------------------------

_SYNC_RANGES = [False]


@contextlib.contextmanager
def syncing_ranges(enabled: bool = True) -> Iterator[None]:
    """Within the block (data-parallel training), :func:`synced_range` reduces over ranks."""
    before = _SYNC_RANGES[0]
    _SYNC_RANGES[0] = enabled and active()
    try:
        yield
    finally:
        _SYNC_RANGES[0] = before


def synced_range(low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """The range over every rank's batch (min of ``low``, max of ``high``) while training
    data-parallel; ``(low, high)`` unchanged otherwise.

    For min/max and moving-average observers this is exactly the range one process sees on the
    whole global batch; for percentile, MSE and KL observers it is the widest rank's estimate.
    """
    if not _SYNC_RANGES[0]:
        return low, high
    low, high = low.clone(), high.clone()
    torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
    torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
    return low, high


# --- every rank holds the same model -----------------------------------------------------------


def _tensors(model: nn.Module) -> list[tuple[str, Tensor]]:
    return [(name, value.detach()) for name, value in model.state_dict(keep_vars=True).items()]


def _digest(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def _tensor_digest(tensor: Tensor) -> int:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return _digest(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")


def _layout(tensors: list[tuple[str, Tensor]]) -> list[str]:
    return [f"{name} {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for name, t in tensors]


def _gathered(local: Tensor) -> list[Tensor]:
    parts = [torch.empty_like(local) for _ in range(world().size)]
    torch.distributed.all_gather(parts, local)
    return parts


def _check_layout(layout: list[str], where: str) -> None:
    """Raise, on every rank, when the ranks' models differ in names, shapes or dtypes."""
    mine = torch.tensor([len(layout), _digest("\n".join(layout).encode())], dtype=torch.int64)
    parts = _gathered(mine)
    if all(torch.equal(part, parts[0]) for part in parts):
        return
    layouts: list[Any] = [None] * world().size
    torch.distributed.all_gather_object(layouts, layout)  # only the ranks' own strings
    for rank, other in enumerate(layouts):
        for index in range(max(len(other), len(layouts[0]))):
            first = layouts[0][index] if index < len(layouts[0]) else "nothing"
            theirs = other[index] if index < len(other) else "nothing"
            if first != theirs:
                raise DeepshrinkError(
                    f"after {where}: the processes hold different models: rank 0 has "
                    f"{first!r} where rank {rank} has {theirs!r}; every rank must build the "
                    "same model (same recipe, same deepshrink and torch versions)"
                )


def check_agreement(model: nn.Module, where: str) -> None:
    """Raise :class:`DeepshrinkError`, on every rank, naming the first parameter or buffer
    (masks, centroids, quantizer state) whose bytes differ from rank 0's."""
    if not active():
        return
    tensors = _tensors(model)
    _check_layout(_layout(tensors), where)
    local = torch.tensor([_tensor_digest(t) for _, t in tensors] or [0], dtype=torch.int64)
    parts = _gathered(local)
    for rank, part in enumerate(parts):
        differs = (part != parts[0]).nonzero().flatten()
        if len(differs):
            name = tensors[int(differs[0])][0]
            raise DeepshrinkError(
                f"after {where}: rank {rank} holds another {name} than rank 0 (and "
                f"{len(differs) - 1} more tensors differ); the ranks' models diverged, so the "
                "run stops: report it with the recipe"
            )


def adopt_main(model: nn.Module, where: str) -> None:
    """Make every rank's parameters and buffers rank 0's (compression decided once)."""
    if not active():
        return
    tensors = _tensors(model)
    _check_layout(_layout(tensors), where)
    with torch.no_grad():
        for _, tensor in tensors:
            target = tensor.view(torch.uint8) if tensor.dtype == torch.bool else tensor
            torch.distributed.broadcast(target, src=0)


def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics, quantizer ranges) on every rank."""
    if not active():
        return
    with torch.no_grad():
        for buffer in model.buffers():
            target = buffer.view(torch.uint8) if buffer.dtype == torch.bool else buffer
            torch.distributed.broadcast(target, src=0)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` (rank 0's parameters and buffers copied to every
    rank now, gradients averaged over ranks in every backward pass)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)  # buffers: rank 0's, every forward


def decided(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. whether to stop early)."""
    if not active():
        return flag
    tensor = torch.tensor([int(flag)], dtype=torch.int64)
    torch.distributed.broadcast(tensor, src=0)
    return bool(tensor.item())


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Within the block, ranks other than 0 log warnings and errors only."""
    log = logging.getLogger("deepshrink")
    before = log.level
    if not is_main():
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(before)


@contextlib.contextmanager
def lost_peers(folder: Any) -> Iterator[None]:
    """Turn a collective that failed because another process died (or timed out) into one
    :class:`DeepshrinkError` saying what to do."""
    try:
        yield
    except RuntimeError as error:  # torch.distributed.DistError is one
        if not active() or not _lost(error):
            raise
        text = str(error).strip().splitlines()
        raise DeepshrinkError(
            f"rank {world().rank}: lost contact with the other processes ("
            f"{text[0][:160] if text else type(error).__name__}); one died or stopped answering "
            f"within {TIMEOUT_VARIABLE}={timeout_seconds():.0f}s. {folder} keeps every finished "
            "stage: run again with --resume to continue from the last one"
        ) from error


def _lost(error: BaseException) -> bool:
    """Whether ``error`` came from the process group (a peer gone, a timeout)."""
    if isinstance(error, torch.distributed.DistError):
        return True
    text = str(error).lower()
    return any(word in text for word in ("gloo", "nccl", "connection", "timed out", "socket"))
