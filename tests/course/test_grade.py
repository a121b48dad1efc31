"""Autograding each assignment in a temp grading folder: one batch holds every kind of submission.

Students of the batch (built from the committed release and the source's solution regions):

- ``ada``  the solution, model derivations included       -> full marks on the tests; the written
                                                            derivations (01-06) await a grader
- ``bob``  the untouched release                         -> 0 on every graded cell, nothing by hand
- ``cy``   the first task left unsolved and its test cell deleted; the second task's test cell
           deleted too (that task solved); every other solution warns and writes to stderr (Python
           and C level) when called                      -> both test cells are put back and run;
                                                            cy loses exactly the first task's points
- ``eve``  corrupt JSON, ``fay`` a renamed notebook, ``gus`` a test cell deleted together with its
           solution cell                                 -> not graded, with the reason, while the
                                                            rest of the batch is graded
- ``hal``  the solution with its written answer cells deleted -> the answers come back empty and
           score 0; the tests score full marks
"""

from __future__ import annotations

import csv

import nbformat
import pytest

from dgm_course.course.cells import grade_cells, written_cells
from dgm_course.course.grade import GRADED, INVALID, grade

from ._course import ASSIGNMENT_IDS, COURSE, cell_by_id, notebook, tasks, with_stray_output
from .cycle_support import solve

pytestmark = pytest.mark.slow


def _write(nb: nbformat.NotebookNode | str, folder, assignment_id: str, name: str | None = None) -> None:
    target = folder / assignment_id
    target.mkdir(parents=True)
    path = target / (name or f"{assignment_id}.ipynb")
    if isinstance(nb, str):
        path.write_text(nb)
    else:
        nbformat.write(nb, path)


def _without(nb: nbformat.NotebookNode, *grade_ids: str) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in grade_ids]
    return nb


