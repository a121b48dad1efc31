"""The course end to end: build every assignment, then grade two sample students on each.

A temp course folder gets, per assignment, the submissions of two students: ``ada`` hands in the
solution, ``bob`` the untouched release. They are graded on the embedded sqlite gradebook, and
the scores are printed: full marks for ada, 0 for bob.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .build import build
from .config import Course

__all__ = ["SAMPLE_STUDENTS", "demo"]

SAMPLE_STUDENTS = {"ada": "solution", "bob": "release"}  # student id -> what the student hands in


def demo(course: Course, out: Path | None = None, log: Callable[[str], None] = print) -> dict[str, list[dict]]:
    """Build all assignments, grade the sample students, print and return the rows per assignment."""
    from .cli import format_table
    from .grade import grade

    ids = course.resolve(None)
    build(course, ids, log=log)
    with tempfile.TemporaryDirectory(prefix="dgm-course-demo-") as tmp:
        root = Path(out).resolve() if out else Path(tmp)
        tables = {}
        for assignment_id in ids:
            submitted = root / "submitted"
            for student_id, kind in SAMPLE_STUDENTS.items():
                folder = course.solution_name if kind == "solution" else course.release_name
                target = submitted / student_id / assignment_id
                target.mkdir(parents=True, exist_ok=True)
                name = f"{assignment_id}.ipynb"
                shutil.copy(course.root / folder / assignment_id / name, target / name)
            rows = grade(course, assignment_id, submitted, root / "grading" / assignment_id, log=lambda _: None)
            tables[assignment_id] = rows
            who = ", ".join(f"{s} hands in the {k}" for s, k in SAMPLE_STUDENTS.items())
            log(f"\n{assignment_id} ({who}):")
            log(format_table(rows, [c for c in rows[0] if c not in ("reason", "feedback")]))
        if out:
            log(f"\nfeedback and grades.csv of each assignment in {root / 'grading'}")
    return tables
