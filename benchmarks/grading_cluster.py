"""``dgm-course grade`` on a Dask LocalCluster against the same number of local worker threads, and the
cluster a whole cohort needs.

    python -m benchmarks.grading_cluster [--n 200] [--workers 2] [--assignment ID]

The batch is ``--n`` submissions of the assignment made from the committed files (two of every
three the executed solution, every third the release: :func:`benchmarks.grading_workers.submissions`),
graded twice with one grading key: with ``--workers`` threads of the grading process, then on a
``LocalCluster`` of as many single-threaded worker processes (``--cluster local:N``), its start and
stop included. For each: wall seconds, CPU seconds of the grader and of every process it started
(children included), and whether the grades equal the local run's (in-kernel columns aside).

Then the estimate, with its arithmetic: the cluster size that grades 500 students x 8 notebooks
within an hour, from the measured CPU per submission, the cost of the other notebooks relative to
this one (the README's course budgets), and how busy the LocalCluster kept its cores.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from dgm_course.course.config import Course

from .grading_workers import ROOT, Run, comparable, submissions, timed_grade

# One student's autograding wall time on the idle 2-core machine, from the README's course budgets
# (2026-11-28): notebook 01 alone, and the eight notebooks together.
NOTEBOOK_01_S, ALL_NOTEBOOKS_S = 14.8, 177.4
COHORT, NOTEBOOKS, DEADLINE_S = 500, 8, 3600


def estimate(run: Run, n: int, workers: int) -> list[str]:
    """The lines of the cluster-size estimate, each with its arithmetic."""
    per_01 = run.cpu / n
    ratio = ALL_NOTEBOOKS_S / NOTEBOOK_01_S
    per_student = per_01 * ratio
    total = COHORT * per_student
    busy = min(1.0, run.cpu / (run.wall * workers))
    cores = math.ceil(total / (DEADLINE_S * busy))
    return [
        f"- CPU per submission of notebook 01: {run.cpu:.0f} s / {n} = {per_01:.1f} s",
        f"- the eight notebooks cost {ALL_NOTEBOOKS_S} / {NOTEBOOK_01_S} = {ratio:.2f} times notebook 01 (README, course "
        f"budgets): {per_01:.1f} x {ratio:.2f} = {per_student:.0f} s of CPU per student",
        f"- {COHORT} students x {NOTEBOOKS} notebooks = {COHORT * NOTEBOOKS} submissions: {COHORT} x {per_student:.0f} s "
        f"= {total:.0f} s = {total / 3600:.1f} CPU-hours",
        f"- at full use of every core: {total:.0f} / {DEADLINE_S} = {total / DEADLINE_S:.1f}, so at least "
        f"{math.ceil(total / DEADLINE_S)} single-threaded workers (one core each)",
        f"- the LocalCluster kept its cores {run.cpu:.0f} / ({run.wall:.0f} x {workers}) = {busy:.0%} busy (start, "
        f"stop, the last students' tail, and any other load on the machine): {total:.0f} / ({DEADLINE_S} x "
        f"{busy:.2f}) = {total / (DEADLINE_S * busy):.1f}, so **{cores} workers** (e.g. {math.ceil(cores / 16)} "
        f"machines of 16 cores) and the scheduler; memory: plan up to 12 GiB per worker (the sandbox's 4 GiB "
        f"per process for the verifier, nbgrader and its kernel)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="submissions in the batch (default: 200)")
    parser.add_argument("--workers", type=int, default=2, help="local threads and LocalCluster workers (default: 2)")
    parser.add_argument("--assignment", default="01_change_of_variables")
    args = parser.parse_args(argv)
    course = Course.load(ROOT)
    modes = [("local workers", {"workers": args.workers}), ("LocalCluster", {"cluster": f"local:{args.workers}"})]
    runs: list[tuple[str, Run]] = []
    with tempfile.TemporaryDirectory(prefix="dgm-grading-cluster-") as tmp:
        tmp = Path(tmp)
        submissions(course, args.assignment, tmp / "submitted", args.n)
        key = None
        for index, (mode, options) in enumerate(modes):
            run = timed_grade(course, args.assignment, tmp / "submitted", tmp / f"grading-{index}", key, **options)
            key = run.key
            runs.append((mode, run))
            print(f"{mode}: {run.wall:.0f} s wall, {run.cpu:.0f} s CPU, load average {run.load:.1f} before", flush=True)
    reference = comparable(runs[0][1].rows)
    full = sum(r["score"] == r["max_score"] for r in runs[0][1].rows)
    print(f"\n{args.n} submissions of {args.assignment} ({full} with full marks), {args.workers} workers")
    print("| mode | N | wall (s) | CPU (s, children included) | grades identical | load average before |")
    print("|---|---|---|---|---|---|")
    for mode, run in runs:
        same = "yes" if comparable(run.rows) == reference else "NO"
        print(f"| {mode} | {args.n} | {run.wall:.0f} | {run.cpu:.0f} | {same} | {run.load:.1f} |")
    print(f"\nCluster size for {COHORT} students x {NOTEBOOKS} notebooks within one hour:")
    print("\n".join(estimate(runs[1][1], args.n, args.workers)))
    return 0 if all(comparable(run.rows) == reference for _, run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
