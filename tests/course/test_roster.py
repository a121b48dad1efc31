"""The instructor's workflow around a grading run, on the tiny course (no torch): the course's roster
and due date from its gradebook, nbgrader's late penalty, a regrade of one student and a late one
that keeps everyone else, a grader's override in the gradebook, and the course-wide export.

ann submits on time, ben after the due date (nbgrader's ``zero`` penalty: his score goes), cat is
on the roster and submits nothing, dan is not on the roster and submits without a timestamp.
"""

from __future__ import annotations

import csv
import datetime

import nbformat
import pytest
from nbgrader.api import Gradebook

from dgm_course.course import roster
from dgm_course.course.export import export
from dgm_course.course.grade import GRADED, MISSING, grade

from ._course import TINY_ID as ID
from ._course import tiny_course
from .cycle_support import solve

pytestmark = pytest.mark.slow

DUE = datetime.datetime(2027, 1, 15, 17, 0, 0)  # UTC, as nbgrader stores it
ROSTER = [("ann", "Ann", "Lee", "ann@example.org"), ("ben", "Ben", "Ito", None), ("cat", "Cat", "Ruiz", None)]


def _rows(path) -> dict[str, dict]:
    with open(path, newline="") as fh:
        return {row["student_id"]: row for row in csv.DictReader(fh)}


def _submit(folder, nb, stamp: datetime.datetime | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{ID}.ipynb")
    if stamp is not None:  # nbgrader's format, as `nbgrader submit` writes it
        (folder / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))


@pytest.fixture(scope="module")
def course_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("roster-course")
    course, source = tiny_course(root)
    with open(root / "nbgrader_config.py", "a") as fh:
        fh.write("\nc.LateSubmissionPlugin.penalty_method = 'zero'\n")
    course = type(course).load(root)
    # What the instructor did with nbgrader's own commands (db student import, db assignment add).
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course.config.CourseDirectory.get("course_id", "")) as gb:
        for sid, first, last, email in ROSTER:
            gb.add_student(sid, first_name=first, last_name=last, email=email)
        gb.add_assignment(ID, duedate=DUE)
    from dgm_course.course.build import generate

    release_root = tmp_path_factory.mktemp("roster-release")
    generate(course, ID, release_root, solution=False)
    release = nbformat.read(release_root / course.release_name / ID / f"{ID}.ipynb", 4)
    solved = solve(release, source)
    submitted, out = root / "submitted", root / "grading" / ID
    _submit(submitted / "ann" / ID, solved, DUE - datetime.timedelta(hours=1))
    _submit(submitted / "ben" / ID, solved, DUE + datetime.timedelta(minutes=5))
    _submit(submitted / "dan" / ID, solved, None)
    first = grade(course, ID, submitted, out, timeout=60, progress=False, log=lambda _: None)
    return {"course": course, "root": root, "out": out, "submitted": submitted, "release": release,
            "solved": solved, "first": {r["student_id"]: r for r in first}}


def test_the_roster_and_due_date_come_from_the_course_gradebook(course_run):
    records = roster.read(course_run["course"], ID)
    assert [s.id for s in records.students] == ["ann", "ben", "cat"]
    assert records.duedate == DUE


def test_everyone_on_the_roster_gets_a_row_and_a_missing_one_scores_0(course_run):
    rows = course_run["first"]
    assert sorted(rows) == ["ann", "ben", "cat", "dan"]
    cat = rows["cat"]
    assert (cat["status"], cat["score"], cat["feedback"]) == (MISSING, 0.0, ""), cat
    assert cat["answer"] == 0.0 and cat["reason"] == "nothing submitted"
    assert not (course_run["out"] / "feedback" / "cat").exists()
    assert {rows[s]["status"] for s in ("ann", "ben", "dan")} == {GRADED}


def test_a_late_submission_gets_nbgraders_penalty_from_its_timestamp(course_run):
    rows = course_run["first"]
    full = rows["ann"]["score"]
    assert full > 0 and rows["ann"]["late_penalty"] == 0.0 and rows["dan"]["late_penalty"] == 0.0
    ben = rows["ben"]
    assert (ben["late_penalty"], ben["score"]) == (full, 0.0), ben  # penalty_method = 'zero'
    assert ben["timestamp"].startswith("2027-01-15 17:05:00")
    with Gradebook(f"sqlite:///{course_run['out'] / 'gradebook.db'}") as gb:
        submission = gb.find_submission(ID, "ben")
        assert submission.total_seconds_late == 300
        assert submission.late_submission_penalty == full and submission.score == full


@pytest.fixture(scope="module")
def regraded(course_run):
    """A grader's override for dan, then a regrade of ann (blank now) and eve's late first grading."""
    out, submitted = course_run["out"], course_run["submitted"]
    before = _rows(out / "grades.csv")
    dan_page = (out / before["dan"]["feedback"]).read_bytes()
    # A grader's override in the gradebook (what the formgrader writes), with its reason.
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        grade_ = gb.find_grade("test_stderr", ID, ID, "dan")
        grade_.manual_score = 1.0
        comment = gb.find_comment("answer", ID, ID, "dan")  # comments sit on solution cells
        comment.manual_comment = "stderr from a library warning: full marks (TA override)"
        gb.db.commit()
    _submit(submitted / "ann" / ID, course_run["release"], DUE - datetime.timedelta(minutes=30))  # a blank resubmission
    _submit(submitted / "eve" / ID, course_run["solved"], DUE - datetime.timedelta(minutes=1))
    rows = grade(course_run["course"], ID, submitted, out, timeout=60, progress=False, log=lambda _: None,
                 students=["ann", "eve"])
    return {"rows": rows, "before": before, "dan_page": dan_page}


