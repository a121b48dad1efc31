"""Grading results as text for a terminal: an aligned table, and a summary that fits 80 columns.

``grades.csv`` keeps every column (see :func:`dgm_course.course.grade.final_rows`); a terminal gets
the student, status, score, maximum and the points of each task, with the CSV's path.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

__all__ = ["LEADING", "TRAILING", "format_table", "format_summary"]

# The columns of grades.csv before and after the tasks' (one per task, named after its function);
# :func:`dgm_course.course.grade.final_rows` says what each holds.
LEADING = ("student_id", "status", "reason", "score", "max_score", "late_penalty", "timestamp", "needs_manual_grade")
TRAILING = ("verified", "isolation", "in_kernel_score", "in_kernel_status", "flags", "details", "feedback")


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows of dicts as an aligned text table.

    Example:
        >>> print(format_table([{"student": "ada", "score": 10.0}, {"student": "bob", "score": 0.0}]))
        student  score
        ada      10.0
        bob      0.0
    """
    columns = columns or list(rows[0])
    cells = [columns] + [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells)


def _points(value: object) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value or "-")


def format_summary(rows: list[dict], csv: Path | str | None = None, width: int = 80) -> str:
    """One line per student (score / max, then each task's points in the order of the named tasks),
    the reason under a row that is not graded, a note under one that awaits manual grading, and
    where the full table is.

    Example:
        >>> rows = [{"student_id": "ada", "status": "graded", "reason": "", "score": 10.0, "max_score": 10.0,
        ...          "jacobian": 6.0, "log_det": 4.0, "flags": ""},
        ...         {"student_id": "bob", "status": "rejected", "reason": "not valid JSON", "score": 0.0,
        ...          "max_score": 10.0, "jacobian": 0.0, "log_det": 0.0, "flags": ""}]
        >>> print(format_summary(rows, "grading/grades.csv"))
        student  status    score / max  points per task
        ada      graded       10 / 10   6 4
        bob      rejected      0 / 10   0 0
                 reason: not valid JSON
        tasks: jacobian, log_det
        every column: grading/grades.csv
    """
    tasks = [c for c in rows[0] if c not in LEADING + TRAILING]
    table = format_table([{"student": row["student_id"], "status": row["status"],
                           "score / max": f"{_points(row['score']):>5} / {_points(row['max_score'])}",
                           "points per task": " ".join(_points(row.get(t)) for t in tasks)} for row in rows])
    lines = []
    for line, row in zip(table.splitlines()[1:], rows):
        lines.append(line)
        for note in ("reason", "flags"):
            if row.get(note):
                lines += textwrap.wrap(f"{note}: {row[note]}", width, initial_indent=" " * 9,
                                       subsequent_indent=" " * 11, max_lines=3)
        if row.get("needs_manual_grade") is True:
            lines.append(" " * 9 + "needs manual grading in the formgrader (a written answer)")
    lines = [table.splitlines()[0], *lines]
    if tasks:
        lines += textwrap.wrap("tasks: " + ", ".join(tasks), width, subsequent_indent="  ")
    if csv is not None:
        lines.append(f"every column: {csv}")
    return "\n".join(lines)
