"""The conventions of docs/notebooks.md, checked statically on every source notebook and its release.

nbgrader's scoring rule makes some of them matter for grades: a test cell scores 0 on an error
or on any stderr output, and full marks when it does not fail; a bare last expression is its
"result" (``False`` scores full marks, a number partial credit). So every test cell asserts, and
no top-level statement of it is a bare expression (calls of ``assert*`` helpers excepted).
"""

from __future__ import annotations

import ast
import re

import nbformat
import pytest
from nbgrader.nbgraderformat import MetadataValidator

from dgm_course.course.cells import grade_cells, nbgrader_meta, solution_cells, written_cells
from dgm_course.course.grade import STUB

from ._course import ASSIGNMENT_IDS, MARKERS, cell_by_id, notebook, tasks
from .cycle_support import solution_regions

ids = pytest.mark.parametrize("assignment_id", ASSIGNMENT_IDS)
NBVAL_MARKS = re.compile(r"#\s*NBVAL_\w+")


def _statements(source: str) -> list[ast.stmt]:
    return ast.parse(source).body


def _asserts(stmt: ast.stmt) -> bool:
    """An ``assert``, or a call of a function named ``assert*`` (they raise or return None)."""
    if isinstance(stmt, ast.Assert):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        func = stmt.value.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name.startswith("assert")
    return False


def test_every_assignment_folder_has_its_notebook():
    assert ASSIGNMENT_IDS, "no source notebooks found"
    for assignment_id in ASSIGNMENT_IDS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+", assignment_id), f"{assignment_id}: name it NN_topic"


@ids
def test_nbgrader_metadata_is_valid_schema_3_and_every_cell_is_tracked(assignment_id):
    nb = notebook("source", assignment_id)
    MetadataValidator().validate_nb(nb)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        assert meta, f"cell {index} has no nbgrader metadata: every cell is locked, a solution or a test"
        assert meta["schema_version"] == 3
        assert meta.get("locked") or meta.get("solution"), f"cell {meta['grade_id']}: text and setup are locked"
        assert cell.get("id") == meta["grade_id"], f"cell {index}: its cell id is its grade id"
    grade_ids = [nbgrader_meta(c)["grade_id"] for c in nb.cells]
    assert len(set(grade_ids)) == len(grade_ids), "grade ids are unique"


@ids
def test_first_cells_are_the_introduction_and_the_setup(assignment_id):
    nb = notebook("source", assignment_id)
    intro, setup = nb.cells[0], nb.cells[1]
    assert intro.cell_type == "markdown" and intro.source.startswith("# ")
    for topic in ("You will learn", "Time", "Checking your work", "Validate"):
        assert topic in intro.source, f"the first cell says {topic!r}"
    assert setup.cell_type == "code" and nbgrader_meta(setup)["grade_id"] == "setup"
    assert re.search(r"^setup_notebook\(seed=\d+", setup.source, re.M), "the setup cell fixes the seed"


@ids
def test_students_are_told_what_scores_0_and_warned_before_they_submit(assignment_id):
    """The first cell names every reference the spec forbids; each test cell's visible part starts
    with ``assert_no_reference`` of this assignment on its own task (the set-up cell imports it)."""
    from dgm_course.course.verify import load_spec

    nb = notebook("source", assignment_id)
    intro = nb.cells[0].source
    assert "**What counts.**" in intro and "scores 0 when graded" in intro, "the first cell says what scores 0"
    for task in load_spec(assignment_id).tasks:
        for dotted in task.forbidden:
            named = f"`{dotted.rsplit('.', 1)[1]}`" in intro or dotted in intro  # the name, or a module in full
            assert named, f"the first cell names {dotted} ({task.task_id})"
    assert re.search(r"^from dgm_course\.runtime\.checks import .*\bassert_no_reference\b", nb.cells[1].source, re.M)
    for name in tasks(nb):
        first = cell_by_id(nb, f"test_{name}").source.splitlines()[0]
        assert first.startswith(f'assert_no_reference("{assignment_id}", {name})'), (
            f"test_{name} starts with the warning: {first!r}")


def _test_cells(nb: nbformat.NotebookNode) -> list[str]:
    """The grade ids of the test cells (every graded cell but the written answers)."""
    return [gid for gid in grade_cells(nb) if gid not in written_cells(nb)]


FLOW_NOTEBOOKS = [aid for aid in ASSIGNMENT_IDS if aid[:2] in {"01", "02", "03", "04", "05", "06"}]


@pytest.mark.parametrize("assignment_id", FLOW_NOTEBOOKS)
def test_every_flow_notebook_has_a_written_derivation_with_its_rubric(assignment_id):
    # nbgrader's manually graded answer: a Markdown solution cell with points, after a locked prompt;
    # the model answer and the rubric live in its solution region (the instructor's copy only)
    source = notebook("source", assignment_id)
    written = written_cells(source)
    assert written, "at least one written derivation, graded by hand"
    position = {nbgrader_meta(c)["grade_id"]: i for i, c in enumerate(source.cells)}
    for gid, points in written.items():
        assert gid.startswith("derive_") and points > 0
        prompt = source.cells[position[gid] - 1]
        assert nbgrader_meta(prompt)["grade_id"] == f"{gid}-text" and nbgrader_meta(prompt).get("locked")
        assert "graded by hand" in prompt.source and f"({points:g} points)" in prompt.source
        (region,) = solution_regions(cell_by_id(source, gid).source)
        text = "\n".join(region)
        assert "**Model answer.**" in text, f"{gid}: a model answer for the grader"
        rubric = re.search(r"\*\*Rubric \((\d+) points\)\.\*\*", text)
        assert rubric and float(rubric[1]) == points, f"{gid}: a rubric that gives out the cell's {points:g} points"