def test_regrading_one_student_and_adding_a_late_one_keep_everyone_else(course_run, regraded):
    out, rows, before = course_run["out"], regraded["rows"], regraded["before"]
    assert [r["student_id"] for r in rows] == ["ann", "eve"]
    after = _rows(out / "grades.csv")
    assert sorted(after) == ["ann", "ben", "cat", "dan", "eve"]
    for sid in ("ben", "cat", "dan"):
        assert after[sid] == before[sid], sid
    assert float(after["ann"]["score"]) < float(before["ann"]["score"])
    assert after["eve"]["status"] == GRADED and float(after["eve"]["score"]) == course_run["first"]["ann"]["score"]
    assert (out / before["dan"]["feedback"]).read_bytes() == regraded["dan_page"]
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        assert gb.find_grade("test_stderr", ID, ID, "dan").manual_score == 1.0  # untouched
        assert sorted(s.id for s in gb.students) == ["ann", "ben", "cat", "dan", "eve"]


def test_the_course_export_is_nbgraders_format_with_overrides_and_a_task_table(course_run, regraded, tmp_path):
    out = tmp_path / "grades.csv"
    done = export(course_run["course"], out, grading=course_run["root"] / "grading")
    assert done.grades == out and done.not_graded == ()
    with open(out, newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                      "raw_score", "late_submission_penalty", "score", "max_score"]  # nbgrader export's
    rows = _rows(out)
    grades = _rows(course_run["out"] / "grades.csv")
    assert sorted(rows) == ["ann", "ben", "cat", "dan", "eve"]
    assert rows["cat"]["score"] == "0.0" and rows["ann"]["email"] == "ann@example.org"
    assert float(rows["ben"]["late_submission_penalty"]) == float(rows["ben"]["raw_score"]) > 0
    assert float(rows["ben"]["score"]) == 0.0
    # dan's override (+1 on test_stderr) counts in the export, not in grades.csv's verified score.
    assert float(rows["dan"]["score"]) == float(grades["dan"]["score"]) + 1
    tasks = _rows(done.tasks)
    assert list(next(iter(tasks.values()))) == ["student_id", "first_name", "last_name", "email", ID,
                                                *(f"{ID}:{t}" for t in ("answer", "bare_false", "stderr", "routed")),
                                                "total"]
    assert float(tasks["dan"][f"{ID}:stderr"]) == 1.0 and float(tasks["cat"][ID]) == 0.0
    for sid, row in tasks.items():
        assert float(row["total"]) == float(rows[sid]["score"]), sid


def test_an_export_with_no_graded_assignment_is_an_error(course_run, tmp_path):
    from dgm_course.course.config import CourseError

    with pytest.raises(CourseError, match="no assignment is graded yet"):
        export(course_run["course"], tmp_path / "grades.csv", grading=tmp_path / "nothing")


def test_the_formgrader_on_the_grading_folder_shows_the_verified_scores_and_takes_an_override(
        course_run, regraded, tmp_path):
    """nbgrader's formgrader, served from the grading folder, through its own REST API."""
    import json
    import urllib.request

    from .browser_support import jupyterlab  # a server only: no browser needed

    out = course_run["out"]
    grades = _rows(out / "grades.csv")
    with jupyterlab(out, tmp_path / "home") as lab:
        def api(path: str, body: dict | None = None):
            request = urllib.request.Request(f"{lab.url}/formgrader/api/{path}", method="PUT" if body else "GET",
                                             data=json.dumps(body).encode() if body else None,
                                             headers={"Authorization": f"token {lab.token}"})
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())

        shown = {s["student"]: s for s in api(f"submissions/{ID}")}
        assert sorted(shown) == ["ann", "ben", "dan", "eve"]  # cat submitted nothing
        for sid in ("ann", "ben", "eve"):  # nbgrader's raw score: the verified one before the late penalty
            assert shown[sid]["score"] == float(grades[sid]["score"]) + float(grades[sid]["late_penalty"]), sid
        assert shown["dan"]["score"] == float(grades["dan"]["score"]) + 1  # the override of the fixture
        notebook = next(n for n in api(f"submitted_notebooks/{ID}/{ID}") if n["student"] == "ann")
        grade_ = next(g for g in api(f"grades?submission_id={notebook['id']}") if g["name"] == "test_answer")
        comment = next(c for c in api(f"comments?submission_id={notebook['id']}") if c["name"] == "answer")
        assert grade_["auto_score"] == float(grades["ann"]["answer"]) == 0.0  # the blank resubmission
        api(f"grade/{grade_['id']}", {"manual_score": 1.0, "extra_credit": 0.0})
        api(f"comment/{comment['id']}", {"manual_comment": "answered on paper in the exam room (TA)"})
    done = export(course_run["course"], tmp_path / "grades.csv", grading=course_run["root"] / "grading")
    assert float(_rows(done.tasks)["ann"][f"{ID}:answer"]) == 1.0
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        assert gb.find_comment("answer", ID, ID, "ann").manual_comment.startswith("answered on paper")
