"""Root resolution, checksum cache, missing-file messages, downloads (never the network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import deepshrink.data as dsdata
from deepshrink.data import builtin, sources
from deepshrink.errors import DataError


def test_root_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPSHRINK_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.resolve_root() == tmp_path / "xdg" / "deepshrink" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert sources.resolve_root() == Path.home() / ".cache" / "deepshrink" / "datasets"
    monkeypatch.setenv("DEEPSHRINK_DATA", str(tmp_path / "env"))
    assert sources.resolve_root() == tmp_path / "env"
    assert sources.resolve_root(tmp_path / "arg") == tmp_path / "arg"


def test_digest_is_cached_per_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"aaaa")
    first = sources.file_digest(path)
    stat = path.stat()
    path.write_bytes(b"bbbb")  # same size; restore the mtime: the cached digest is returned
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sources.file_digest(path) == first
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert sources.file_digest(path) == hashlib.sha256(b"bbbb").hexdigest()


def test_unlisted_files_and_missing_sums_are_not_checked(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x")
    sources.verify_file(tmp_path / "a", tmp_path)  # no SHA256SUMS at all
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  other\n")
    sources.verify_file(tmp_path / "a", tmp_path)  # not listed


def test_malformed_checksum_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x")
    (tmp_path / "SHA256SUMS").write_text("nonsense\n")
    with pytest.raises(DataError, match="SHA256SUMS line 1"):
        sources.verify_file(tmp_path / "a", tmp_path)


def test_missing_dataset_lists_expected_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPSHRINK_DATA", str(tmp_path))
    with pytest.raises(DataError) as info:
        dsdata.load("mnist")
    message = str(info.value)
    assert "\n" not in message  # the CLI shows it as one line
    assert f"files not found in {tmp_path / 'mnist'}" in message
    for name in builtin.MNIST.md5:
        assert name in message
    assert "DEEPSHRINK_DATA" in message and "root=" in message and "download=True" in message


def _refuse(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("network is unreachable")


def test_offline_download_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _refuse)
    with pytest.raises(DataError) as info:
        dsdata.load("mnist", tmp_path, download=True)
    message = str(info.value)
    assert "could not download" in message and "network is unreachable" in message
    assert not list((tmp_path / "mnist").glob("*"))  # no partial files left behind


def test_unreachable_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(builtin.MIRRORS, "cifar10", ("http://127.0.0.1:9/",))
    monkeypatch.setattr(sources, "DOWNLOAD_TIMEOUT", 2.0)
    with pytest.raises(DataError, match="http://127.0.0.1:9/cifar-10-python.tar.gz"):
        dsdata.load("cifar10", tmp_path, download=True)


def _serve(content: bytes) -> Callable[..., io.BytesIO]:
    return lambda url, timeout=None: io.BytesIO(content)


def test_download_checks_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    content = b"payload" * 1000
    monkeypatch.setattr(urllib.request, "urlopen", _serve(content))
    target = tmp_path / "sub" / "file.gz"
    sources.download(["http://mirror/file.gz"], target, hashlib.md5(content).hexdigest())
    assert target.read_bytes() == content
    with pytest.raises(DataError, match="MD5"):
        sources.download(["http://mirror/other.gz"], tmp_path / "other.gz", "0" * 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # no temp file left


def test_download_mnist_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_idx: Callable
) -> None:
    files = {
        "train-images-idx3-ubyte.gz": np.zeros((4, 28, 28), np.uint8),
        "train-labels-idx1-ubyte.gz": np.arange(4, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": np.zeros((2, 28, 28), np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.arange(2, dtype=np.uint8),
    }
    blobs = {name: gzip.compress(make_idx(array)) for name, array in files.items()}
    md5 = {name: hashlib.md5(blob).hexdigest() for name, blob in blobs.items()}
    spec = builtin.IdxSpec("mnist", md5, 0.5, 0.5, tuple("0123456789"))
    monkeypatch.setattr(builtin, "MNIST", spec)
    opened = lambda url, timeout=None: io.BytesIO(blobs[url.rsplit("/", 1)[1]])  # noqa: E731
    monkeypatch.setattr(urllib.request, "urlopen", opened)
    data = dsdata.load("mnist", tmp_path, download=True)
    assert len(data.train) == 4 and len(data.test) == 2
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(files)


def _tar(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def test_extraction_writes_only_expected_members(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    entries = {"../escape": b"x", "/tmp/absolute": b"x", "inner/wanted": b"ok", "other": b"x"}
    archive.write_bytes(_tar(entries, links={"inner/link": "/etc/passwd"}))
    out = tmp_path / "out"
    sources.extract_members(archive, {"inner/wanted": out / "wanted"})
    assert (out / "wanted").read_bytes() == b"ok"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.tar.gz", "out", "wanted"]
    with pytest.raises(DataError, match="lacks inner/link"):
        sources.extract_members(archive, {"inner/link": out / "link"})  # a link is not a file


def test_download_cifar_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_cifar_batch: Callable
) -> None:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    entries = {f"cifar-10-batches-py/{n}": make_cifar_batch(2) for n in names}
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    entries["cifar-10-batches-py/batches.meta"] = pickle.dumps(meta, protocol=4)
    entries["cifar-10-batches-py/../../evil"] = b"x"
    archive = _tar(entries)
    monkeypatch.setattr(builtin, "CIFAR10_ARCHIVE_MD5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen", _serve(archive))
    data = dsdata.load("cifar10", tmp_path / "root", download=True)
    assert len(data.train) == 10 and len(data.test) == 2 and data.classes[1] == "c1"
    assert (tmp_path / "root" / "cifar10" / "data_batch_5").is_file()
    assert not (tmp_path / "evil").exists() and not (tmp_path / "root" / "evil").exists()
    monkeypatch.setattr(urllib.request, "urlopen", _refuse)  # archive kept: no new download
    (tmp_path / "root" / "cifar10" / "test_batch").unlink()
    assert len(dsdata.load("cifar10", tmp_path / "root", download=True).test) == 2
