"""The nbgrader cells of a notebook, by the course's conventions (see docs/notebooks.md).

A task is a function ``<name>`` written in the solution cell with grade id ``<name>`` and graded
by the test cell with grade id ``test_<name>`` right after it. A *written answer* (a derivation)
is a Markdown cell that is both a solution and graded: nbgrader's manually graded answer, scored
by a grader in the formgrader against the rubric in the source's solution region.

Example:
    >>> import nbformat
    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> test = new_code_cell("assert f(1) == 2", metadata={"nbgrader": {
    ...     "grade": True, "grade_id": "test_f", "points": 2, "locked": True, "solution": False}})
    >>> grade_cells(new_notebook(cells=[test]))
    {'test_f': 2.0}
    >>> task_name("test_f")
    'f'
    >>> derive = nbformat.v4.new_markdown_cell("YOUR ANSWER HERE", metadata={"nbgrader": {
    ...     "grade": True, "solution": True, "grade_id": "derive_g", "points": 2, "locked": False}})
    >>> written_cells(new_notebook(cells=[test, derive]))
    {'derive_g': 2.0}
"""

from __future__ import annotations

import nbformat

__all__ = ["nbgrader_meta", "grade_cells", "solution_cells", "written_cells", "task_name"]


def nbgrader_meta(cell: nbformat.NotebookNode) -> dict:
    """The cell's nbgrader metadata (``{}`` for a cell nbgrader does not track, or metadata of
    another shape than nbgrader's: a student may write anything there)."""
    meta = cell.get("metadata", {})
    found = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return found if isinstance(found, dict) else {}


def grade_cells(nb: nbformat.NotebookNode) -> dict[str, float]:
    """Grade id -> points of every graded cell, in notebook order."""
    return {nbgrader_meta(c)["grade_id"]: float(nbgrader_meta(c)["points"]) for c in nb.cells if nbgrader_meta(c).get("grade")}


def solution_cells(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """Grade id -> cell of every solution cell, in notebook order."""
    return {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if nbgrader_meta(c).get("solution")}


def written_cells(nb: nbformat.NotebookNode) -> dict[str, float]:
    """Grade id -> points of every written answer (a graded Markdown solution cell), in notebook order."""
    return {meta["grade_id"]: float(meta["points"]) for c in nb.cells
            if c.cell_type == "markdown" and (meta := nbgrader_meta(c)).get("grade") and meta.get("solution")}


def task_name(grade_id: str) -> str:
    """The task a test cell grades: ``test_<name>`` -> ``<name>`` (other ids stay as they are)."""
    return grade_id.removeprefix("test_")