@ids
def test_tasks_are_top_level_functions_with_a_test_cell_right_after(assignment_id):
    nb = notebook("source", assignment_id)
    names, written = tasks(nb), set(written_cells(nb))
    assert len(names) >= 2
    assert set(solution_cells(nb)) - written == set(names), "every solution cell has a test cell test_<name>"
    assert set(grade_cells(nb)) - written == {f"test_{n}" for n in names}, "every test cell is named test_<task>"
    position = {nbgrader_meta(c)["grade_id"]: i for i, c in enumerate(nb.cells)}
    for name in names:
        cell = cell_by_id(nb, name)
        defined = [s.name for s in _statements(cell.source) if isinstance(s, ast.FunctionDef)]
        assert name in defined, f"the solution cell {name!r} defines the top-level function {name}"
        assert solution_regions(cell.source), f"{name}: a ### BEGIN SOLUTION / ### END SOLUTION region"
        # nbgrader puts a deleted test cell back after the cell before it: that must be the solution.
        assert position[f"test_{name}"] == position[name] + 1, f"test_{name} follows the solution cell {name}"
        assert not nbgrader_meta(cell).get("grade"), f"{name}: solution cells are not graded themselves"


@ids
@pytest.mark.parametrize("kind", ["source", "release"])
def test_test_cells_assert_and_never_end_on_a_bare_expression(assignment_id, kind):
    nb = notebook(kind, assignment_id)
    for grade_id in _test_cells(nb):
        cell = cell_by_id(nb, grade_id)
        body = _statements(cell.source)
        assert any(isinstance(n, ast.Assert) for n in ast.walk(ast.Module(body=body, type_ignores=[]))), grade_id
        for stmt in body:  # the last one above all: IPython shows a last bare expression as the result
            assert not isinstance(stmt, ast.Expr) or _asserts(stmt), (
                f"{grade_id}: the bare expression {ast.unparse(stmt)!r} may be taken as the cell's result")


@ids
def test_test_cells_have_visible_and_hidden_checks(assignment_id):
    source = notebook("source", assignment_id)
    for grade_id in _test_cells(source):
        text = cell_by_id(source, grade_id).source
        visible, _, rest = text.partition("### BEGIN HIDDEN TESTS")
        assert "assert" in visible, f"{grade_id}: visible checks before the hidden ones"
        assert "### END HIDDEN TESTS" in rest, f"{grade_id}: a ### BEGIN / END HIDDEN TESTS block"
        assert "manual_seed" in rest, f"{grade_id}: hidden checks draw inputs from a seeded generator of their own"


@ids
def test_release_has_no_solution_code_no_hidden_tests_and_no_markers(assignment_id):
    source, release = notebook("source", assignment_id), notebook("release", assignment_id)
    for marker in MARKERS:
        assert marker not in nbformat.writes(release)
    text = "\n".join(cell.source for cell in release.cells)
    for name, cell in solution_cells(source).items():
        released = cell_by_id(release, name).source
        if name in written_cells(source):
            assert released == STUB, f"{name}: a written answer is released as nbgrader's stub, rubric and all removed"
            continue
        assert "raise NotImplementedError()" in released, f"{name}: nbgrader's stub"
        for region in solution_regions(cell.source):
            for line in filter(None, (line.strip() for line in region)):
                assert line not in released.splitlines(), f"{name}: solution line {line!r} is in the release"
                assert len(line) < 16 or line not in text, f"solution line {line!r} is in the release"
    for grade_id in _test_cells(source):
        before, rest = cell_by_id(source, grade_id).source.split("### BEGIN HIDDEN TESTS")
        hidden, after = rest.split("### END HIDDEN TESTS")
        visible = {line.strip() for line in (before + after).splitlines()}  # a line shown anyway is no leak
        released = {line.strip() for line in cell_by_id(release, grade_id).source.splitlines()}
        for line in filter(None, (line.strip() for line in hidden.splitlines())):
            assert line in visible or line not in released, f"{grade_id}: hidden line {line!r} is in the release"


@ids
def test_no_cell_opts_out_of_nbval(assignment_id):
    for cell in notebook("source", assignment_id).cells:
        assert not NBVAL_MARKS.search(cell.source), f"{cell.id}: nbval checks every output (no NBVAL_* marks)"


def stated_minutes_rule(nb: nbformat.NotebookNode) -> int:
    """docs/notebooks.md's effort rule: a minute per 100 words of the Markdown a student reads (model
    answers left out), 10 minutes per task (a written derivation is one), rounded to 5 minutes."""
    words = sum(len(re.findall(r"\w+", c.source)) for c in nb.cells
                if c.cell_type == "markdown" and not nbgrader_meta(c).get("solution"))
    return 5 * round((words / 100 + 10 * len(solution_cells(nb))) / 5)


@ids
def test_the_stated_time_follows_one_rule_for_every_notebook(assignment_id):
    nb = notebook("source", assignment_id)
    stated = re.search(r"\*\*Time\.\*\* About (\d+) minutes of reading and coding", nb.cells[0].source)
    assert stated, "the first cell says '**Time.** About N minutes of reading and coding'"
    assert int(stated[1]) == stated_minutes_rule(nb), (
        f"the first cell says {stated[1]} minutes; docs/notebooks.md's rule gives {stated_minutes_rule(nb)}")