def _unsolve(solved: nbformat.NotebookNode, release: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    solved = nbformat.from_dict(solved)
    cell_by_id(solved, name).source = cell_by_id(release, name).source
    return solved


@pytest.fixture(scope="module", params=ASSIGNMENT_IDS)
def batch(request, tmp_path_factory):
    assignment_id = request.param
    source, release = notebook("source", assignment_id), notebook("release", assignment_id)
    names = tasks(source)
    assert len(names) >= 2, "the batch needs two tasks (convention: every notebook has at least two)"
    first, second = names[0], names[1]
    solved = solve(release, source)

    noisy_source = nbformat.from_dict(source)
    for name in names[1:]:
        cell_by_id(noisy_source, name).source = with_stray_output(cell_by_id(noisy_source, name).source)
    noisy = _unsolve(solve(release, noisy_source), release, first)

    root = tmp_path_factory.mktemp(f"grade-{assignment_id}")
    submitted = root / "submitted"
    _write(solved, submitted / "ada", assignment_id)
    _write(release, submitted / "bob", assignment_id)
    _write(_without(noisy, f"test_{first}", f"test_{second}"), submitted / "cy", assignment_id)
    _write('{"cells": [', submitted / "eve", assignment_id)
    _write(solved, submitted / "fay", assignment_id, name="my_homework.ipynb")
    _write(_without(solved, first, f"test_{first}"), submitted / "gus", assignment_id)
    _write(_without(solved, *written_cells(source)), submitted / "hal", assignment_id)
    out = root / "grading"
    # Two students at a time: each is about one core's work, and the grades do not depend on it.
    rows = grade(COURSE, assignment_id, submitted, out, workers=2, progress=False, log=lambda _: None)
    return {"id": assignment_id, "rows": {r["student_id"]: r for r in rows}, "out": out, "names": names,
            "max": grade_cells(source), "written": written_cells(source)}


def _points(batch, student: str) -> dict[str, float]:
    return {name: batch["rows"][student][name] for name in batch["names"]}


def _full(batch) -> dict[str, float]:
    return {gid.removeprefix("test_"): points for gid, points in batch["max"].items() if gid not in batch["written"]}


def test_solution_scores_full_marks_and_its_derivations_await_a_grader(batch):
    row = batch["rows"]["ada"]
    assert (row["status"], row["reason"]) == (GRADED, "")
    assert _points(batch, "ada") == _full(batch)
    assert row["score"] == sum(_full(batch).values())  # a written derivation scores what a grader gives it
    assert row["max_score"] == sum(batch["max"].values())
    assert all(row[gid] == 0.0 for gid in batch["written"])
    assert row["needs_manual_grade"] is bool(batch["written"])
    page = (batch["out"] / row["feedback"]).read_text()
    for gid in batch["written"]:
        assert f"Written answer {gid}: graded by hand" in page


def test_untouched_release_scores_zero_everywhere_and_needs_no_manual_grading(batch):
    row = batch["rows"]["bob"]
    assert row["status"] == GRADED, row["reason"]
    assert _points(batch, "bob") == {name: 0.0 for name in batch["names"]}
    assert row["score"] == 0
    assert row["needs_manual_grade"] is False  # an unanswered derivation scores 0, as in nbgrader
    page = (batch["out"] / row["feedback"]).read_text()
    for gid in batch["written"]:
        assert f"Written answer {gid}: no answer was written" in page


def test_a_deleted_written_answer_comes_back_empty_and_the_rest_is_graded(batch):
    # nbgrader can put a deleted cell back only after a solution or test cell: the grader restores a
    # written answer after its prompt, empty, so that only the answer scores 0
    row = batch["rows"]["hal"]
    assert (row["status"], row["reason"]) == (GRADED, "")
    assert _points(batch, "hal") == _full(batch)
    assert all(row[gid] == 0.0 for gid in batch["written"]) and row["needs_manual_grade"] is False


def test_one_task_wrong_loses_exactly_that_tasks_points_and_stray_stderr_costs_nothing(batch):
    first = batch["names"][0]
    assert _points(batch, "cy") == {**_full(batch), first: 0.0}
    autograded = nbformat.read(batch["out"] / "autograded" / "cy" / batch["id"] / f"{batch['id']}.ipynb", 4)
    later_tests = [cell_by_id(autograded, f"test_{name}") for name in batch["names"][1:]]
    streams = [o for cell in later_tests for o in cell.outputs if o.output_type == "stream"]
    assert streams and all(o.name == "stdout" for o in streams), "stray stderr must reach stdout, not stderr"
    shown = "".join(o.text for o in streams)
    for stray in ("a stray warning", "a stray line on stderr", "a stray C-level line on stderr"):
        assert stray in shown


def test_deleted_test_cells_are_put_back_and_run(batch):
    first, second = batch["names"][:2]
    autograded = nbformat.read(batch["out"] / "autograded" / "cy" / batch["id"] / f"{batch['id']}.ipynb", 4)
    for name in (first, second):
        cell = cell_by_id(autograded, f"test_{name}")
        assert "was missing from the submission" in cell.source
        assert cell.execution_count is not None
    errors = [o for o in cell_by_id(autograded, f"test_{first}").outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "NotImplementedError"  # the put-back test scores 0 ...
    assert batch["rows"]["cy"][second] == _full(batch)[second]  # ... and the other one full marks


@pytest.mark.parametrize("student, reason", [("eve", "not valid JSON"), ("fay", "renamed notebook"),
                                             ("gus", "missing grade cell")])
def test_an_ungradable_submission_is_reported_while_the_rest_is_graded(batch, student, reason):
    row = batch["rows"][student]
    assert row["status"] == INVALID and reason in row["reason"], row
    assert row["score"] == 0 and all(row[name] == "" for name in batch["names"])
    page = (batch["out"] / row["feedback"]).read_text()
    assert "could not be graded" in page and reason in page
    assert batch["rows"]["ada"]["status"] == GRADED


def test_every_student_has_a_csv_row_and_a_feedback_page(batch):
    with open(batch["out"] / "grades.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["student_id"] for r in rows] == sorted(batch["rows"])
    assert list(rows[0])[:8] == ["student_id", "status", "reason", "score", "max_score", "late_penalty", "timestamp",
                                 "needs_manual_grade"]
    assert [r["status"] for r in rows] == [batch["rows"][r["student_id"]]["status"] for r in rows]
    for row in rows:
        page = batch["out"] / row["feedback"]
        assert page.is_file() and page.stat().st_size > 0
    ada = (batch["out"] / batch["rows"]["ada"]["feedback"]).read_text()
    assert f"Score: {batch['rows']['ada']['score']}" in ada  # nbgrader's own feedback page
