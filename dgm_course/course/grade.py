"""Grade a folder of submissions with nbgrader's autograder, one student per process.

Submissions follow nbgrader's ``submitted`` layout: ``<submissions>/<student_id>/<assignment_id>/
<assignment_id>.ipynb``, with nbgrader's ``timestamp.txt`` and ``submission_secret.txt`` beside it
when the submission came through ``nbgrader collect``. Grading
happens in a grading folder ``out`` that is a course folder of its own:

    out/source_notebooks/<id>/     a copy of the source, released again to fill the gradebook
    out/gradebook.db               nbgrader's embedded sqlite gradebook
    out/submitted/<student>/<id>/  each student's validated notebook and nbgrader's files (no others)
    out/autograded/<student>/<id>/ the executed submissions
    out/feedback/<student>/<id>/   one HTML feedback file per student, graded or not
    out/logs/<student>.log         what nbgrader said
    out/grades.csv                 one row per student

Each student is first validated (the notebook is there under its name, is JSON, is a valid
notebook, and no test cell is missing that nbgrader cannot put back), then autograded in a child
process with a wall-clock limit, so a corrupt, slow or hostile submission costs only its own row.
"""

from __future__ import annotations

import contextlib
import csv
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .cells import grade_cells, task_name
from .config import CONFIG_FILE, Course, CourseError, execution_env, nbgrader_api

__all__ = ["StudentResult", "validate_submission", "grade", "final_rows", "write_csv", "GRADED", "INVALID",
           "FAILED", "TIMEOUT"]

GRADED, INVALID, FAILED, TIMEOUT = "graded", "invalid", "failed", "timeout"
_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")  # no glob or path characters: nbgrader globs ids
_MARKER = ".dgm-course-grading"
# What nbgrader itself puts beside a submission: the submission time (lateness) and the secret
# that release_feedback names the feedback page with.
_NBGRADER_FILES = ("timestamp.txt", "submission_secret.txt")


@dataclass
class StudentResult:
    """What autograding one student gave: ``scores`` maps each test cell's grade id to its points."""

    student_id: str
    status: str
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    needs_manual_grade: bool = False
    notebook: Path | None = None  # the validated submission, for a verifier to re-run


def validate_submission(folder: Path, assignment_id: str, source: nbformat.NotebookNode) -> tuple[Path | None, str]:
    """``(notebook, '')`` if ``folder`` holds a gradable ``<assignment_id>.ipynb``, else ``(None, reason)``."""
    expected = folder / f"{assignment_id}.ipynb"
    if not folder.is_dir():
        return None, f"no folder {assignment_id}/ in the submission"
    if not expected.is_file():
        others = sorted(p.name for p in folder.glob("*.ipynb"))
        if others:
            return None, f"renamed notebook: found {', '.join(others)}, expected {expected.name}"
        return None, f"no notebook: expected {expected.name}"
    try:
        nb = nbformat.read(expected, as_version=4)
    except (ValueError, UnicodeDecodeError) as err:  # nbformat's NotJSONError is a ValueError
        return None, f"corrupt notebook: not valid JSON ({str(err).splitlines()[0][:200]})"
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        return None, f"corrupt notebook: not a valid notebook ({err.message[:200]})"
    problem = _unrestorable_cells(source, nb)
    return (None, problem) if problem else (expected, "")


def _unrestorable_cells(source: nbformat.NotebookNode, submitted: nbformat.NotebookNode) -> str:
    """nbgrader puts a deleted test cell back after the nbgrader cell before it in the source; if
    that one is gone too (or is not a solution or test cell), nbgrader fails: say so instead."""
    present = {c.metadata["nbgrader"]["grade_id"] for c in submitted.cells
               if c.metadata.get("nbgrader", {}).get("grade") or c.metadata.get("nbgrader", {}).get("solution")}
    ordered = [c for c in source.cells if "nbgrader" in c.metadata]
    for index, cell in enumerate(ordered):
        gid = cell.metadata["nbgrader"]["grade_id"]
        if not cell.metadata["nbgrader"].get("grade") or gid in present:
            continue
        before = ordered[index - 1].metadata["nbgrader"]["grade_id"] if index else None
        if before is not None and before not in present:
            return (f"missing grade cell: the test cell {gid!r} and the cell {before!r} before it were deleted, "
                    f"so nbgrader cannot put the test back; restore both from the release")
    return ""


