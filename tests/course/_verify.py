"""What the tests of a graded notebook share: its test cells and its verification spec against wrong answers.

Each ``test_verify_<id>.py`` (and, for its test cells, ``test_notebook_01.py``) tests two things:

1. In this process (no kernel): the set-up cells, then a wrong task function, then the task's
   test cell from the source. The visible checks must name the mistake (:func:`visible_failure`);
   the hidden ones must catch what the visible ones let through
   (:func:`assert_only_the_hidden_checks_fail`); the solution passes both.
2. The out-of-kernel verifier with the notebook's spec (:func:`verify_submissions`): the solution
   earns full marks, the blank release 0, and submissions made of the release with some solution
   cells replaced earn exactly the points of their correct parts.

The tests every notebook gets are written once, here. A test module imports those it wants by
name, with :func:`pytest_generate_tests` and the fixture :func:`namespace`; pytest collects them
in that module, under their own names, with that module's data:

- ``SOURCE``: the source notebook; ``TASKS``: its task names; ``POINTS``: each task's points;
- ``SETUP_CELLS`` (optional, default ``("setup",)``): the set-up cells the test cells rely on;
- ``WRONG``: ``{hint: (task, code)}``, answers that fail the visible checks with ``hint`` in the
  message (:func:`test_visible_checks_name_the_mistake`), and every word of ``VISIBLE_MESSAGES_SAY``
  (optional: ``("expected", "got")`` where each message shows both values);
- ``PASS_VISIBLE``: ``{task: (code, message)}``, answers that pass the visible checks and fail the
  hidden ones with ``message`` (:func:`test_hidden_checks_catch_what_the_visible_ones_miss`);
- a module-scoped fixture ``verified``: what :func:`verify_submissions` returns (the verifier tests).

These asserts are not rewritten by pytest (this is no test module): each says what it saw.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable

import nbformat
import pytest

from dgm_course.course.verify import TaskVerdict, grading_seed, verify_submission

from ._course import COURSE, ROOT, cell_by_id, hidden_test_code, setup_namespace, task_test_code

Verdicts = dict[str, TaskVerdict]  # by task

# ---------------------------------------------------------------------------------------------
# In this process: the test cells


@pytest.fixture
def namespace(request, monkeypatch) -> dict:
    """The namespace of the test module's ``SETUP_CELLS`` (default: the set-up cell), run in this process."""
    module = request.module
    return setup_namespace(module.SOURCE, monkeypatch, getattr(module, "SETUP_CELLS", ("setup",)))


def visible_failure(namespace: dict, source: nbformat.NotebookNode, name: str, code: str) -> str:
    """The message with which task ``name``'s visible checks reject ``code`` (they must reject it)."""
    exec(code, namespace)
    with pytest.raises(AssertionError) as failure:
        exec(task_test_code(source, name, hidden=False), namespace)
    return str(failure.value)


def assert_only_the_hidden_checks_fail(namespace: dict, source: nbformat.NotebookNode, name: str, code: str,
                                       message: str, errors: type | tuple[type, ...] = AssertionError) -> None:
    """``code`` passes task ``name``'s visible checks and fails its hidden ones with ``message``."""
    exec(code, namespace)
    exec(task_test_code(source, name, hidden=False), namespace)
    with pytest.raises(errors, match=re.escape(message)):
        exec(task_test_code(source, name, hidden=True), namespace)


def assert_the_hidden_checks_alone_fail(namespace: dict, source: nbformat.NotebookNode, name: str, code: str,
                                        message: str) -> None:
    """``code`` fails the hidden part of task ``name``'s test cell, run without its visible part,
    with ``message``: for an answer the visible checks catch already (the identity with log-det 0)."""
    exec(code, namespace)
    with pytest.raises(AssertionError, match=re.escape(message)):
        exec(hidden_test_code(source, name), namespace)


def _over(argname: str, attribute: str) -> Callable:
    """Mark a shared test to be parametrized over the test module's ``attribute`` (by :func:`pytest_generate_tests`)."""

    def mark(test: Callable) -> Callable:
        test.parametrized_over = (argname, attribute)
        return test

    return mark


