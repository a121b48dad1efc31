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
from dataclasses import dataclass
from pathlib import Path

from dgm_course.course.config import Course
from dgm_course.course.grade import grade

ROOT = Path(__file__).resolve().parents[1]
IN_KERNEL = ("in_kernel_score", "in_kernel_status", "flags")


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def comparable(rows: list[dict]) -> list[dict]:
    """The rows without the in-kernel columns: the grades that must not depend on how they were run."""
    return [{k: v for k, v in row.items() if k not in IN_KERNEL} for row in rows]


def submissions(course: Course, assignment_id: str, folder: Path, students: int) -> None:
    """``students`` submissions: two of every three the executed solution, every third the release."""
    name = f"{assignment_id}.ipynb"
    for i in range(students):
        kind = course.release_name if i % 3 == 2 else course.solution_name
        target = folder / f"student{i:02d}" / assignment_id
        target.mkdir(parents=True)
        shutil.copy(course.root / kind / assignment_id / name, target / name)


@dataclass
class Run:
    """One grading of the batch: wall and CPU seconds (children included), the load average just
    before, the rows, and the grading key it used."""

    wall: float
    cpu: float
    load: float
    rows: list[dict]
    key: str


NONCE = "benchmark"  # every run of a benchmark: with its one key, each student's inputs are the same


def timed_grade(course: Course, assignment_id: str, submitted: Path, out: Path, key: str | None,
                **options) -> Run:
    """Grade ``submitted`` into a fresh ``out`` with grading key ``key`` (``None``: a new one), timed.

    The CPU time counts the grader's child processes once they have ended: everything grading
    started (threads' sandboxes, a LocalCluster's worker processes) has ended when it returns."""
    out.mkdir()
    if key is not None:  # one key (and one nonce) for all runs: the same seeds, so the same grades
        (out / "grading_key.txt").write_text(key)
    load = os.getloadavg()[0]
    wall, cpu = time.monotonic(), _cpu()
    rows = grade(course, assignment_id, submitted, out, progress=False, log=lambda _: None, nonce=NONCE, **options)
    return Run(time.monotonic() - wall, _cpu() - cpu, load, rows, (out / "grading_key.txt").read_text())


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
            run = timed_grade(course, args.assignment, tmp / "submitted", tmp / f"grading-{workers}", key,
                              workers=workers)
            key = run.key
            results.append((workers, run))
            print(f"workers {workers}: {run.wall:.0f} s wall, {run.cpu:.0f} s CPU, load average {run.load:.1f} before",
                  flush=True)
    base = results[0][1].wall
    print(f"\n{args.students} submissions of {args.assignment} "
          f"({sum(r['score'] == r['max_score'] for r in results[0][1].rows)} with full marks)")
    print("| workers | wall (s) | CPU (s) | speed-up (wall) | load average before |")
    print("|---|---|---|---|---|")
    for workers, run in results:
        print(f"| {workers} | {run.wall:.0f} | {run.cpu:.0f} | {base / run.wall:.2f} | {run.load:.1f} |")
    grades = [comparable(run.rows) for _, run in results]
    same = all(g == grades[0] for g in grades)
    print(f"\nthe same grades with every number of workers: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
