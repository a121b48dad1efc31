"""The whole course cycle through nbgrader's exchange, with nbgrader's own commands (docs/instructor.md).

An instructor and two students, each with their own home folder, share an exchange folder in a temp
directory, as on a JupyterHub: the instructor releases assignment 01; alice and bob fetch it; alice
writes the reference solution, bob leaves it blank; both submit; the instructor collects, grades
with ``dgm-course grade`` (autograde and feedback, in a grading folder of its own) and releases the
feedback from that folder; each student fetches their feedback, and its scores are full marks for
alice and zero for bob, cell by cell. The cycle runs twice: with nbgrader's default gradebook (an
sqlite file in each course folder) and with the course's ``db_url`` naming a real PostgreSQL
server (tests/course/postgres_support.py), which nbgrader's collect, ``dgm-course grade`` and
release_feedback then share. Then the term goes on: carol joins the roster and submits nothing, the
assignment gets a due date, bob submits a solution after it, the instructor grades bob and carol
again (``--student``) and exports the course: alice's grade stands, bob's late penalty (nbgrader's
``zero`` method) takes his points, carol is missing with 0.

All three are the same OS user here, so students name themselves with ``--student`` and collect
skips nbgrader's owner check (on a hub each student is their own OS user and neither is needed).
"""

from __future__ import annotations

import csv
import datetime
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from traitlets.config.loader import PyFileConfigLoader

from dgm_course.course import gradebook
from dgm_course.course.cells import written_cells
from tests.course.cycle_support import ROOT, feedback_scores, graded_points, hub_config, nbgrader, person_env, solve

pytestmark = pytest.mark.slow

ASSIGNMENT = "01_change_of_variables"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
COURSE_ROOT = ROOT


def _course_config():
    return PyFileConfigLoader("nbgrader_config.py", path=str(COURSE_ROOT)).load_config()


