"""A small assignment with a weak test, for the self-consistent wrong flow of issue #7.

The verifier's test exercise (a planar flow, a sigmoid, a batched Jacobian) with one change: the
planar test checks the student's log-det only against the autograd Jacobian of the student's own
map, as the test of the issue did. The identity with log-det 0 passes it in the kernel; the
verifier compares with the grader's own reference map and gives it nothing.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from dgm_course.course.config import CONFIG_FILE, Course

from .._course import ROOT
from ..verify_fixtures import exercise as ex
from ..verify_fixtures.spec_exercise import SPEC

__all__ = ["ID", "SPEC", "course", "submissions"]

ID = SPEC.assignment_id
WEAK_PLANAR_TEST = '''\
x = torch.randn(5, 2, dtype=torch.float64)
u, w = torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
z, log_det = planar_forward(x, u, w, 0.0)
assert z.shape == (5, 2) and log_det.shape == (5,)
### BEGIN HIDDEN TESTS
# Self-consistency only: the log-det against the autograd Jacobian of the student's own map.
J = torch.stack([torch.autograd.functional.jacobian(lambda v: planar_forward(v[None], u, w, 0.0)[0][0], xi)
                 for xi in x])
assert torch.allclose(log_det, torch.linalg.slogdet(J).logabsdet)
### END HIDDEN TESTS
'''
IDENTITY = "def planar_forward(x, u, w, b):\n    return x.clone(), x.new_zeros(x.shape[0])\n"


def _source() -> nbformat.NotebookNode:
    nb = ex.source_notebook()
    next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "planar_tests").source = \
        WEAK_PLANAR_TEST
    return nb


def course(root: Path) -> Course:
    """A course folder at ``root`` holding only this assignment."""
    folder = root / "source_notebooks" / ID
    folder.mkdir(parents=True)
    (root / CONFIG_FILE).write_text((ROOT / CONFIG_FILE).read_text())
    nbformat.write(_source(), folder / f"{ID}.ipynb")
    return Course.load(root)


def _submission(planar: str | None) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(ex.blank(_source()))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in ex.SOLUTIONS:
            cell.source = planar if gid == "planar_solution" and planar else ex.SOLUTIONS[gid]
    return nb


def submissions(folder: Path) -> None:
    """``identity``: the identity flow with log-det 0 and the other two tasks solved; ``solution``."""
    for student, planar in [("identity", IDENTITY), ("solution", None)]:
        (folder / student / ID).mkdir(parents=True)
        nbformat.write(_submission(planar), folder / student / ID / f"{ID}.ipynb")
