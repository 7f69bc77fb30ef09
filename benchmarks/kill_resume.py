"""``kill -9`` a small recipe at random moments, resume it, and compare with an uninterrupted run.

One reference run goes uninterrupted. Then, ``--kills`` times, the same recipe runs into a new
folder and is killed with SIGKILL at a moment drawn uniformly over the reference's writing
window (from the run folder's creation to the end); ``deepshrink run --resume`` then finishes it.
Each resumed run must give a ``metrics.json`` identical to the reference (run-folder paths
normalised) and leave no ``.tmp`` file. Finally a second ``--resume`` started beside a live run
on the same folder must be refused (exit 2, one line naming the live pid).

    python benchmarks/kill_resume.py --kills 20 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = """\
version: 1
name: kill_resume
latency: false
model: {zoo: digits_mlp}
data: {name: digits, train_limit: 512, test_limit: 128}
stages:
  - train: {epochs: 3, batch_size: 32}
  - prune: {method: magnitude, sparsity: 0.7}
  - fine_tune: {epochs: 1, batch_size: 32, lr: 0.01}
  - quantize: {method: kmeans, bits: 5}
  - encode: {file: model.dsz}
"""


def _start(recipe: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "deepshrink.cli", "-q", "run", str(recipe),
               "--out", str(out), *extra]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _metrics(out: Path) -> Any:
    text = (out / "metrics.json").read_text(encoding="utf-8")
    return json.loads(text.replace(str(out), "<out>"))


def _tmp_files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*.tmp"))


def _wait_for(path: Path, child: subprocess.Popen[str]) -> float:
    began = time.perf_counter()
    while not path.exists() and child.poll() is None:
        time.sleep(0.005)
    return time.perf_counter() - began


def reference(recipe: Path, out: Path) -> tuple[Any, float]:
    child = _start(recipe, out)
    _wait_for(out, child)
    began = time.perf_counter()
    _, err = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"the reference run failed:\n{err}")
    return _metrics(out), time.perf_counter() - began


def killed_and_resumed(recipe: Path, out: Path, delay: float, expected: Any) -> dict[str, Any]:
    child = _start(recipe, out)
    _wait_for(out, child)
    time.sleep(delay)
    finished_first = child.poll() is not None
    if not finished_first:
        os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    left = _tmp_files(out) if out.exists() else []
    done = 0
    if (out / "state.json").is_file():
        done = len(json.loads((out / "state.json").read_text())["done"])
    resumed = _start(recipe, out, "--resume")
    _, err = resumed.communicate()
    identical = resumed.returncode == 0 and _metrics(out) == expected
    return {
        "delay_s": round(delay, 3),
        "finished_before_kill": finished_first,
        "stages_done_at_kill": done,
        "tmp_files_at_kill": left,
        "resume_exit": resumed.returncode,
        "identical_metrics": identical,
        "tmp_files_after": _tmp_files(out),
        "stderr_tail": err[-400:] if resumed.returncode else "",
    }


def concurrent(recipe: Path, out: Path) -> dict[str, Any]:
    """A second ``--resume`` on the folder of a live run (a long one: the second process takes
    many seconds to start on a busy machine); the first is killed once the second has ended."""
    long = recipe.with_name("long.yaml")
    long.write_text(RECIPE.replace("epochs: 3,", "epochs: 200,"))
    first = _start(long, out)
    _wait_for(out / ".lock", first)
    second = _start(long, out, "--resume")
    _, err = second.communicate()
    first_running = first.poll() is None
    first.kill()
    first.communicate()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    return {
        "second_exit": second.returncode,
        "second_line": lines[0] if lines else err[-300:],
        "names_live_pid": f"pid {first.pid}" in (lines[0] if lines else ""),
        "first_still_running_when_refused": first_running,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only-concurrent", action="store_true", help="rerun only the concurrent-run check"
    )
    options = parser.parse_args()
    if options.only_concurrent:
        return only_concurrent()
    draw = random.Random(options.seed)
    work = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    recipe = work / "recipe.yaml"
    recipe.write_text(RECIPE)
    load_before = os.getloadavg()
    try:
        expected, window = reference(recipe, work / "reference")
        print(f"reference: writing window {window:.1f}s", flush=True)
        rows = []
        for index in range(options.kills):
            row = killed_and_resumed(recipe, work / f"kill{index:02d}",
                                     draw.uniform(0, window), expected)  # fmt: skip
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "stderr_tail"}), flush=True)
        lock = concurrent(recipe, work / "concurrent")
        print(json.dumps(lock), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "kills": len(rows),
        "identical": sum(r["identical_metrics"] for r in rows),
        "killed_mid_run": sum(not r["finished_before_kill"] for r in rows),
        "kills_that_left_tmp": sum(bool(r["tmp_files_at_kill"]) for r in rows),
        "tmp_left_after_resume": sum(bool(r["tmp_files_after"]) for r in rows),
        "concurrent_refused": lock["second_exit"] == 2 and lock["names_live_pid"],
        "reference_window_s": round(window, 2),
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    path = write_result("kill_resume", {"summary": summary, "rows": rows, "concurrent": lock,
                                        "recipe": RECIPE, "seed": options.seed})  # fmt: skip
    print(json.dumps(summary), f"wrote {path}", sep="\n")
    ok = summary["identical"] == len(rows) and not summary["tmp_left_after_resume"]
    sys.exit(0 if ok and summary["concurrent_refused"] else 1)


def only_concurrent() -> None:
    from _common import RESULTS

    work = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    try:
        (work / "recipe.yaml").write_text(RECIPE)
        lock = concurrent(work / "recipe.yaml", work / "concurrent")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = RESULTS / "kill_resume.json"
    body = json.loads(path.read_text())
    body["concurrent"] = lock
    body["concurrent_command"] = "python benchmarks/kill_resume.py --only-concurrent"
    body["summary"]["concurrent_refused"] = lock["second_exit"] == 2 and lock["names_live_pid"]
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    print(json.dumps(lock))
    sys.exit(0 if body["summary"]["concurrent_refused"] else 1)


if __name__ == "__main__":
    main()
