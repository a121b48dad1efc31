"""The gradebook on a real PostgreSQL server (tests/course/postgres_support.py): several graders and
the formgrader write it at the same moment and no grade is lost; an unreachable server stops
grading before anything is written. Grading a whole batch into the server, and the exchange cycle
on it, are in test_exchange_cycle.py."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from nbgrader.api import Gradebook, InvalidEntry

from dgm_course.course import gradebook
from dgm_course.course.cli import main
from dgm_course.course.config import CONFIG_FILE, Course, CourseError
from dgm_course.course.grade import GRADED, StudentResult, _prepare, _write_gradebook

from ._course import COURSE, ROOT

ASSIGNMENTS = ("01_change_of_variables", "02_composition")
STUDENTS = [f"s{i:02d}" for i in range(12)]


def _course(folder: Path) -> Course:
    folder.mkdir()
    shutil.copy(ROOT / CONFIG_FILE, folder / CONFIG_FILE)
    for aid in ASSIGNMENTS:
        shutil.copytree(ROOT / COURSE.source_name / aid, folder / COURSE.source_name / aid)
    return Course.load(folder)


def _expected(aid: str, index: int, max_scores: dict[str, float]) -> dict[str, float]:
    """A different result for every student and assignment: full points on every other cell."""
    return {gid: points if (index + k + len(aid)) % 2 else 0.0 for k, (gid, points) in enumerate(max_scores.items())}


def test_concurrent_graders_and_the_formgrader_lose_no_grade(postgres, tmp_path):
    url = postgres.create_database()
    course = _course(tmp_path / "course")
    course_id = course.config.CourseDirectory.course_id
    maxima = {}
    for aid in ASSIGNMENTS:  # each assignment's grading folder, its cells added to the server's gradebook
        _prepare(course, aid, tmp_path / f"grading-{aid}", url)
        assert not (tmp_path / f"grading-{aid}" / "gradebook.db").exists(), "the grades go to the server only"
        with Gradebook(url, course_id) as gb:
            maxima[aid] = {c.name: c.max_score for c in gb.find_notebook(aid, aid).grade_cells}

    # Two graders per assignment (each with half the cohort) and the formgrader: for each student,
    # all five start together, so that three of them find the student missing and insert it at once.
    writers = 5
    barrier = threading.Barrier(writers, timeout=60)
    formgrader_conflicts = []

    def grader(aid: str, part: int) -> None:
        batch = SimpleNamespace(course=course, assignment_id=aid, course_id=course_id, db_url=url)
        for index, sid in enumerate(STUDENTS):
            barrier.wait()
            if index % 2 == part:
                result = StudentResult(sid, GRADED, scores=_expected(aid, index, maxima[aid]))
                _write_gradebook(batch, result, tmp_path / "no-submission-folder")

    def formgrader() -> None:  # nbgrader's own calls, as its "add student" does: no retry of ours
        for sid in STUDENTS:
            barrier.wait()
            try:
                with Gradebook(url, course_id) as gb:
                    gb.update_or_create_student(sid, last_name=sid.upper())
            except InvalidEntry:
                formgrader_conflicts.append(sid)

    jobs = [(grader, aid, part) for aid in ASSIGNMENTS for part in (0, 1)] + [(formgrader,)]
    with ThreadPoolExecutor(writers) as pool:
        for future in [pool.submit(*job) for job in jobs]:
            future.result()

    with Gradebook(url, course_id) as gb:
        assert sorted(s.id for s in gb.students) == STUDENTS
        for aid in ASSIGNMENTS:
            for index, sid in enumerate(STUDENTS):
                notebook = gb.find_submission_notebook(aid, aid, sid)
                got = {g.name: g.auto_score for g in notebook.grades}
                assert got == _expected(aid, index, maxima[aid]), (aid, sid)
                assert gb.find_submission(aid, sid).score == sum(got.values())
    print(f"the formgrader's own insert lost the race for {len(formgrader_conflicts)} of {len(STUDENTS)} students")


def test_a_write_that_keeps_conflicting_fails_after_its_attempts(postgres):
    url = postgres.create_database()
    tries = []

    def conflicting(gb) -> None:
        tries.append(1)
        raise InvalidEntry("another writer inserted it first")

    with pytest.raises(InvalidEntry):
        gradebook.write(url, "dgm-course", conflicting, attempts=3)
    assert len(tries) == 3


def test_an_unreachable_database_stops_grading_before_anything_is_written(tmp_path, capsys):
    submitted = tmp_path / "submitted" / "ada" / ASSIGNMENTS[0]
    submitted.mkdir(parents=True)
    shutil.copy(ROOT / COURSE.solution_name / ASSIGNMENTS[0] / f"{ASSIGNMENTS[0]}.ipynb", submitted)
    out = tmp_path / "grading"
    code = main(["--course", str(ROOT), "grade", ASSIGNMENTS[0], str(tmp_path / "submitted"), "--out", str(out),
                 "--db-url", "postgresql://grader:secret@127.0.0.1:1/gradebook"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot reach the gradebook database postgresql://grader:***@127.0.0.1:1/gradebook" in err, err
    assert "secret" not in err
    assert not out.exists()


def test_an_sqlite_url_is_not_a_server():
    with pytest.raises(CourseError, match="is for a database server"):
        gradebook.server_url(COURSE, "sqlite:///elsewhere.db")
    assert gradebook.server_url(COURSE, None) is None  # the course's own configuration names none


def _at_once(action, n: int = 2) -> list[str]:
    """Run ``action()`` in ``n`` threads released together; the failures, as text."""
    barrier, failures = threading.Barrier(n, timeout=60), []

    def run() -> None:
        barrier.wait()
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")

    with ThreadPoolExecutor(n) as pool:
        for future in [pool.submit(run) for _ in range(n)]:
            future.result()
    return failures


def test_two_graders_meeting_an_empty_database_both_set_it_up(postgres, tmp_path):
    """The first graders of a term meet an empty database and create nbgrader's tables at the same
    moment. nbgrader alone loses that race (the control: one of two fails on the catalog); through
    gradebook.ensure_schema, which grading calls first, neither does, in every trial."""
    trials = 5
    raw = [f for _ in range(trials) for f in _at_once(lambda url=postgres.create_database(): Gradebook(url).close())]
    assert raw, "the control: two of nbgrader's Gradebook() on an empty database at once should conflict"
    for _ in range(trials):
        url = postgres.create_database()
        assert _at_once(lambda: gradebook.ensure_schema(url, "dgm-course")) == []
    # And whole grading set-ups of two assignments at once, into one empty database.
    url = postgres.create_database()
    course = _course(tmp_path / "course")
    aids = iter(ASSIGNMENTS)
    lock = threading.Lock()

    def prepare() -> None:
        with lock:
            aid = next(aids)
        _prepare(course, aid, tmp_path / f"grading-{aid}", url)

    assert _at_once(prepare, len(ASSIGNMENTS)) == []
    with Gradebook(url, course.config.CourseDirectory.course_id) as gb:
        assert sorted(a.name for a in gb.assignments) == sorted(ASSIGNMENTS)
        for aid in ASSIGNMENTS:
            assert gb.find_notebook(aid, aid).grade_cells


def test_an_unreachable_course_gradebook_stops_grading_before_anything_is_written(tmp_path, capsys):
    """The same when the server is the course's own CourseDirectory.db_url (where the roster is read)."""
    course = _course(tmp_path / "course")
    with open(course.root / CONFIG_FILE, "a") as fh:
        fh.write("\nc.CourseDirectory.db_url = 'postgresql://grader:secret@127.0.0.1:1/gradebook'\n")
    (tmp_path / "submitted" / "ada" / ASSIGNMENTS[0]).mkdir(parents=True)
    out = tmp_path / "grading"
    code = main(["--course", str(course.root), "grade", ASSIGNMENTS[0], str(tmp_path / "submitted"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the gradebook database postgresql://grader:***@127.0.0.1:1" in err, err
    assert not out.exists()
