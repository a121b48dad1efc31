"""Run the sync check and nbval over every notebook, idle and under load; print a table.

The load is one busy process per core (``os.cpu_count()``), started before the run and killed
after it. See ``scripts/determinism`` for the command.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/course/test_sync.py::test_release_and_solution_equal_a_fresh_build",
         "tests/course/test_nbval.py::test_solution_reproduces_its_outputs_under_nbval"]


def _burn() -> None:
    while True:
        pass


def run_phase(name: str, burners: int, pytest_args: list[str]) -> dict:
    """The two tests in a child pytest, with ``burners`` busy processes beside it."""
    procs = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(burners)]
    for proc in procs:
        proc.start()
    try:
        start = time.perf_counter()
        child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS, *pytest_args],
                               cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        load = os.getloadavg()[0]
    finally:
        for proc in procs:
            proc.kill()
    summary = child.stdout.strip().splitlines()[-1] if child.stdout.strip() else child.stderr[-500:]
    if child.returncode != 0:
        print(child.stdout[-8000:], child.stderr[-2000:], sep="\n", file=sys.stderr)
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error)", summary)}
    return {"phase": name, "burners": burners, "load average (1 min)": f"{load:.1f}", "passed": counts.get("passed", 0),
            "failed": counts.get("failed", 0) + counts.get("error", 0), "wall s": f"{wall:.0f}",
            "ok": child.returncode == 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=["idle", "loaded", "both"], default="both")
    args, pytest_args = parser.parse_known_args()
    phases = [("idle", 0), ("loaded", os.cpu_count() or 2)]
    rows = [run_phase(name, burners, pytest_args) for name, burners in phases if args.phase in (name, "both")]
    sys.path.insert(0, str(ROOT))
    from dgm_course.course.report import format_table

    print(format_table(rows))
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
