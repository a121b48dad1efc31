"""Stock nbgrader (0.9.6, as shipped) grading a batch the usual way: one ``nbgrader autograde``
over every student, in place, each kernel running with the grader's rights next to the gradebook.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from dgm_course.course.config import CONFIG_FILE, execution_env, nbgrader_api

from .._course import COURSE, ROOT

__all__ = ["autograde_all", "scores"]


def autograde_all(root: Path, assignment_id: str, students: dict[str, nbformat.NotebookNode]) -> dict:
    """Release ``assignment_id`` into a course folder at ``root``, submit ``students`` (graded in
    the order of their ids), autograde all of them with one call; nbgrader's result dict."""
    shutil.copy(ROOT / CONFIG_FILE, root / CONFIG_FILE)
    shutil.copytree(ROOT / COURSE.source_name / assignment_id, root / COURSE.source_name / assignment_id)
    for student, nb in students.items():
        (root / "submitted" / student / assignment_id).mkdir(parents=True)
        nbformat.write(nb, root / "submitted" / student / assignment_id / f"{assignment_id}.ipynb")
    with execution_env():
        api = nbgrader_api(COURSE, root)
        assert api.generate_assignment(assignment_id)["success"]
        return api.autograde(assignment_id, "*")


def scores(root: Path, assignment_id: str, students: list[str]) -> dict[str, float | None]:
    """Each student's total in the gradebook (``None``: never graded)."""
    out = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", COURSE.config.CourseDirectory.course_id) as gb:
        for student in students:
            try:
                out[student] = float(gb.find_submission(assignment_id, student).score)
            except MissingEntry:
                out[student] = None
    return out