def pytest_generate_tests(metafunc) -> None:
    """Parametrize each shared test over its data in the module that collects it (``WRONG``, ``TASKS``, ...)."""
    over = getattr(metafunc.function, "parametrized_over", None)
    if over is not None:
        argname, attribute = over
        metafunc.parametrize(argname, list(getattr(metafunc.module, attribute)))


@_over("hint", "WRONG")
def test_visible_checks_name_the_mistake(request, namespace, hint):
    name, code = request.module.WRONG[hint]
    message = visible_failure(namespace, request.module.SOURCE, name, code)
    assert hint in message, message
    for word in getattr(request.module, "VISIBLE_MESSAGES_SAY", ()):
        assert word in message, message


@_over("name", "PASS_VISIBLE")
def test_hidden_checks_catch_what_the_visible_ones_miss(request, namespace, name):
    code, message = request.module.PASS_VISIBLE[name]
    # a detached loss fails in autograd (RuntimeError), not in an assert
    assert_only_the_hidden_checks_fail(namespace, request.module.SOURCE, name, code, message,
                                       errors=(AssertionError, RuntimeError))


@_over("name", "TASKS")
def test_the_solution_passes_visible_and_hidden_checks(request, namespace, name):
    source = request.module.SOURCE
    exec(cell_by_id(source, name).source, namespace)
    exec(task_test_code(source, name, hidden=True), namespace)


# ---------------------------------------------------------------------------------------------
# Out of kernel: the verifier


def with_answers(nb: dict, answers: dict[str, str]) -> dict:
    """A copy of the notebook ``nb`` (its JSON) whose cells with these ``grade_id`` hold these sources."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    return nb


def solution_answers(source: nbformat.NotebookNode, tasks) -> dict[str, str]:
    """The source's solution cell of each task, by ``grade_id``: to submit with one of them changed."""
    return {name: cell_by_id(source, name).source for name in tasks}


def verify_submissions(assignment_id: str, on_release: dict[str, dict[str, str]],
                       on_source: dict[str, dict[str, str]] | None = None) -> dict[str, Verdicts]:
    """The verifier's verdicts, by task, of the source notebook itself (``"solution"``), the blank
    release (``"release"``) and each named submission: the release with the solution cells
    ``on_release[name]`` (``grade_id -> source``), or the source with those of ``on_source[name]``.

    All are graded with one student's seed, one after the other: the verifier parses code with
    ``ast``, and on CPython 3.11.7 ``ast.parse`` in two threads at once fails now and then with
    "AST constructor recursion depth mismatch" (CPython gh-106905; seen here with two threads).
    """
    path = f"{assignment_id}/{assignment_id}.ipynb"
    source = json.loads((ROOT / COURSE.source_name / path).read_text())
    release = json.loads((ROOT / COURSE.release_name / path).read_text())
    submissions = {"solution": source, "release": release,
                   **{name: with_answers(release, answers) for name, answers in on_release.items()},
                   **{name: with_answers(source, answers) for name, answers in (on_source or {}).items()}}
    seed = grading_seed("dgm-course", assignment_id, "student-1")
    return {name: {v.task_id: v for v in verify_submission(assignment_id, nb, source, seed=seed)}
            for name, nb in submissions.items()}


def scores(verdicts: Verdicts) -> dict[str, float]:
    return {task: v.points for task, v in verdicts.items()}


def reasons(verdicts: Verdicts) -> dict[str, str]:
    return {task: v.reason for task, v in verdicts.items()}


def assert_every_task_scores_zero(verdicts: Verdicts, tasks, reason: str) -> None:
    """Each of ``tasks`` (and no other) scores 0, with ``reason`` in its feedback."""
    assert scores(verdicts) == dict.fromkeys(tasks, 0.0), reasons(verdicts)
    assert all(reason in v.reason for v in verdicts.values()), reasons(verdicts)


def test_the_verifier_gives_the_solution_full_marks(request, verified):
    verdicts = verified["solution"]
    assert scores(verdicts) == request.module.POINTS, reasons(verdicts)
    assert all(v.reason == "all checks passed" for v in verdicts.values()), reasons(verdicts)


def test_the_verifier_gives_the_blank_release_zero(request, verified):
    assert_every_task_scores_zero(verified["release"], request.module.TASKS, "NotImplementedError")
