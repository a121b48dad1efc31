"""A student's session with notebook 01 in JupyterLab, in a real headless Chromium.

The test starts JupyterLab on a free localhost port (temp ``HOME``, a token) over two students'
copies of the committed release, and drives it with clicks and keystrokes:

- alice runs all cells and meets the ``NotImplementedError`` of the first empty solution region;
  types a wrong answer (the log-det forgotten), runs it and its visible test cell, and reads what
  was expected, what came back and for which input; types the solution, and the test passes;
  types the other tasks' solutions, and nbgrader's Validate button reports success;
- bob clicks Validate on the blank notebook and it reports the failing cell.

A screenshot of each step goes to pytest's temp folder; their paths are printed. Without
Chromium, chromedriver or selenium the module is skipped with the reason (see
``browser_support.browser_skip_reason``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from traitlets.config.loader import PyFileConfigLoader

from tests.course.browser_support import Lab, browser_skip_reason, chromium, jupyterlab
from tests.course.cycle_support import ROOT, STUB, hub_config, solution_regions, solve

_SKIP = browser_skip_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_SKIP is not None, reason=f"browser test: {_SKIP}")]

ASSIGNMENT = "01_change_of_variables"
DERIVATION = "f = g^-1 maps x to A^-1 (x - b), so |det J_f| = 1 / |det A| and the Gaussian has covariance A A^T."
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
COURSE_ROOT = ROOT
# A first attempt at Task 1 that forgets the log-det, and what the visible test calls that mistake.
WRONG_TASK_1 = ["    z, log_det = f(x)", "    return log_prob_z(z)"]
WRONG_TASK_1_DIAGNOSIS = "the log|det J_f| term is missing"


def _course_config():
    return PyFileConfigLoader("nbgrader_config.py", path=str(COURSE_ROOT)).load_config()


def _course_path(folder: str) -> Path:
    return COURSE_ROOT / _course_config().CourseDirectory[folder] / ASSIGNMENT / NOTEBOOK


@pytest.fixture(scope="module")
def notebooks():
    """(released, source) notebook 01, as committed."""
    return (nbformat.read(_course_path("release_directory"), as_version=4),
            nbformat.read(_course_path("source_directory"), as_version=4))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, notebooks):
    """One JupyterLab and one browser for the module, over alice's and bob's copies of the release."""
    root = tmp_path_factory.mktemp("students")
    for student in ("alice", "bob"):
        (root / student).mkdir()
        shutil.copy(_course_path("release_directory"), root / student / NOTEBOOK)
    shots = tmp_path_factory.mktemp("screenshots")
    # The students' configuration on a shared hub (docs/instructor.md), with an empty exchange.
    config = hub_config(tmp_path_factory.mktemp("exchange"), _course_config().CourseDirectory.course_id)
    with jupyterlab(root, tmp_path_factory.mktemp("lab-home"), config) as server, chromium(shots) as driver:
        yield Lab(driver, server, shots)


@pytest.fixture(autouse=True)
def list_screenshots(lab: Lab, capsys):
    """Print the paths of the screenshots a test took, also when it fails."""
    before = len(lab.screenshots)
    yield
    with capsys.disabled():
        print("\nscreenshots:", *[f"  {p}" for p in lab.screenshots[before:]], sep="\n")


def _solution_cells(notebook) -> list[int]:
    return [i for i, c in enumerate(notebook.cells) if c.metadata.get("nbgrader", {}).get("solution")
            and c.cell_type == "code" and STUB in c.source]


def _is_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def test_student_solves_and_validates(lab: Lab, notebooks):
    released, source = notebooks
    by_id = {c.metadata.nbgrader["grade_id"]: c for c in source.cells if "nbgrader" in c.metadata}
    path = f"alice/{NOTEBOOK}"
    lab.open(path, len(released.cells))

    # Run all: execution stops at the first empty solution region, with its NotImplementedError.
    lab.run_all()
    tasks = _solution_cells(released)
    first = tasks[0]
    failing = next((i for i in range(len(released.cells)) if lab.error_output(i)), None)
    assert failing is not None, "Run All Cells raised nothing in the blank notebook"
    lab.scroll_to(failing, output=True)
    lab.screenshot("run-all-not-implemented")
    assert "NotImplementedError" in lab.error_output(failing), lab.error_output(failing)
    assert first <= failing, f"cell {failing} failed before the first task (cell {first})"
    assert all(not lab.error_output(i) for i in range(failing)), "a cell before the first task failed"
    test = next(i for i in range(first + 1, len(released.cells)) if _is_test(released.cells[i]))

    def run_task(index: int) -> None:
        for cell in range(index, test + 1):
            if released.cells[cell].cell_type == "code":
                lab.run_cell(cell)

    # Task 1, a classic mistake first: the visible test says what it expected, what came back,
    # for which input, and which mistake it looks like.
    lab.replace_lines(first, "# YOUR CODE HERE", STUB, WRONG_TASK_1)
    run_task(first)
    lab.scroll_to(test, output=True)
    lab.screenshot("task-1-wrong-answer-explained")
    message = lab.error_output(test)
    for word in ("AssertionError", "expected", "got", "input x", WRONG_TASK_1_DIAGNOSIS):
        assert word in message, f"the failing visible test does not say {word!r}:\n{message}"

    # Task 1 solved: type the solution over the mistake, run it and its visible test: it passes.
    def type_solution(index: int, first_line: str = "# YOUR CODE HERE", last_line: str = STUB) -> None:
        for region in solution_regions(by_id[released.cells[index].metadata.nbgrader["grade_id"]].source):
            lab.replace_lines(index, first_line, last_line, region)

    type_solution(first, WRONG_TASK_1[0].strip(), WRONG_TASK_1[-1].strip())
    run_task(first)
    lab.scroll_to(first)
    lab.screenshot("task-1-visible-test-passes")
    for index in range(first, test + 1):
        assert not lab.error_output(index), f"cell {index} failed after the solution:\n{lab.error_output(index)}"

    # The other tasks and the written derivation, then Validate (it saves the notebook first):
    # success. An unanswered derivation would fail it ("You did not provide a response").
    for index in tasks[1:]:
        type_solution(index)
    written = [i for i, c in enumerate(released.cells) if c.cell_type == "markdown"
               and c.metadata.get("nbgrader", {}).get("solution")]
    assert written, "notebook 01 asks for a written derivation"
    for index in written:
        lab.edit_markdown(index)
        lab.replace_lines(index, "YOUR ANSWER HERE", "YOUR ANSWER HERE", [DERIVATION])
        lab.render_markdown(index)
    passed, message = lab.validate()
    lab.screenshot("validate-solved")
    lab.close_dialog()
    assert passed, f"Validate did not report success for the solved notebook:\n{message}"
    assert "Success" in message, message
    # What was typed is exactly the reference solution (the saved file, as nbgrader validated it).
    saved = nbformat.read(lab.server.root / path, as_version=4)
    expected = solve(released, source)
    for index in tasks:
        assert saved.cells[index].source.rstrip() == expected.cells[index].source.rstrip(), f"cell {index} as typed"
    for index in written:
        assert saved.cells[index].source.strip() == DERIVATION, f"cell {index} as typed"


def test_blank_notebook_fails_validation(lab: Lab, notebooks):
    released, _ = notebooks
    lab.open(f"bob/{NOTEBOOK}", len(released.cells))
    passed, message = lab.validate()
    lab.screenshot("validate-blank")
    lab.close_dialog()
    assert not passed, f"Validate passed a blank notebook:\n{message}"
    assert "failed" in message and "NotImplementedError" in message, message
