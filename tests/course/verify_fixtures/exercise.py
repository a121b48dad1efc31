"""A small nbgrader exercise for the verifier's tests: a planar flow, a sigmoid, a batched Jacobian.

``source_notebook()`` is the instructor's notebook (schema-3 nbgrader metadata, solution regions,
a locked set-up cell, test cells with hidden tests, an unlocked demo cell); ``release()`` blanks
the solutions as nbgrader does; ``submission(...)`` builds a student's notebook from it.
"""

from __future__ import annotations

import copy

import nbformat

SETUP = """\
import math
import warnings

import torch
import torch.nn.functional as F
"""

SOLUTIONS = {
    "planar_solution": '''\
def planar_forward(x, u, w, b):
    """z = x + u tanh(w.x + b); log|det| = log|1 + (1 - tanh^2(w.x + b)) u.w|."""
    ### BEGIN SOLUTION
    h = torch.tanh(x @ w + b)
    z = x + h[:, None] * u
    log_det = torch.log(torch.abs(1 + (1 - h**2) * (u @ w)))
    ### END SOLUTION
    return z, log_det
''',
    "sigmoid_solution": '''\
def sigmoid_forward(x):
    """z = sigmoid(x) elementwise; log|det| = sum_i log sigmoid(x_i) + log sigmoid(-x_i)."""
    ### BEGIN SOLUTION
    z = torch.sigmoid(x)
    log_det = (-F.softplus(-x) - F.softplus(x)).sum(dim=1)
    ### END SOLUTION
    return z, log_det
''',
    "jacobian_solution": '''\
def batch_jacobian(fn, x):
    """The Jacobian of every sample, shape (B, D_out, D_in), from one backward pass per output."""
    ### BEGIN SOLUTION
    x = x.detach().requires_grad_(True)
    y = fn(x)
    rows = [torch.autograd.grad(y[:, i].sum(), x, retain_graph=True)[0] for i in range(y.shape[1])]
    return torch.stack(rows, dim=1)
    ### END SOLUTION
''',
}

TESTS = {
    "planar_tests": (2, """\
x = torch.randn(5, 2, dtype=torch.float64)
z, log_det = planar_forward(x, torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), 0.0)
assert z.shape == (5, 2) and log_det.shape == (5,)
### BEGIN HIDDEN TESTS
assert torch.allclose(log_det, torch.log(1 + 2 * (1 - torch.tanh(x.sum(1)) ** 2)))
### END HIDDEN TESTS
"""),
    "sigmoid_tests": (2, """\
z, log_det = sigmoid_forward(torch.zeros(3, 2))
assert log_det.shape == (3,)
### BEGIN HIDDEN TESTS
assert torch.allclose(log_det, torch.full((3,), 2 * math.log(0.25)))
### END HIDDEN TESTS
"""),
    "jacobian_tests": (2, """\
J = batch_jacobian(lambda v: 2 * v, torch.randn(4, 3))
assert J.shape == (4, 3, 3)
### BEGIN HIDDEN TESTS
assert torch.allclose(J, 2 * torch.eye(3).expand(4, 3, 3))
### END HIDDEN TESTS
"""),
}

DEMO = "print(planar_forward(torch.zeros(1, 2), torch.ones(2), torch.ones(2), 0.0))\n"


def _meta(grade_id: str, *, solution=False, grade=False, locked=False, points=0) -> dict:
    g = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
         "task": False}
    if grade:
        g["points"] = points
    return {"nbgrader": g}


def source_notebook() -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [nbformat.v4.new_markdown_cell("# Change of variables\nA tiny exercise for the verifier's tests."),
             nbformat.v4.new_code_cell(SETUP, metadata=_meta("setup", locked=True))]
    for task in ("planar", "sigmoid", "jacobian"):
        cells.append(nbformat.v4.new_code_cell(SOLUTIONS[f"{task}_solution"],
                                               metadata=_meta(f"{task}_solution", solution=True)))
        points, test = TESTS[f"{task}_tests"]
        cells.append(nbformat.v4.new_code_cell(test, metadata=_meta(f"{task}_tests", grade=True, locked=True,
                                                                     points=points)))
        if task == "planar":
            cells.append(nbformat.v4.new_code_cell(DEMO))
    nb.cells = cells
    nbformat.validate(nb)
    return nb


def _blank(source: str) -> str:
    out, inside = [], False
    for line in source.splitlines(keepends=True):
        if line.strip() == "### BEGIN SOLUTION":
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()\n")
            inside = True
        elif line.strip() == "### END SOLUTION":
            inside = False
        elif not inside and "HIDDEN TESTS" not in line:
            out.append(line)
    return "".join(out)


def blank(nb: dict) -> dict:
    """The student version of a source notebook: solution regions blanked, hidden tests removed
    (as ``nbgrader generate_assignment`` does)."""
    nb = copy.deepcopy(nb)
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            src = c["source"] if isinstance(c["source"], str) else "".join(c["source"])
            if c.get("metadata", {}).get("nbgrader", {}).get("grade"):
                src = src.split("### BEGIN HIDDEN TESTS")[0]
            c["source"] = _blank(src)
    return nb


def release() -> dict:
    return nbformat.from_dict(blank(source_notebook()))


def submission(answers: dict[str, str] | None = None, added: list[tuple[str, str]] = (),
               drop: tuple[str, ...] = ()) -> dict:
    """A student's notebook: ``answers`` replaces solution cells (default: the solutions),
    ``added`` inserts ``(before_grade_id, source)`` cells without metadata, ``drop`` deletes cells."""
    nb = release()
    answers = {**{k: v for k, v in SOLUTIONS.items()}, **(answers or {})}
    cells = []
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        for before, src in added:
            if before == gid:
                cells.append(nbformat.v4.new_code_cell(src))
        if gid in drop:
            continue
        if gid in answers:
            c = copy.deepcopy(c)
            c.source = answers[gid]
        cells.append(c)
    nb.cells = cells
    return nb
