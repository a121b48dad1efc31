"""The course end to end: build every assignment, then grade two sample students on each.

The demo folder (``course_build/demo`` of the course unless given) gets, per assignment, the
submissions of two students: ``ada`` hands in the solution, ``bob`` the untouched release. They are
graded on the embedded sqlite gradebook, and a summary per assignment is printed (full marks for
ada, 0 for bob); each assignment's ``grades.csv`` and feedback pages stay in the folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from .build import build
from .config import Course
from .grade import grade
from .report import format_summary

__all__ = ["SAMPLE_STUDENTS", "demo"]

SAMPLE_STUDENTS = {"ada": "solution", "bob": "release"}  # student id -> what the student hands in


def demo(course: Course, out: Path | None = None, log: Callable[[str], None] = print) -> dict[str, list[dict]]:
    """Build all assignments, grade the sample students, print a summary and return the rows per assignment."""
    ids = course.resolve(None)
    build(course, ids, log=log)
    root = Path(out).resolve() if out else course.root / "course_build" / "demo"
    who = ", ".join(f"{s} hands in the {k}" for s, k in SAMPLE_STUDENTS.items())
    tables = {}
    for assignment_id in ids:
        submitted = root / "submitted"
        for student_id, kind in SAMPLE_STUDENTS.items():
            folder = course.solution_name if kind == "solution" else course.release_name
            target = submitted / student_id / assignment_id
            target.mkdir(parents=True, exist_ok=True)
            name = f"{assignment_id}.ipynb"
            shutil.copy(course.root / folder / assignment_id / name, target / name)
        grading = root / "grading" / assignment_id
        rows = grade(course, assignment_id, submitted, grading, log=lambda _: None)
        tables[assignment_id] = rows
        log(f"\n{assignment_id} ({who}):")
        log(format_summary(rows, grading / "grades.csv"))
    return tables