def _prepare(course: Course, assignment_id: str, out: Path) -> None:
    """Make ``out`` a grading folder with a fresh gradebook for ``assignment_id``."""
    if out.exists() and any(out.iterdir()) and not (out / _MARKER).exists():
        raise CourseError(f"{out} is not empty and is not a grading folder: choose another --out")
    for name in (course.source_name, course.release_name, "submitted", "autograded", "feedback", "logs"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("gradebook.db", "grades.csv"):
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text(f"{assignment_id}\n")
    shutil.copy(course.root / CONFIG_FILE, out / CONFIG_FILE)
    shutil.copytree(course.root / course.source_name / assignment_id, out / course.source_name / assignment_id)
    with execution_env():
        result = nbgrader_api(course, out).generate_assignment(assignment_id)
    if not result["success"]:
        raise CourseError(f"nbgrader generate_assignment failed:\n{result.get('log', '')}{result.get('error', '')}")


def _autograde(course: Course, assignment_id: str, student_id: str, out: Path, timeout: float) -> tuple[str, str]:
    """Autograde and write feedback for one student in a child process; ``(status, reason)``."""
    log, report_path = out / "logs" / f"{student_id}.log", out / "logs" / f"{student_id}.json"
    command = [sys.executable, "-m", "dgm_course.course._autograde", str(course.root), str(out), assignment_id,
               student_id, str(report_path)]
    with execution_env(), open(log, "w") as log_file:
        # Its own session: on timeout the whole process group goes. The kernel has a session of
        # its own, but it polls its parent and exits within a second when the parent is gone.
        child = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return TIMEOUT, f"autograding took longer than {timeout:g} s and was stopped"
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return FAILED, f"the autograder crashed (exit code {child.returncode}); see logs/{student_id}.log"
    with open(log, "a") as log_file:
        log_file.write(report.get("log", ""))
    if not report["autograded"]:
        return FAILED, f"nbgrader could not autograde it: {report.get('error', '?')}"
    if not report["feedback"]:
        return GRADED, f"graded, but nbgrader's feedback failed: {report.get('error', '?')}"
    return GRADED, ""


def _scores(course: Course, out: Path, assignment_id: str, student_id: str) -> tuple[dict[str, float], bool] | None:
    """Points by grade id and whether any needs a person, from the gradebook (``None``: not there)."""
    from nbgrader.api import Gradebook, MissingEntry

    db_url = f"sqlite:///{out / 'gradebook.db'}"
    with Gradebook(db_url, course.config.CourseDirectory.get("course_id", "")) as gb:
        try:
            notebook = gb.find_submission_notebook(assignment_id, assignment_id, student_id)
        except MissingEntry:
            return None
        scores = {g.name: float(g.score) for g in notebook.grades}
        return scores, any(g.needs_manual_grade for g in notebook.grades)


def _write_feedback(out: Path, assignment_id: str, result: StudentResult) -> None:
    """A feedback page where nbgrader wrote none: the reason, and what to do."""
    path = out / "feedback" / result.student_id / assignment_id / f"{assignment_id}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    if result.status == GRADED:
        title = f"graded: {sum(result.scores.values()):g} points"
        advice = "The detailed feedback could not be written; ask your instructor for it."
    else:
        title = "your submission could not be graded"
        advice = ("Submit the notebook of the release under its own name, with every cell of the release in "
                  "it, after a restart and a run of all cells. Ask your instructor if the reason is unclear.")
    path.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(assignment_id)}</title></head><body>\n"
        f"<h1>{html.escape(assignment_id)}: {html.escape(title)}</h1>\n"
        f"<p><b>Reason:</b> {html.escape(result.reason)}</p>\n<p>{html.escape(advice)}</p>\n</body></html>\n"
    )


