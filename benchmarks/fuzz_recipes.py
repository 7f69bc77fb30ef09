"""Malformed recipes and careless command lines, each run as a real ``deepshrink`` process.

Every case of ``tests/recipe/hostile/corpus.py`` must exit with code 2, print exactly one
``error:`` line of at most 300 characters that names the key path (or the option), show no
traceback, write nothing (the case folder, which holds ``--out`` and is the working directory,
is unchanged) and stay within 500 MB of peak memory and 5 s of CPU time beyond the start of the
program (the child's own ``ru_maxrss`` and ``ru_utime + ru_stime`` from ``os.wait4``, less the
median CPU time of three ``deepshrink --version`` runs: ``import deepshrink`` imports torch,
about 4 s of CPU on a busy 2-core machine before any recipe is read). Total CPU and wall time are
recorded too; on a shared machine wall time mostly measures the queue for a core.

    python benchmarks/fuzz_recipes.py                 # every case
    python benchmarks/fuzz_recipes.py --only seed     # cases whose name contains "seed"
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CPU_BUDGET_S = 5.0
MEMORY_BUDGET_MB = 500.0
LINE_LIMIT = 300
HANG_S = 120.0


def _corpus() -> Any:
    spec = importlib.util.spec_from_file_location(
        "hostile_corpus", ROOT / "tests" / "recipe" / "hostile" / "corpus.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["hostile_corpus"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def launch(argv: list[str], cwd: Path, as_nobody: bool = False) -> dict[str, Any]:
    """Run ``python -m deepshrink.cli *argv``; exit code, output, CPU, wall and peak memory."""
    command = [sys.executable, "-m", "deepshrink.cli", *argv]
    if as_nobody:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DEEPSHRINK_ALLOW_CODE": ""}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, env=env)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - began > HANG_S:
                child.kill()
            time.sleep(0.02)
        wall = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        return {
            "rc": child.returncode,
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "wall_s": wall,
            "maxrss_mb": usage.ru_maxrss / 1024,
        }


def check(case: Any, corpus: Any, startup_cpu: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-recipe-"))
    os.chmod(folder, 0o755)
    try:
        with corpus.prepared(case, folder) as argv:
            before = corpus.snapshot(folder)
            nobody = case.setup == "out_unwritable" and os.geteuid() == 0
            result = launch(argv, folder, as_nobody=nobody)
            after = corpus.snapshot(folder)
    finally:
        os.chmod(folder, 0o755)
        for sub in folder.rglob("*"):
            if sub.is_dir():
                os.chmod(sub, 0o755)
        shutil.rmtree(folder, ignore_errors=True)
    lines = corpus.error_lines(result["stderr"])
    line = lines[0] if lines else ""
    failures = []
    if result["rc"] != 2:
        failures.append(f"exit {result['rc']}")
    if len(lines) != 1:
        failures.append(f"{len(lines)} error lines")
    if "Traceback" in result["stderr"]:
        failures.append("traceback")
    if len(line) > LINE_LIMIT:
        failures.append(f"line of {len(line)} characters")
    failures += [f"no {f!r}" for f in case.expect if f not in line]
    if after != before:
        changed = sorted(set(after.items()) ^ set(before.items()))
        failures.append(f"wrote {[name for name, _ in changed][:5]}")
    if result["cpu_s"] - startup_cpu > CPU_BUDGET_S:
        failures.append(f"{result['cpu_s']:.1f} s CPU ({startup_cpu:.1f} s to start)")
    if result["maxrss_mb"] > MEMORY_BUDGET_MB:
        failures.append(f"{result['maxrss_mb']:.0f} MB")
    return {
        "case": case.name,
        "command": case.command,
        "rc": result["rc"],
        "line": line,
        "line_chars": len(line),
        "cpu_s": round(result["cpu_s"], 3),
        "cpu_beyond_start_s": round(result["cpu_s"] - startup_cpu, 3),
        "wall_s": round(result["wall_s"], 3),
        "maxrss_mb": round(result["maxrss_mb"], 1),
        "ok": not failures,
        "failures": failures,
        "stderr_tail": "" if not failures else result["stderr"][-600:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--name", default="fuzz_recipes", help="results/<name>.json")
    options = parser.parse_args()
    corpus = _corpus()
    cases = [c for c in corpus.cases() if options.only in c.name]
    load_before = os.getloadavg()
    starts = sorted((launch(["--version"], ROOT) for _ in range(3)), key=lambda r: r["cpu_s"])
    startup = starts[1]
    rows = []
    for case in cases:
        row = check(case, corpus, startup["cpu_s"])
        rows.append(row)
        mark = "ok " if row["ok"] else "BAD"
        print(f"{mark} {row['case']:<28} cpu {row['cpu_s']:5.2f}s wall {row['wall_s']:6.2f}s "
              f"{row['maxrss_mb']:6.0f} MB  {row['line'][:110]}", flush=True)  # fmt: skip
        for failure in row["failures"]:
            print(f"      {failure}", flush=True)
    bad = [r["case"] for r in rows if not r["ok"]]
    summary = {
        "cases": len(rows),
        "passed": len(rows) - len(bad),
        "failed": bad,
        "max_cpu_s": max(r["cpu_s"] for r in rows),
        "median_cpu_s": sorted(r["cpu_s"] for r in rows)[len(rows) // 2],
        "max_cpu_beyond_start_s": max(r["cpu_beyond_start_s"] for r in rows),
        "max_wall_s": max(r["wall_s"] for r in rows),
        "max_rss_mb": max(r["maxrss_mb"] for r in rows),
        "max_line_chars": max(r["line_chars"] for r in rows),
        "budgets": {"cpu_s": CPU_BUDGET_S, "rss_mb": MEMORY_BUDGET_MB, "line": LINE_LIMIT},
        "startup_version_median_of_3": {k: startup[k] for k in ("cpu_s", "wall_s", "maxrss_mb")},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "euid": os.geteuid(),
    }
    path = write_result(options.name, {"summary": summary, "rows": rows})
    print(f"{summary['passed']}/{summary['cases']} cases kept the contract; wrote {path}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