def _both(action, students):
    """Run ``action(student)`` for every student at once (each is a separate person)."""
    with ThreadPoolExecutor(len(students)) as pool:
        return list(pool.map(action, students))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str | None:
    """``None``: nbgrader's default sqlite file; else a fresh database on the test's server."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres").create_database()


def _server_grades(db_url: str, course_id: str) -> dict[str, float]:
    with Gradebook(db_url, course_id) as gb:
        return {s.student.id: s.score for s in gb.find_assignment(ASSIGNMENT).submissions}


def test_release_fetch_submit_collect_grade_feedback(tmp_path: Path, db_url: str | None):
    config = _course_config()
    course_id = config.CourseDirectory.course_id
    source_dir, release_dir = config.CourseDirectory.source_directory, config.CourseDirectory.release_directory
    source = nbformat.read(COURSE_ROOT / source_dir / ASSIGNMENT / NOTEBOOK, as_version=4)

    # The instructor's course folder: a copy of the repository's course files (never graded in place).
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(COURSE_ROOT / "nbgrader_config.py", course)
    if db_url is not None:  # the course's gradebook on the server, for every command run in it
        with open(course / "nbgrader_config.py", "a") as fh:
            fh.write(f"\nc.CourseDirectory.db_url = {db_url!r}\n")
    for folder in (source_dir, release_dir):
        shutil.copytree(COURSE_ROOT / folder / ASSIGNMENT, course / folder / ASSIGNMENT)
    # The exchange and the course id come from each person's Jupyter config, as on a shared hub.
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    config_text = hub_config(exchange, course_id)
    instructor = person_env(tmp_path / "home" / "instructor", config_text)
    students = {name: person_env(tmp_path / "home" / name, config_text) for name in ("alice", "bob")}

    def student(name: str, *args: str) -> str:
        return nbgrader(*args, cwd=Path(students[name]["HOME"]), env=students[name])

    # Instructor: the committed release goes out.
    nbgrader("release_assignment", ASSIGNMENT, cwd=course, env=instructor)

    # Students: fetch; alice solves, bob leaves it blank; both submit.
    _both(lambda name: student(name, "fetch_assignment", ASSIGNMENT), students)
    fetched = {name: Path(students[name]["HOME"]) / ASSIGNMENT / NOTEBOOK for name in students}
    committed = COURSE_ROOT / release_dir / ASSIGNMENT / NOTEBOOK
    for name in students:
        assert fetched[name].read_bytes() == committed.read_bytes(), f"{name} did not get the committed release"
    text = committed.read_text()
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text, "the release leaks the solution"
    released = nbformat.read(fetched["alice"], as_version=4)
    nbformat.write(solve(released, source), fetched["alice"])
    _both(lambda name: student(name, "submit", ASSIGNMENT, f"--student={name}"), students)

    # Instructor: collect, grade, feedback.
    log = nbgrader("collect", ASSIGNMENT, "--CollectApp.check_owner=False", cwd=course, env=instructor)
    for name in students:
        assert f"Collecting submission: {name} {ASSIGNMENT}" in log, log
    # dgm-course grade autogrades and writes feedback in a grading folder of its own, which is a
    # course folder: nbgrader releases the feedback from there.
    grading = course / "grading" / ASSIGNMENT
    nbgrader("grade", ASSIGNMENT, "submitted", "--out", str(grading), cwd=course, env=instructor, command="dgm-course")
    with open(grading / "grades.csv", newline="") as fh:
        grades = {row["student_id"]: (row["status"], float(row["score"])) for row in csv.DictReader(fh)}
    points = graded_points(source)
    assert points and sum(points.values()) > 0, "assignment 01 has no graded test cell"
    assert grades == {"alice": ("graded", sum(points.values())), "bob": ("graded", 0.0)}, grades
    if db_url is not None:
        assert _server_grades(db_url, course_id) == {"alice": sum(points.values()), "bob": 0.0}
        assert not (grading / "gradebook.db").exists() and not (course / "gradebook.db").exists()
    # nbgrader's release_feedback names each page by a hash of the secret that `nbgrader submit`
    # wrote beside the notebook: without it neither the release nor the students' fetch works.
    missing = [name for name in students
               if not (grading / "feedback" / name / ASSIGNMENT / "submission_secret.txt").is_file()]
    assert not missing, f"dgm-course grade did not carry submission_secret.txt to the feedback of {missing}"
    nbgrader("release_feedback", ASSIGNMENT, cwd=grading, env=instructor)

    # Students: fetch feedback; its scores are full marks for alice and zero for bob, cell by cell.
    _both(lambda name: student(name, "fetch_feedback", ASSIGNMENT, f"--student={name}"), students)
    expected = {"alice": {gid: (p, p) for gid, p in points.items()},
                "bob": {gid: (0.0, p) for gid, p in points.items()}}
    for name, scores in expected.items():
        pages = list((Path(students[name]["HOME"]) / ASSIGNMENT / "feedback").glob(f"*/{ASSIGNMENT}.html"))
        assert len(pages) == 1, f"{name} fetched {len(pages)} feedback pages"
        shown = feedback_scores(pages[0].read_text())
        total = sum(score for score, _ in scores.values())
        written = written_cells(source)  # in the maximum; no points before a grader gives them
        assert {k: v for k, v in shown.items() if k not in written} == \
            {"total": (total, sum(points.values()) + sum(written.values())), **scores}, f"{name}'s feedback"

    # The term goes on: a roster, a due date, a late submission, a regrade of two students, the export.
    nbgrader("db", "student", "add", "carol", "--last-name=Diaz", cwd=course, env=instructor)
    due = datetime.datetime.now(datetime.timezone.utc)
    nbgrader("db", "assignment", "add", ASSIGNMENT, f"--duedate={due.isoformat()}", cwd=course, env=instructor)
    with open(course / "nbgrader_config.py", "a") as fh:
        fh.write("\nc.LateSubmissionPlugin.penalty_method = 'zero'\n")
    nbformat.write(solve(nbformat.read(fetched["bob"], as_version=4), source), fetched["bob"])
    student("bob", "submit", ASSIGNMENT, "--student=bob")
    nbgrader("collect", ASSIGNMENT, "--update", "--CollectApp.check_owner=False", cwd=course, env=instructor)
    before = _csv(grading / "grades.csv")
    nbgrader("grade", ASSIGNMENT, "submitted", "--out", str(grading), "--student", "bob", "--student", "carol",
             cwd=course, env=instructor, command="dgm-course")
    after = _csv(grading / "grades.csv")
    full = sum(points.values())
    assert after["alice"] == before["alice"], "a regrade of others keeps alice's row"
    assert (after["bob"]["status"], float(after["bob"]["late_penalty"]), float(after["bob"]["score"])) == \
        ("graded", full, 0.0), after["bob"]
    assert (after["carol"]["status"], float(after["carol"]["score"])) == ("missing", 0.0), after["carol"]

    # A grader scores alice's written derivation in the formgrader (nbgrader's manual score): a regrade
    # of her submission keeps it, flagged for review as nbgrader does, and her row and the export count it.
    written = written_cells(source)
    assert written and after["alice"]["needs_manual_grade"] == "True", "alice's derivation awaits a grader"
    given = {gid: points / 2 for gid, points in written.items()}
    with Gradebook(db_url or gradebook.sqlite_url(grading), course_id) as gb:
        for gid, score in given.items():
            gb.find_grade(gid, ASSIGNMENT, ASSIGNMENT, "alice").manual_score = score
        gb.db.commit()
    nbgrader("grade", ASSIGNMENT, "submitted", "--out", str(grading), "--student", "alice",
             cwd=course, env=instructor, command="dgm-course")
    alice = _csv(grading / "grades.csv")["alice"]
    assert float(alice["score"]) == full + sum(given.values()) and alice["needs_manual_grade"] == "True", alice
    assert {gid: float(alice[gid]) for gid in given} == given, alice
    with Gradebook(db_url or gradebook.sqlite_url(grading), course_id) as gb:
        for gid, score in given.items():
            kept = gb.find_grade(gid, ASSIGNMENT, ASSIGNMENT, "alice")
            assert (kept.manual_score, kept.auto_score, kept.needs_manual_grade) == (score, None, True)
    full_alice = full + sum(given.values())
    nbgrader("export", "--out", str(tmp_path / "course.csv"), "--grading", str(course / "grading"), cwd=course,
             env=instructor, command="dgm-course")
    exported = _csv(tmp_path / "course.csv")
    assert {sid: (float(r["raw_score"]), float(r["late_submission_penalty"]), float(r["score"]))
            for sid, r in exported.items()} == {"alice": (full_alice, 0.0, full_alice), "bob": (full, full, 0.0),
                                                "carol": (0.0, 0.0, 0.0)}
    assert exported["carol"]["last_name"] == "Diaz"
    by_task = _csv(tmp_path / "course_tasks.csv")
    assert float(by_task["alice"]["total"]) == full_alice and float(by_task["bob"][ASSIGNMENT]) == 0.0
    assert {gid: float(by_task["alice"][f"{ASSIGNMENT}:{gid}"]) for gid in given} == given


def _csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        return {row["student_id"]: row for row in csv.DictReader(fh)}
