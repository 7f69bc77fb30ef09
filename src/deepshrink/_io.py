"""Atomic file writing: write to a temporary file in the same folder, fsync, then rename.

A crash or a full disk never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it replaces ``path`` in one rename.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_open(p, "w") as f:
    ...     _ = f.write("hello")
    >>> p.read_text()
    'hello'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


# --- run folders: names from user strings, writability, a lock, stale temporary files ---------

#: The lock file of a run folder (held with ``flock`` while a run writes there).
LOCK = ".lock"


def safe_name(text: str, default: str = "run") -> str:
    """``text`` as one harmless folder name: letters, digits, ``._-=,+`` kept, anything else
    (separators, ``..``, control characters) replaced by ``_``, at most 100 characters.

    >>> safe_name("../../x"), safe_name("description=/../../x"), safe_name("...")
    ('x', 'description=_.._.._x', 'run')
    """
    kept = "".join(c if c.isascii() and (c.isalnum() or c in "._-=,+") else "_" for c in text)
    kept = kept[:100].lstrip("._")
    return kept if kept.strip("._-") else default


def check_writable_folder(folder: str | os.PathLike[str], option: str = "--out") -> None:
    """Refuse, before anything is written, a ``folder`` that cannot become a writable folder:
    a file, a folder without write permission, a read-only file system, a parent that is a file.
    """
    from deepshrink.errors import ConfigError

    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{option} {target}: is a file, not a folder; choose a folder")
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{option} {target}: {probe} is a file, so no folder can be made there")
    read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    if read_only or not os.access(probe, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if read_only else "is not writable by this user"
        raise ConfigError(f"{option} {target}: {probe} {why}; choose another folder")


def lock_holder(folder: str | os.PathLike[str]) -> str | None:
    """The pid recorded by the live run holding ``folder``'s lock, or None when no run holds
    it (checked without creating or changing anything)."""
    import fcntl

    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
    finally:
        os.close(fd)
    return None


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``folder/.lock`` (``flock``, released by the kernel when the process dies) for the
    block; a second holder is refused with the first one's pid. Under torchrun rank 0 alone
    holds it (the other ranks never write the folder)."""
    import fcntl

    from deepshrink.errors import ConfigError

    if follower():
        yield
        return
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    fd = os.open(target / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise ConfigError(_busy(target, pid)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)


def _busy(folder: Path, pid: str) -> str:
    return (
        f"{folder} is in use by a running deepshrink run (pid {pid[:20]}); wait for it to end "
        "or choose another --out"
    )


def follower() -> bool:
    """Whether this is a torchrun process other than rank 0: it never writes a run folder, so it
    neither checks nor locks one (rank 0 does, and tells it the outcome)."""
    launched = all(os.environ.get(name) for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))
    return launched and os.environ["RANK"].strip() != "0"


def check_unlocked(folder: str | os.PathLike[str]) -> None:
    """Refuse a ``folder`` a live run holds (nothing is created; torchrun's rank 0 alone checks)."""
    from deepshrink.errors import ConfigError

    if follower():
        return
    pid = lock_holder(folder)
    if pid is not None:
        raise ConfigError(_busy(Path(folder), pid))


def remove_stale_tmp(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (``.name.XXXX.tmp``) an interrupted :func:`atomic_open` left
    under ``folder``; call it only while holding the folder's lock. Returns what was removed."""
    removed = []
    for path in Path(folder).rglob(".*.tmp"):
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed
