"""Course budgets: every solution notebook executed top to bottom, and one student's full set autograded.

- **Execution**: each ``solutions/<id>/<id>.ipynb`` runs in a fresh kernel with ``nbclient``, in a
  temp copy of its folder and the environment nbgrader's kernels get (``execution_env``); the wall
  time counts the kernel's start, as a student's "Restart and run all" does.
- **Autograding**: the solutions are submitted as one student's notebooks and graded with
  ``dgm_course.course.grade.grade``, the function behind ``dgm-course grade`` (a fresh grading
  folder per assignment: release into a gradebook, validation, nbgrader's autograde and feedback
  in a child process, grades.csv). A solution must get full marks; its row says so.

Targets: 60 s per notebook, 90 s for notebooks 07 and 08 (the PixelCNN and VAE notebooks).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NotebookTiming", "target_seconds", "solution_ids", "execute_notebook", "autograde_student", "course_budgets"]

STUDENT = "bench-student"


def target_seconds(assignment_id: str) -> float:
    """The wall-time target of a notebook: 90 s for 07 and 08, 60 s for the others."""
    return 90.0 if assignment_id[:2] in ("07", "08") else 60.0


@dataclass
class NotebookTiming:
    """One notebook's wall times (s) against its target; ``note`` says what went wrong, if anything."""

    assignment_id: str
    target_s: float
    execute_s: float = float("nan")
    autograde_s: float = float("nan")
    score: str = ""  # "points/max" from the grades.csv row
    note: str = ""


def solution_ids(course) -> list[str]:
    """The assignments that have an executed solution ``solutions/<id>/<id>.ipynb``."""
    return [i for i in course.assignment_ids() if (course.root / course.solution_name / i / f"{i}.ipynb").is_file()]


def execute_notebook(path: Path, timeout: float = 600) -> tuple[float, str]:
    """Run the notebook at ``path`` top to bottom in a fresh kernel; ``(seconds, error or '')``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from dgm_course.course.config import execution_env

    with tempfile.TemporaryDirectory(prefix="dgm-bench-nb-") as tmp:
        work = Path(tmp) / path.parent.name
        shutil.copytree(path.parent, work)
        nb = nbformat.read(work / path.name, as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
                                resources={"metadata": {"path": str(work)}})
        error = ""
        with execution_env():
            start = time.perf_counter()
            try:
                client.execute()
            except CellExecutionError as err:
                error = str(err).strip().splitlines()[-1][:200]
            except Exception as err:  # noqa: BLE001 - a timeout or a dead kernel is a result, not a crash
                error = f"{type(err).__name__}: {str(err)[:200]}"
            seconds = time.perf_counter() - start
    return seconds, error


def autograde_student(course, ids: list[str], work: Path) -> dict[str, tuple[float, dict]]:
    """Grade the solutions of ``ids`` as one student's submissions; ``{id: (seconds, grades.csv row)}``.

    A grading run that raises gets a row of status ``error`` with the exception as its reason.
    """
    from dgm_course.course.grade import grade

    submitted = work / "submitted"
    for assignment_id in ids:
        folder = submitted / STUDENT / assignment_id
        folder.mkdir(parents=True)
        shutil.copy(course.root / course.solution_name / assignment_id / f"{assignment_id}.ipynb", folder)
    out = {}
    for assignment_id in ids:
        start = time.perf_counter()
        try:
            row = grade(course, assignment_id, submitted, work / "grading" / assignment_id, progress=False,
                        log=lambda _: None)[0]
        except Exception as err:  # noqa: BLE001 - a grader that cannot run is a result of the benchmark
            row = {"status": "error", "reason": f"{type(err).__name__}: {str(err)[:200]}", "score": "",
                   "max_score": ""}
        out[assignment_id] = (time.perf_counter() - start, row)
    return out


def _points(value: object) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value or "?")


def course_budgets(root: Path, first: bool = False, log: Callable[[str], None] = print) -> list[NotebookTiming]:
    """Execute and autograde the solutions of the course at ``root`` (only the first with ``first``)."""
    from dgm_course.course.config import Course

    course = Course.load(root)
    ids = solution_ids(course)
    if first:
        ids = ids[:1]
    timings = {i: NotebookTiming(i, target_seconds(i)) for i in ids}
    for assignment_id, timing in timings.items():
        log(f"executing solutions/{assignment_id}")
        timing.execute_s, error = execute_notebook(course.root / course.solution_name / assignment_id / f"{assignment_id}.ipynb")
        if error:
            timing.note = f"execution failed: {error}"
    log(f"autograding {len(ids)} solution notebook(s) as one student")
    with tempfile.TemporaryDirectory(prefix="dgm-bench-grade-") as tmp:
        for assignment_id, (seconds, row) in autograde_student(course, ids, Path(tmp)).items():
            timing = timings[assignment_id]
            timing.autograde_s = seconds
            timing.score = f"{_points(row['score'])}/{_points(row['max_score'])}"
            if row["status"] != "graded":
                timing.note = "; ".join(filter(None, [timing.note, f"autograde {row['status']}: {row['reason']}"]))
            elif row["score"] != row["max_score"]:
                timing.note = "; ".join(filter(None, [timing.note, "the solution does not get full marks"]))
    return list(timings.values())
