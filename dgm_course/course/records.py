"""What grading gives for one student, and what the students of one batch share.

The statuses of a row: ``graded``; ``rejected`` (the submission is at fault: the student fixes
it); ``failed`` and ``timeout`` (nbgrader's in-kernel run); ``error`` (the grading machine is at
fault: the instructor grades again; nothing a submission holds may produce it); ``missing`` (on
the course's roster, nothing submitted: 0 points).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .config import Course

__all__ = ["GRADED", "REJECTED", "FAILED", "TIMEOUT", "ERROR", "MISSING", "INVALID", "KEPT_FILES",
           "StudentResult", "Batch"]

GRADED, REJECTED, FAILED, TIMEOUT, ERROR = "graded", "rejected", "failed", "timeout", "error"
MISSING = "missing"
INVALID = REJECTED  # its name before set-up cells were checked too
KEPT_FILES = ("timestamp.txt", "submission_secret.txt")  # what nbgrader's exchange puts beside a notebook


@dataclass
class StudentResult:
    """What grading one student gave.

    ``scores``: the final points of each test cell by grade id (verified where a spec exists).
    ``in_kernel``: nbgrader's in-kernel points by grade id (``None``: that run gave none), with
    ``in_kernel_status`` (graded, failed, timeout, not run) and ``in_kernel_reason``.
    ``verdicts``: the verifier's :class:`~dgm_course.course.verify.TaskVerdict` list (``None``:
    not verified, see ``verification``).
    """

    student_id: str
    status: str
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    needs_manual_grade: bool = False
    notebook: Path | None = None  # the validated submission in the grading folder
    in_kernel: dict[str, float] | None = None
    in_kernel_status: str = "not run"
    in_kernel_reason: str = ""
    verdicts: list | None = None
    verification: str = ""
    late_penalty: float = 0.0  # points off for a late submission (nbgrader's late-submission plugin)
    timestamp: str = ""  # when nbgrader recorded the submission (timestamp.txt), UTC
    written: dict[str, bool] = field(default_factory=dict)  # written answer (grade id) -> answered


@dataclass
class Batch:
    """What every student's grading shares. ``db_url``: where the grading process writes the final
    scores (never a worker: the in-kernel runs get ``gradebook``, an sqlite copy of their own)."""

    course: Course
    assignment_id: str
    source_path: Path
    source: nbformat.NotebookNode
    max_scores: dict[str, float]
    spec: object | None  # an AssignmentSpec
    submissions: Path
    out: Path
    timeout: float
    cell_timeout: float | None
    require: str | None
    gradebook: bytes  # the assignment's gradebook before any student: what an in-kernel run gets
    key: str  # the grader's secret: students cannot compute the inputs their work is checked on
    db_url: str
    nonce: str  # this run's: a regrade checks on new inputs (see grading_seed)

    @property
    def course_id(self) -> str:
        return self.course.config.CourseDirectory.get("course_id", "")