def final_rows(course: Course, assignment_id: str, results: list[StudentResult],
               max_scores: dict[str, float]) -> list[dict]:
    """The CSV rows, one per student: the one place where in-kernel scores become final scores.

    ``max_scores`` maps each test cell's grade id to its points, in notebook order; a task's
    column is named after its function (``test_<name>`` -> ``<name>``). A graded result carries
    ``scores`` (nbgrader's in-kernel points by grade id) and ``notebook`` (the submitted copy in
    the grading folder).

    The out-of-kernel verifier plugs in here, as one call per graded result before the total is
    summed: ``verify_submission(assignment_id, result.notebook, course.source_notebook(assignment_id),
    seed=grading_seed(course_id, assignment_id, result.student_id), in_kernel=result.scores)``,
    whose verified points per task then replace the in-kernel ones.
    """
    rows = []
    for result in results:
        scores = {task_name(gid): points for gid, points in result.scores.items()}
        row = {"student_id": result.student_id, "status": result.status, "reason": result.reason,
               "score": round(sum(scores.values()), 6), "max_score": sum(max_scores.values()),
               "needs_manual_grade": result.needs_manual_grade}
        for gid in max_scores:
            row[task_name(gid)] = scores.get(task_name(gid), "")
        row["feedback"] = f"feedback/{result.student_id}/{assignment_id}/{assignment_id}.html"
        rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["student_id"])
        writer.writeheader()
        writer.writerows(rows)


def grade(course: Course, assignment_id: str, submissions: Path, out: Path, timeout: float = 600,
          progress: bool = True, students: Iterable[str] | None = None,
          log: Callable[[str], None] = print) -> list[dict]:
    """Autograde every student folder in ``submissions``; write ``out/grades.csv``; return its rows.

    ``timeout`` is the wall-clock limit of one student (cells also stop after nbgrader's
    ``Execute.timeout``). Every student gets a row and a feedback file, also when the submission
    could not be graded; the row's ``status`` is ``graded``, ``invalid``, ``failed`` or
    ``timeout`` and ``reason`` says why.
    """
    from tqdm.auto import tqdm

    source_path = course.source_notebook(assignment_id)
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    if not submissions.is_dir():
        raise CourseError(f"no submissions folder {submissions}")
    ids = sorted(students) if students else sorted(p.name for p in submissions.iterdir() if p.is_dir())
    if not ids:
        raise CourseError(f"{submissions} holds no student folders (<student_id>/{assignment_id}/{assignment_id}.ipynb)")
    source = nbformat.read(source_path, as_version=4)
    max_scores = grade_cells(source)
    _prepare(course, assignment_id, out)
    (out / "logs").mkdir()

    results = []
    for student_id in tqdm(ids, desc=f"grading {assignment_id}", unit="student", disable=not progress):
        if not _STUDENT_ID.match(student_id):
            result = StudentResult(student_id, INVALID, "the folder name is not a usable student id "
                                   "(letters, digits, '.', '_', '@', '-')")
        else:
            notebook, reason = validate_submission(submissions / student_id / assignment_id, assignment_id, source)
            result = StudentResult(student_id, INVALID, reason)
        if result.reason:
            _write_feedback(out, assignment_id, result)
            results.append(result)
            continue
        target = out / "submitted" / student_id / assignment_id
        target.mkdir(parents=True)
        # The notebook and nbgrader's own files only: no student module that could shadow a library.
        shutil.copy(notebook, target / notebook.name)
        for name in _NBGRADER_FILES:
            if (notebook.parent / name).is_file():
                shutil.copy(notebook.parent / name, target / name)
        status, reason = _autograde(course, assignment_id, student_id, out, timeout)
        result = StudentResult(student_id, status, reason, notebook=target / notebook.name)
        found = _scores(course, out, assignment_id, student_id) if status == GRADED else None
        if found is not None:
            result.scores, result.needs_manual_grade = found
        elif status == GRADED:
            result.status, result.reason = FAILED, "nbgrader wrote no scores to the gradebook"
        if not (out / "feedback" / student_id / assignment_id / f"{assignment_id}.html").is_file():
            _write_feedback(out, assignment_id, result)
        results.append(result)

    rows = final_rows(course, assignment_id, results, max_scores)
    write_csv(rows, out / "grades.csv")
    log(f"wrote {out / 'grades.csv'} ({len(rows)} students) and feedback/ in {out}")
    return rows
