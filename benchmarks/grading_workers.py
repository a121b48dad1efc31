"""Speed-up of ``dgm-course grade --workers N``: one batch of notebook 01 graded with 1, 2 and 4 workers.

    python -m benchmarks.grading_workers [--students 20] [--workers 1 2 4] [--assignment ID]

The batch: ``--students`` submissions made from the committed files, two of every three the
executed solution and the third the untouched release (a class hands in mostly finished work). Each
run grades the whole batch into a fresh grading folder, with the same grading key, and reports the
wall time, the CPU time of the grader and of every process it started (sandboxed verifier workers,
nbgrader's in-kernel runs and their kernels), and the speed-up over the first run. The grades must
not depend on the number of workers: the script checks that every run gives the same rows (the
in-kernel columns, which a timeout of that run could change on a loaded machine, aside).

The machine's load average is printed with the table: on a shared machine, the wall times say more
about the other users than about the grader, and the CPU times are the figures to compare.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from dgm_course.course.config import Course
from dgm_course.course.grade import grade

ROOT = Path(__file__).resolve().parents[1]
IN_KERNEL = ("in_kernel_score", "in_kernel_status", "flags")


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def submissions(course: Course, assignment_id: str, folder: Path, students: int) -> None:
    """``students`` submissions: two of every three the executed solution, every third the release."""
    name = f"{assignment_id}.ipynb"
    for i in range(students):
        kind = course.release_name if i % 3 == 2 else course.solution_name
        target = folder / f"student{i:02d}" / assignment_id
        target.mkdir(parents=True)
        shutil.copy(course.root / kind / assignment_id / name, target / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--assignment", default="01_change_of_variables")
    args = parser.parse_args(argv)
    course = Course.load(ROOT)
    with tempfile.TemporaryDirectory(prefix="dgm-grading-workers-") as tmp:
        tmp = Path(tmp)
        submissions(course, args.assignment, tmp / "submitted", args.students)
        key = None
        results = []
        for workers in args.workers:
            out = tmp / f"grading-{workers}"
            out.mkdir()
            if key is not None:  # one key for all runs: the same seeds, so the same grades
                (out / "grading_key.txt").write_text(key)
            load = os.getloadavg()[0]
            wall, cpu = time.monotonic(), _cpu()
            rows = grade(course, args.assignment, tmp / "submitted", out, workers=workers, progress=False,
                         log=lambda _: None)
            wall, cpu = time.monotonic() - wall, _cpu() - cpu
            key = (out / "grading_key.txt").read_text()
            results.append((workers, wall, cpu, load, rows))
            print(f"workers {workers}: {wall:.0f} s wall, {cpu:.0f} s CPU, load average {load:.1f} before", flush=True)
    base = results[0][1]
    print(f"\n{args.students} submissions of {args.assignment} "
          f"({sum(r['score'] == r['max_score'] for r in results[0][4])} with full marks)")
    print("| workers | wall (s) | CPU (s) | speed-up (wall) | load average before |")
    print("|---|---|---|---|---|")
    for workers, wall, cpu, load, _ in results:
        print(f"| {workers} | {wall:.0f} | {cpu:.0f} | {base / wall:.2f} | {load:.1f} |")
    grades = [[{k: v for k, v in row.items() if k not in IN_KERNEL} for row in r[4]] for r in results]
    same = all(g == grades[0] for g in grades)
    print(f"\nthe same grades with every number of workers: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
