"""One export of the whole course's grades: nbgrader's CSV, and every task's points per student.

``dgm-course export`` reads the gradebook of every assignment (each grading folder's, or the one
database server that holds the course) and writes two files:

- ``FILE`` in nbgrader's export format (``nbgrader export``'s columns: assignment, duedate,
  timestamp, student_id, last_name, first_name, email, raw_score, late_submission_penalty, score,
  max_score), one row per student and assignment; a student on the roster who submitted nothing
  scores 0;
- ``FILE`` with ``_tasks`` before its suffix: one row per student, for an LMS upload: each
  assignment's score, then each of its tasks' points (``ASSIGNMENT:task``), then the total.

Scores are the gradebook's: the verified points ``dgm-course grade`` wrote, or a grader's
override in the formgrader (nbgrader's manual score) where one was given.
"""

from __future__ import annotations

import csv
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import gradebook as gradebooks
from .cells import task_name
from .config import Course, CourseError

__all__ = ["Export", "export", "default_grading_root"]


@dataclass(frozen=True)
class Export:
    """The files written and the assignments that no gradebook holds yet."""

    grades: Path
    tasks: Path
    not_graded: tuple[str, ...]


def default_grading_root(course: Course) -> Path:
    """Where ``dgm-course grade`` puts each assignment's grading folder by default."""
    return course.root / "course_build" / "grading"


def _gradebooks(course: Course, grading: Path, db_url: str | None) -> tuple[dict[str, str], tuple[str, ...]]:
    """Each graded assignment's gradebook URL, and the assignments not graded yet."""
    server = gradebooks.server_url(course, db_url)
    if server is not None:
        gradebooks.check_reachable(server)
    found, missing = {}, []
    for aid in course.assignment_ids():
        path = grading / aid / "gradebook.db"
        url = server or (gradebooks.sqlite_url(path.parent) if path.is_file() else None)
        if url is not None and _has_assignment(url, course, aid):
            found[aid] = url
        else:
            missing.append(aid)
    return found, tuple(missing)


def _open(url: str, course: Course):
    from nbgrader.api import Gradebook

    return Gradebook(url, course.config.CourseDirectory.get("course_id", ""))


def _has_assignment(url: str, course: Course, aid: str) -> bool:
    from nbgrader.api import MissingEntry

    with _open(url, course) as gb:
        try:
            gb.find_assignment(aid)
        except MissingEntry:
            return False
    return True


def _nbgrader_rows(url: str, course: Course, aid: str) -> tuple[list[str], list[list[str]]]:
    """nbgrader's own CSV export of one assignment: its header and rows."""
    from nbgrader.plugins import CsvExportPlugin

    with tempfile.TemporaryDirectory(prefix="dgm-export-") as tmp, _open(url, course) as gb:
        target = Path(tmp) / "grades.csv"
        CsvExportPlugin(to=str(target), assignment=[aid]).export(gb)
        with open(target, newline="") as fh:
            header, *rows = list(csv.reader(fh))
    return header, rows


def _task_points(url: str, course: Course, aid: str) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The tasks of ``aid`` (notebook order) and each student's points on each (0 when missing)."""
    from nbgrader.api import MissingEntry

    with _open(url, course) as gb:
        assignment = gb.find_assignment(aid)
        cells = [cell for notebook in assignment.notebooks for cell in notebook.grade_cells]
        tasks = [task_name(cell.name) for cell in cells]
        points: dict[str, dict[str, float]] = {}
        for student in gb.students:
            try:
                grades = {g.name: g.score for nb in gb.find_submission(aid, student.id).notebooks for g in nb.grades}
            except MissingEntry:
                grades = {}
            points[student.id] = {task_name(c.name): float(grades.get(c.name) or 0.0) for c in cells}
    return tasks, points


def export(course: Course, out: Path, grading: Path | None = None, db_url: str | None = None) -> Export:
    """Write the course's grades to ``out`` (nbgrader's format) and the per-task table beside it."""
    grading = Path(grading) if grading is not None else default_grading_root(course)
    out = Path(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes on nbgrader's queries
        found, not_graded = _gradebooks(course, grading, db_url)
        if not found:
            raise CourseError(f"no assignment is graded yet: no gradebook under {grading} "
                              "(dgm-course grade ID SUBMISSIONS first, or --grading DIR)")
        header, rows, wide, columns = None, [], {}, ["student_id", "first_name", "last_name", "email"]
        for aid, url in found.items():
            header, assignment_rows = _nbgrader_rows(url, course, aid)
            rows += assignment_rows
            tasks, points = _task_points(url, course, aid)
            columns += [aid, *(f"{aid}:{task}" for task in tasks)]
            at = {name: header.index(name) for name in ("student_id", "first_name", "last_name", "email", "score")}
            for row in assignment_rows:
                entry = wide.setdefault(row[at["student_id"]], {k: row[at[k]] for k in
                                                                ("student_id", "first_name", "last_name", "email")})
                entry[aid] = float(row[at["score"]] or 0.0)
                for task in tasks:
                    entry[f"{aid}:{task}"] = points.get(row[at["student_id"]], {}).get(task, 0.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    tasks_path = out.with_name(f"{out.stem}_tasks{out.suffix or '.csv'}")
    with open(tasks_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*columns, "total"], restval=0.0)
        writer.writeheader()
        for sid in sorted(wide):
            entry = wide[sid]
            writer.writerow({**entry, "total": round(sum(entry.get(aid, 0.0) for aid in found), 6)})
    return Export(out, tasks_path, not_graded)
