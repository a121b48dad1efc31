"""The nbgrader cells of a notebook, by the course's conventions (see docs/notebooks.md): the one
reader of cell metadata. Trusted notebooks (the sources, the releases) come through nbformat
(:func:`grade_cells`, :func:`solution_cells`, :func:`written_cells`); a submission is read as plain
JSON, defensively (:func:`read_notebook`, :func:`notebook_cells`), since a student may have written
anything there. Both read a cell's nbgrader metadata with :func:`nbgrader_meta`.

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

import json
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = ["MAX_NOTEBOOK_BYTES", "Cell", "nbgrader_meta", "grade_cells", "solution_cells", "written_cells",
           "task_name", "read_notebook", "notebook_cells", "is_setup_cell"]

MAX_NOTEBOOK_BYTES = 20 << 20


def nbgrader_meta(cell: dict) -> dict:
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


# ---------------------------------------------------------------------------------------------
# Submissions: read as plain JSON, defensively


def read_notebook(nb) -> dict:
    """A notebook as JSON, read defensively: a dict as it is, else the file (at most
    :data:`MAX_NOTEBOOK_BYTES`; ``ValueError`` for anything that is not a JSON object of text)."""
    if isinstance(nb, dict):
        return nb
    path = Path(nb)
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"notebook larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("a notebook must be a JSON object")
    json.dumps(data, ensure_ascii=False).encode()  # UnicodeEncodeError (a ValueError): a lone surrogate
    return data


@dataclass
class Cell:
    """A cell of a notebook read by :func:`notebook_cells`: its source and nbgrader metadata."""

    source: str
    grade_id: str | None
    solution: bool
    grade: bool
    locked: bool
    points: float


def notebook_cells(nb, cell_type: str = "code") -> list[Cell]:
    """The cells of ``cell_type`` (code, or markdown for written answers) of a notebook with their
    nbgrader metadata, read defensively.

    Anything malformed (a wrong type, an unknown ``schema_version``) counts as "no metadata":
    one bad cell never stops the grading of a batch.
    """
    cells = []
    raw = nb.get("cells") if isinstance(nb, dict) else None
    for c in raw if isinstance(raw, list) else []:
        if not isinstance(c, dict) or c.get("cell_type") != cell_type:
            continue
        src = c.get("source", "")
        src = "".join(s for s in src if isinstance(s, str)) if isinstance(src, list) else src
        if not isinstance(src, str):
            continue
        g = nbgrader_meta(c)
        gid = g.get("grade_id")
        points = g.get("points", 0)
        cells.append(Cell(
            source=src,
            grade_id=gid if isinstance(gid, str) and gid else None,
            solution=g.get("solution") is True,
            grade=g.get("grade") is True,
            locked=g.get("locked") is True,
            points=float(points) if isinstance(points, (int, float)) and not isinstance(points, bool) else 0.0,
        ))
    return cells


def is_setup_cell(cell: Cell, setup_ids: tuple[str, ...] | None = None) -> bool:
    """Whether the verifier runs this source cell as trusted set-up: one of ``setup_ids`` (a spec's),
    or by default a locked code cell with a grade id that is neither a solution nor a test."""
    if cell.solution or cell.grade or cell.grade_id is None:
        return False
    return cell.grade_id in setup_ids if setup_ids is not None else cell.locked
