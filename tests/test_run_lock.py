"""The run-folder lock: one live run per folder; a second ``run``/``--resume`` is refused with
the live run's pid, and the lock goes with the process that held it (even killed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepshrink import _io
from deepshrink.cli import main
from deepshrink.errors import ConfigError

HOLDER = """\
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\\n".encode())
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_holder_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with _io.folder_lock(tmp_path):
        assert _io.lock_holder(tmp_path) == str(os.getpid())
        busy = pytest.raises(ConfigError, match=rf"in use .*pid {os.getpid()}")
        with busy, _io.folder_lock(tmp_path):
            pass
    assert _io.lock_holder(tmp_path) is None  # released at the end of the block
    with _io.folder_lock(tmp_path):  # and can be taken again
        pass


def test_a_run_beside_a_live_process_is_refused_and_the_lock_dies_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nname: lock\nlatency: false\nmodel: {zoo: digits_mlp}\n"
        "data: {name: digits, train_limit: 32, test_limit: 32}\nstages: [evaluate]\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out / _io.LOCK)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for extra in ([], ["--resume"]):
            assert main(["run", str(recipe), "--out", str(out), *extra]) == 2
            err = capsys.readouterr().err
            assert f"in use by a running deepshrink run (pid {holder.pid})" in err, err
        assert sorted(p.name for p in out.iterdir()) == [_io.LOCK]  # nothing else written
    finally:
        holder.kill()  # like kill -9: the kernel drops the lock with the process
        holder.wait()
    assert _io.lock_holder(out) is None
    with _io.folder_lock(out):  # free again: a --resume would now run
        assert _io.lock_holder(out) == str(os.getpid())


def test_a_lock_file_left_by_a_finished_run_does_not_count_as_content(tmp_path: Path) -> None:
    from deepshrink.recipe.run import check_out

    (tmp_path / _io.LOCK).write_text("12345\n")
    assert check_out(tmp_path, "digest", resume=False) is None
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        check_out(tmp_path, "digest", resume=False)
