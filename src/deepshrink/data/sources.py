"""Where dataset files live, how they are checked, and how they are fetched.

* Root: the ``root`` argument, else the ``DEEPSHRINK_DATA`` environment variable, else the per-user
  cache ``$XDG_CACHE_HOME/deepshrink/datasets`` (``~/.cache/deepshrink/datasets``).
* Checksums: when ``<root>/SHA256SUMS`` exists (``sha256sum`` format, paths relative to the
  root), every file read that it lists is hashed and compared. Digests are cached in memory per
  (path, size, mtime), so loading the same dataset twice in one process hashes it once.
* Downloads: plain ``urllib`` into a temporary file next to the target, checked against the
  official MD5 published with the dataset, then renamed into place.

Written by hand because the standard library already does the hard parts (hashlib, urllib,
tarfile) and the rules (search order, messages, safe extraction) are ours.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tarfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from deepshrink._io import atomic_open
from deepshrink.errors import DataError

logger = logging.getLogger(__name__)

#: Environment variable naming the dataset root folder.
ENVIRONMENT_VARIABLE = "DEEPSHRINK_DATA"
#: Name of the optional checksum list at the root (output of ``sha256sum``).
CHECKSUM_FILE = "SHA256SUMS"
#: Seconds to wait for a download server before giving up.
DOWNLOAD_TIMEOUT = 30.0

_CHUNK = 1 << 20
_digest_cache: dict[tuple[str, str, int, int], str] = {}
_sums_cache: dict[tuple[str, int, int], dict[str, str]] = {}
_cache_lock = threading.Lock()


def default_root() -> Path:
    """The per-user dataset cache, honouring ``XDG_CACHE_HOME``.

    >>> default_root().parts[-2:]
    ('deepshrink', 'datasets')
    """
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "deepshrink" / "datasets"


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The dataset root: ``root`` if given, else ``$DEEPSHRINK_DATA``, else :func:`default_root`.

    >>> resolve_root("/tmp/data").as_posix()
    '/tmp/data'
    """
    if root is not None:
        return Path(root).expanduser()
    from_env = os.environ.get(ENVIRONMENT_VARIABLE)
    if from_env:
        return Path(from_env).expanduser()
    return default_root()


def describe_root(root: str | os.PathLike[str] | None) -> str:
    """Where :func:`resolve_root` took its answer from, for error messages."""
    if root is not None:
        return "the root= argument"
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return f"the {ENVIRONMENT_VARIABLE} environment variable"
    return f"the per-user cache ({ENVIRONMENT_VARIABLE} is not set)"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks; cached per (path, size, mtime).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a"
    >>> _ = p.write_bytes(b"abc")
    >>> file_digest(p)[:16]
    'ba7816bf8f01cfea'
    """
    stat = path.stat()
    key = (algorithm, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        if key in _digest_cache:
            return _digest_cache[key]
    digest = hashlib.new(algorithm, usedforsecurity=False)  # integrity check, not a secret
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    with _cache_lock:
        _digest_cache[key] = hexdigest
    return hexdigest


def read_checksums(root: Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` from ``root/SHA256SUMS``; empty if there is none."""
    path = root / CHECKSUM_FILE
    try:
        stat = path.stat()
    except OSError:
        return {}
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        if key in _sums_cache:
            return _sums_cache[key]
    sums = _parse_checksums(path)
    with _cache_lock:
        _sums_cache[key] = sums
    return sums


