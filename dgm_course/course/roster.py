"""The course's roster, due dates and late penalties, where nbgrader keeps them.

nbgrader keeps a course's students and each assignment's due date in the course's gradebook: the
instructor adds them with nbgrader's own commands, in the course folder::

    nbgrader db student import students.csv              # id,first_name,last_name,email
    nbgrader db assignment add 01_change_of_variables --duedate="2027-01-15 17:00:00 Europe/Berlin"

That gradebook is ``CourseDirectory.db_url`` of ``nbgrader_config.py`` (nbgrader's default: the
course folder's ``gradebook.db``). ``dgm-course grade`` reads it (never writes it, unless it is the
database server its grades go to) and copies what it says into the grading folder's gradebook, so
that every student of the roster gets a row (``missing`` when nothing was submitted), the due date
holds, and nbgrader's late-submission plugin (``c.AssignLatePenalties.plugin_class``, nbgrader's
``LateSubmissionPlugin`` by default, whose ``penalty_method`` is ``none`` or ``zero``) sets each late
submission's penalty from the time nbgrader recorded at submission (``timestamp.txt``).
"""

from __future__ import annotations

import datetime
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import gradebook
from .config import Course

__all__ = ["Student", "CourseRecords", "course_gradebook_url", "read", "add_to", "late_penalty"]


@dataclass(frozen=True)
class Student:
    """A student of the roster, as nbgrader's gradebook holds them."""

    id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class CourseRecords:
    """What grading takes from the course's gradebook: the roster and the assignment's due date."""

    students: tuple[Student, ...] = ()
    duedate: datetime.datetime | None = None  # naive UTC, as nbgrader stores it


def course_gradebook_url(course: Course) -> str | None:
    """The course's gradebook (``CourseDirectory.db_url``, else nbgrader's default file in the course
    folder), or ``None`` where that default file does not exist: no roster, no due date."""
    configured = course.config.CourseDirectory.get("db_url")
    if configured:
        return str(configured)
    path = Path(course.root) / "gradebook.db"
    return f"sqlite:///{path}" if path.is_file() else None


def read(course: Course, assignment_id: str) -> CourseRecords:
    """The roster and ``assignment_id``'s due date from the course's gradebook (nothing if it has none)."""
    url = course_gradebook_url(course)
    if url is None:
        return CourseRecords()
    if not url.startswith("sqlite"):
        gradebook.check_reachable(url)  # one clear error before anything is graded
    from nbgrader.api import Gradebook, MissingEntry

    course_id = course.config.CourseDirectory.get("course_id", "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes on nbgrader's queries
        with Gradebook(url, course_id) as gb:
            students = tuple(sorted((Student(s.id, s.first_name, s.last_name, s.email) for s in gb.students),
                                    key=lambda s: s.id))
            try:
                duedate = gb.find_assignment(assignment_id).duedate
            except MissingEntry:
                duedate = None
    return CourseRecords(students, duedate)


def add_to(gb, assignment_id: str, records: CourseRecords) -> None:
    """Copy the roster and the due date into a grading gradebook ``gb`` (an nbgrader ``Gradebook``)."""
    for student in records.students:
        gb.update_or_create_student(student.id, first_name=student.first_name, last_name=student.last_name,
                                    email=student.email)
    if records.duedate is not None:
        gb.update_or_create_assignment(assignment_id, duedate=records.duedate)


def late_penalty(course: Course, gb, assignment_id: str, student_id: str, score: float) -> float:
    """Set and return the late penalty of a student's submission in ``gb``, the way nbgrader's
    autograde does (``AssignLatePenalties``): the configured plugin's penalty for the seconds past
    the due date (extensions included), at least 0 and at most ``score``; 0 when on time.
    """
    from nbgrader.preprocessors import AssignLatePenalties

    submission = gb.find_submission(assignment_id, student_id)
    seconds = submission.total_seconds_late
    penalty = 0.0
    if seconds > 0:
        plugin = AssignLatePenalties(config=course.config).plugin_class(config=course.config)
        given = plugin.late_submission_penalty(student_id, score, seconds)
        penalty = 0.0 if given is None else min(max(float(given), 0.0), score)
    for notebook in submission.notebooks:  # one notebook per assignment in this course
        notebook.late_submission_penalty = penalty or None
    return penalty
