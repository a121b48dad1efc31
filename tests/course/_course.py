"""What the course tests share: the repository's course, its assignments, and notebook surgery.

Every test over notebooks is parametrized with :data:`ASSIGNMENT_IDS`, so a new
``source_notebooks/<id>/<id>.ipynb`` is picked up by all of them.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from dgm_course.course.cells import grade_cells, nbgrader_meta, solution_cells
from dgm_course.course.config import CONFIG_FILE, Course

ROOT = Path(__file__).resolve().parents[2]
COURSE = Course.load(ROOT)
ASSIGNMENT_IDS = COURSE.assignment_ids()
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
TINY_ID = "00_tiny"


def notebook(kind: str, assignment_id: str) -> nbformat.NotebookNode:
    """``kind`` is ``"source"``, ``"release"`` or ``"solution"``."""
    folder = {"source": COURSE.source_name, "release": COURSE.release_name, "solution": COURSE.solution_name}[kind]
    path = ROOT / folder / assignment_id / f"{assignment_id}.ipynb"
    if not path.is_file():
        pytest.fail(f"{path.relative_to(ROOT)} is missing: run `dgm-course build {assignment_id}`")
    return nbformat.read(path, as_version=4)


def cell_by_id(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)


def tasks(nb: nbformat.NotebookNode) -> list[str]:
    """Task names (solution cell ids with a ``test_<name>`` cell), in notebook order."""
    tests = grade_cells(nb)
    return [name for name in solution_cells(nb) if f"test_{name}" in tests]


def setup_namespace(source: nbformat.NotebookNode, monkeypatch, grade_ids: tuple[str, ...] = ("setup",)) -> dict:
    """The namespace of ``source``'s set-up cells ``grade_ids`` run in this process (no kernel), for
    running a task's cells against wrong answers. The real ``setup_notebook`` would send this
    process's stderr to stdout: here it only seeds."""
    import torch

    import dgm_course.runtime.kernel

    monkeypatch.setattr(dgm_course.runtime.kernel, "setup_notebook", lambda seed=0, **_: torch.manual_seed(seed))
    namespace: dict = {}
    for grade_id in grade_ids:
        exec(cell_by_id(source, grade_id).source, namespace)
    return namespace


def task_test_code(source: nbformat.NotebookNode, name: str, hidden: bool) -> str:
    """The test cell of task ``name``: all of it, or only its visible part."""
    text = cell_by_id(source, f"test_{name}").source
    return text if hidden else text.split("### BEGIN HIDDEN TESTS")[0]


def hidden_test_code(source: nbformat.NotebookNode, name: str) -> str:
    """Only the hidden part of task ``name``'s test cell (its visible checks skipped)."""
    return cell_by_id(source, f"test_{name}").source.split("### BEGIN HIDDEN TESTS")[1]


def with_stray_output(source: str) -> str:
    """A solution cell whose every solution region first warns and writes to stderr (Python and C
    level): output a correct student's code may cause, which must not cost points."""
    stray = ('__import__("warnings").warn("a stray warning from the student\'s code")',
             'print("a stray line on stderr", file=__import__("sys").stderr)',
             '__import__("os").write(2, b"a stray C-level line on stderr\\n")')
    return re.sub(r"^([ \t]*)(### BEGIN SOLUTION)$", lambda m: "\n".join([m[0], *(m[1] + s for s in stray)]),
                  source, flags=re.M)


def _cell(kind, grade_id, source, **nbgrader):
    meta = {"grade": False, "grade_id": grade_id, "locked": True, "schema_version": 3, "solution": False,
            "task": False, **nbgrader}
    cell = (new_markdown_cell if kind == "md" else new_code_cell)(source, metadata={"nbgrader": meta})
    cell.id = grade_id
    return cell


def tiny_course(root: Path) -> tuple[Course, nbformat.NotebookNode]:
    """A course folder at ``root`` with one small assignment (no torch): nbgrader's scoring rule
    and the stderr routing in test cells, for tests of the machinery."""
    config = (ROOT / CONFIG_FILE).read_text()
    (root / COURSE.source_name / TINY_ID).mkdir(parents=True)
    (root / CONFIG_FILE).write_text(config + "\nc.Execute.timeout = 300  # the wall clock must act first\n")
    test = {"grade": True, "points": 1}
    nb = new_notebook(cells=[
        _cell("md", "intro", "# A tiny assignment"),
        _cell("code", "setup", "import os, sys, warnings"),
        _cell("code", "answer", "def answer():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION",
              locked=False, solution=True),
        _cell("code", "test_answer", "assert answer() == 42, 'answer() should be 42'", **test),
        # nbgrader's rule, pinned: a bare False "passes", and any stderr output scores 0.
        _cell("code", "test_bare_false", "False", **test),
        _cell("code", "test_stderr", "print('noise', file=sys.stderr)\nassert True", **test),
        _cell("code", "route", "from dgm_course.runtime.kernel import route_stderr_to_stdout\n"
                               "route_stderr_to_stdout()"),
        _cell("code", "test_routed", "warnings.warn('stray')\nprint('noise', file=sys.stderr)\n"
                                     "os.write(2, b'C noise\\n')\nassert answer() == 42", **test),
    ])
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nb, root / COURSE.source_name / TINY_ID / f"{TINY_ID}.ipynb")
    return Course.load(root), nb


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose command line holds ``marker`` (this machine's, any namespace)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def processes_of_uids(uids: set[int]) -> list[int]:
    """Pids of the live processes (zombies do not count: they hold nothing) whose real uid is one of
    ``uids``: as root, each sandboxed run gets a uid of its own (see :func:`recording_run_uids`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line)
            except OSError:
                continue
            if int(fields["Uid"].split()[0]) in uids and not fields["State"].strip().startswith("Z"):
                found.append(int(entry.name))
    return found


@contextmanager
def recording_run_uids():
    """The set of uids the sandbox hands its runs while the block runs (the sandbox gives a run a
    uid of its own only when the grader is root: elsewhere the set stays empty)."""
    from dgm_course.course import sandbox

    uids: set[int] = set()
    real = sandbox._run_uid

    def recorded() -> int:
        uid = real()
        uids.add(uid)
        return uid

    sandbox._run_uid = recorded
    try:
        yield uids
    finally:
        sandbox._run_uid = real