def _parse_checksums(path: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().removeprefix("*").removeprefix("./")
        if len(digest) != 64 or not name:
            raise DataError(
                f"{path} line {number} is not '<sha256>  <path>': {line!r}; "
                "fix or delete the checksum file"
            )
        sums[name] = digest.lower()
    return sums


def verify_file(path: Path, root: Path) -> None:
    """Check ``path`` against ``root/SHA256SUMS`` when that file lists it; else do nothing.

    >>> import hashlib, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "a.bin").write_bytes(b"data")
    >>> _ = (root / "SHA256SUMS").write_text(hashlib.sha256(b"data").hexdigest() + "  a.bin")
    >>> verify_file(root / "a.bin", root)  # passes silently; a mismatch raises DataError
    """
    sums = read_checksums(root)
    if not sums:
        return
    # Relative to the root as the user laid it out (symlinked sub-folders still match).
    try:
        relative = Path(os.path.relpath(path.absolute(), root.absolute())).as_posix()
    except ValueError:  # another drive (Windows): not under the root
        return
    expected = sums.get(relative)
    if expected is None:
        logger.debug("%s is not listed in %s; not verified", path, root / CHECKSUM_FILE)
        return
    actual = file_digest(path)
    if actual != expected:
        raise DataError(
            f"checksum mismatch for {path}: {root / CHECKSUM_FILE} expects SHA-256 {expected}, "
            f"the file has {actual}. The file is corrupted or was changed; delete it and fetch "
            "it again (download=True), or restore it from its source"
        )


def find_file(folders: Sequence[Path], names: Sequence[str]) -> Path | None:
    """The first ``folder/name`` that exists, trying every folder for each name in turn."""
    for name in names:
        for folder in folders:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def missing_files_error(
    dataset: str, folder: Path, missing: Iterable[str], root_arg: object, hint: str = ""
) -> DataError:
    """A :class:`DataError` listing the files not found and the three ways to fix it."""
    listing = ", ".join(missing)
    return DataError(
        f"{dataset}: files not found in {folder} (root from {describe_root(root_arg)}): "
        f"{listing}. {hint}"
        f"Fix: pass root= (CLI: --data-root) a folder holding {folder.name}/, set "
        f"{ENVIRONMENT_VARIABLE} to it, or pass download=True to fetch the official files "
        f"into {folder.parent}"
    )


def download(urls: Sequence[str], target: Path, md5: str) -> Path:
    """Fetch the first reachable URL to ``target`` (temp file + rename) and check its MD5.

    Raises :class:`DataError` when no URL works (offline, server down) or the MD5 differs.
    """
    _check_writable(target.parent)
    errors: list[str] = []
    for url in urls:
        try:
            _fetch(url, target, md5)
            return target
        except (
            DataError,
            urllib.error.URLError,
            OSError,
            http.client.HTTPException,
            ValueError,
        ) as exc:
            logger.warning("download of %s failed: %s", url, exc)
            errors.append(f"  {url}: {exc}")
    tried = "\n".join(errors)
    raise DataError(
        f"could not download {target.name}; tried:\n{tried}\n"
        "Check the network connection (or proxy settings), or fetch the file by hand and put "
        f"it at {target}"
    )


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the download folder {folder}: {exc}; pass root= a writable folder "
            f"or set {ENVIRONMENT_VARIABLE} to one"
        ) from exc
    if not os.access(folder, os.W_OK):
        raise DataError(
            f"cannot download into {folder}: it is not writable; pass root= a writable folder "
            f"or set {ENVIRONMENT_VARIABLE} to one"
        )


def _fetch(url: str, target: Path, md5: str) -> None:
    logger.info("downloading %s to %s", url, target)
    digest = hashlib.md5(usedforsecurity=False)
    with (
        urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response,
        atomic_open(target, "wb") as out,
    ):
        while chunk := response.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != md5:
            # Raised inside atomic_open, so the temporary file is removed, never renamed.
            raise DataError(
                f"{url} gave a file with MD5 {digest.hexdigest()}, expected {md5}; the download "
                "is corrupted or the server changed it. Try again later or fetch it by hand"
            )


def check_md5(path: Path, md5: str) -> bool:
    """Whether ``path`` exists and has the given MD5."""
    return path.is_file() and file_digest(path, "md5") == md5


def extract_members(archive: Path, members: dict[str, Path]) -> None:
    """Extract only the named regular files of a tar archive to the given paths.

    ``members`` maps member names inside the archive to target paths. Nothing else in the
    archive is read, so absolute paths, ``..`` or links in it cannot write anywhere.
    """
    found: set[str] = set()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                target = members.get(member.name)
                if target is None or not member.isfile():
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source, atomic_open(target, "wb") as out:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
                found.add(member.name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(
            f"cannot extract {archive}: {exc}; delete it and download it again"
        ) from exc
    absent = sorted(set(members) - found)
    if absent:
        raise DataError(f"{archive} lacks {', '.join(absent)}; delete it and download it again")
