"""Notebook 06 (linear flows and Glow): its test cells and its verification spec against wrong answers.

1. In this process (no kernel): the set-up cells, then a wrong task function, then the task's test
   cell from the source. The visible checks must name the mistake; the hidden ones must catch what
   the visible ones let through; the solution passes both.
2. The out-of-kernel verifier with ``specs/06_linear_flows_glow.py``: the solution earns full marks,
   the blank release 0, and a submission mixing wrong answers, a reference in disguise, dense
   linear algebra and correct work written differently earns exactly the points of its correct parts.
"""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import dgm_course.course.kernel
from dgm_course.course.verify import grading_seed, verify_submission

from ._course import ASSIGNMENT_IDS, ROOT, cell_by_id, notebook

ID = "06_linear_flows_glow"
pytestmark = pytest.mark.skipif(ID not in ASSIGNMENT_IDS, reason="notebook 06 is not in this course")
SOURCE = notebook("source", ID) if ID in ASSIGNMENT_IDS else None
SETUP_CELLS = ("setup", "guard", "lu-example", "qr-example")  # what the test cells rely on
TASKS = ("lu_factors", "lu_forward", "lu_inverse", "qr_forward", "qr_inverse", "invconv1x1")
POINTS = {"lu_factors": 1.0, "lu_forward": 2.0, "lu_inverse": 2.0, "qr_forward": 2.0, "qr_inverse": 1.0,
          "invconv1x1": 2.0}

IDENTITY_FLOW = "def lu_forward(x, P, L, U, b):\n    return x, x.new_zeros(x.shape[0])\n"
WRONG = {
    "L needs ones on its diagonal": ("lu_factors", "def lu_factors(lower, upper, log_abs_s, sign):\n"
                                     "    return lower.tril(-1), upper.triu(1) + torch.diag(sign * log_abs_s.exp())"),
    "the diagonal of lower must be ignored": ("lu_factors", "def lu_factors(lower, upper, log_abs_s, sign):\n"
                                              "    U = upper.triu(1) + torch.diag(sign * log_abs_s.exp())\n"
                                              "    return lower.tril(), U"),
    "z = x W + b": ("lu_forward", "def lu_forward(x, P, L, U, b):\n"
                    "    return x @ (P @ L @ U) + b, U.diagonal().abs().log().sum().expand(len(x))"),
    "the permutation is missing": ("lu_forward", "def lu_forward(x, P, L, U, b):\n"
                                   "    return x @ (L @ U).T + b, U.diagonal().abs().log().sum().expand(len(x))"),
    "linalg_slogdet was called: it costs O(m^3)": ("lu_forward", "def lu_forward(x, P, L, U, b):\n"
                                                   "    W = P @ L @ U\n"
                                                   "    return x @ W.T + b, torch.linalg.slogdet(W)[1].expand(len(x))"),
    "z of lu_forward is wrong": ("lu_forward", IDENTITY_FLOW),
    "linalg_solve was called: it costs O(m^3)": ("lu_inverse", "def lu_inverse(z, P, L, U, b):\n"
                                                 "    x = torch.linalg.solve(P @ L @ U, (z - b).T).T\n"
                                                 "    return x, -U.diagonal().abs().log().sum().expand(len(z))"),
    "P was used where P^T = P^-1 belongs": ("lu_inverse", "def lu_inverse(z, P, L, U, b):\n"
        "    y = torch.linalg.solve_triangular(L, P @ (z - b).T, upper=False, unitriangular=True)\n"
        "    x = torch.linalg.solve_triangular(U, y, upper=True).T\n"
        "    return x, -U.diagonal().abs().log().sum().expand(len(z))"),
    "the reflections act in the wrong order: Q = H_1 H_2": ("qr_forward", "def qr_forward(x, v, R, b):\n"
        "    z = x @ R.T\n"
        "    for u in F.normalize(v, dim=1):\n"
        "        z = z - 2 * (z @ u)[:, None] * u\n"
        "    return z + b, R.diagonal().log().sum().expand(len(x))"),
    "the inverse's log-det is minus the forward's": ("qr_inverse", "def qr_inverse(z, v, R, b):\n"
        "    y = z - b\n"
        "    for u in F.normalize(v, dim=1):\n"
        "        y = y - 2 * (y @ u)[:, None] * u\n"
        "    x = torch.linalg.solve_triangular(R, y.T, upper=True).T\n"
        "    return x, R.diagonal().log().sum().expand(len(z))"),
    "one copy of W per pixel": ("invconv1x1", "def invconv1x1(x, W):\n"
        "    return F.conv2d(x, W[:, :, None, None]), torch.linalg.slogdet(W)[1].expand(len(x))"),
    "h * w pixels, not h * h": ("invconv1x1", "def invconv1x1(x, W):\n"
        "    h = x.shape[2]\n"
        "    return F.conv2d(x, W[:, :, None, None]), (h * h * torch.linalg.slogdet(W)[1]).expand(len(x))"),
}
# Right z everywhere, but the log-det of the visible example hard-coded.
HARD_CODED = ("lu_forward", "def lu_forward(x, P, L, U, b):\n"
              "    return x @ (P @ L @ U).T + b, torch.full((len(x),), math.log(3.0), dtype=x.dtype)")


@pytest.fixture
def namespace(monkeypatch):
    # The real set-up would send this process's stderr to stdout: seeds are all the tests need.
    monkeypatch.setattr(dgm_course.course.kernel, "setup_notebook", lambda seed=0, **_: torch.manual_seed(seed))
    ns: dict = {}
    for grade_id in SETUP_CELLS:
        exec(cell_by_id(SOURCE, grade_id).source, ns)
    return ns


def _test_cell(name: str, hidden: bool) -> str:
    source = cell_by_id(SOURCE, f"test_{name}").source
    return source if hidden else source.split("### BEGIN HIDDEN TESTS")[0]


@pytest.mark.parametrize("hint", list(WRONG))
def test_visible_checks_name_the_mistake(namespace, hint):
    name, wrong = WRONG[hint]
    exec(wrong, namespace)
    with pytest.raises(AssertionError) as failure:
        exec(_test_cell(name, hidden=False), namespace)
    assert hint in str(failure.value), str(failure.value)


def test_hidden_checks_catch_what_the_visible_ones_miss(namespace):
    name, wrong = HARD_CODED
    exec(wrong, namespace)
    exec(_test_cell(name, hidden=False), namespace)
    with pytest.raises(AssertionError, match="forward log_det vs reference"):
        exec(_test_cell(name, hidden=True), namespace)


def test_the_identity_flow_fails_the_hidden_checks_too(namespace):
    # Hidden checks alone (visible part skipped): the reference comparison catches it.
    exec(IDENTITY_FLOW, namespace)
    hidden = cell_by_id(SOURCE, "test_lu_forward").source.split("### BEGIN HIDDEN TESTS")[1]
    with pytest.raises(AssertionError, match="forward output vs reference"):
        exec(hidden, namespace)


@pytest.mark.parametrize("name", TASKS)
def test_the_solution_passes_visible_and_hidden_checks(namespace, name):
    exec(cell_by_id(SOURCE, name).source, namespace)
    exec(_test_cell(name, hidden=True), namespace)


# ---------------------------------------------------------------------------------------------
# The out-of-kernel verifier

MIXED = {
    # correct, written differently: masks instead of tril and triu
    "lu_factors": "def lu_factors(lower, upper, log_abs_s, sign):\n"
                  "    below = torch.ones_like(lower).tril(-1)\n"
                  "    L = lower * below + torch.eye(len(sign), dtype=lower.dtype)\n"
                  "    return L, upper * below.T + torch.diag(sign * log_abs_s.exp())\n",
    "lu_forward": IDENTITY_FLOW,
    "lu_inverse": WRONG["linalg_solve was called: it costs O(m^3)"][1],
    # the reference, reached at run time under another name: not in the worker's library
    "qr_forward": "import importlib\n\n"
                  "def qr_forward(x, v, R, b):\n"
                  "    linear = importlib.import_module('dgm_' + 'course.flows.linear')\n"
                  "    f = getattr(linear, 'QR' + 'Linear')(x.shape[1], n_householder=len(v)).double()\n"
                  "    return f(x)\n",
    # correct, written differently: Q assembled as a matrix, the solve from the right
    "qr_inverse": "def qr_inverse(z, v, R, b):\n"
                  "    Q = torch.eye(z.shape[1], dtype=z.dtype)\n"
                  "    for u in F.normalize(v, dim=1):\n"
                  "        Q = Q - 2 * torch.outer(Q @ u, u)\n"
                  "    x = torch.linalg.solve_triangular(R.T, (z - b) @ Q, upper=False, left=False)\n"
                  "    return x, -torch.log(R.diagonal()).sum() * torch.ones(len(z), dtype=z.dtype)\n",
    # right map, log-det without its h * w
    "invconv1x1": WRONG["one copy of W per pixel"][1],
}


def _with(nb: dict, answers: dict[str, str]) -> dict:
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    return nb


@pytest.fixture(scope="module")
def verified():
    path = f"{ID}/{ID}.ipynb"
    source = json.loads((ROOT / "source_notebooks" / path).read_text())
    release = json.loads((ROOT / "assignments" / path).read_text())
    solution = {grade_id: cell_by_id(SOURCE, grade_id).source for grade_id in TASKS}
    importing = {**solution, "lu_factors": "from dgm_course.flows import LULinear\n\n" + solution["lu_factors"]}
    submissions = {"solution": source, "release": release, "mixed": _with(release, MIXED),
                   "importing the reference": _with(release, importing)}
    seed = grading_seed("dgm-course", ID, "student-1")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(verify_submission, ID, nb, source, seed=seed) for name, nb in submissions.items()}
        return {name: {v.task_id: v for v in f.result()} for name, f in futures.items()}


def test_the_verifier_gives_the_solution_full_marks(verified):
    verdicts = verified["solution"]
    assert {t: v.points for t, v in verdicts.items()} == POINTS, {t: v.reason for t, v in verdicts.items()}
    assert all(v.reason == "all checks passed" for v in verdicts.values())


def test_the_verifier_gives_the_blank_release_zero(verified):
    verdicts = verified["release"]
    assert {t: v.points for t, v in verdicts.items()} == dict.fromkeys(TASKS, 0.0)
    assert all("NotImplementedError" in v.reason for v in verdicts.values())


def test_the_verifier_gives_exactly_the_points_of_the_correct_parts(verified):
    verdicts = verified["mixed"]
    assert {t: v.points for t, v in verdicts.items()} == {
        "lu_factors": 1.0, "lu_forward": 0.0, "lu_inverse": 0.0, "qr_forward": 0.0, "qr_inverse": 1.0,
        "invconv1x1": 1.0}, {t: v.reason for t, v in verdicts.items()}
    # the identity with log-det 0 fails the reference and the grader's autograd log-det, at both sizes
    assert len(verdicts["lu_forward"].failed) == 4 and verdicts["lu_forward"].passed == []
    assert "linalg_solve was called" in verdicts["lu_inverse"].reason
    assert "not available while grading" in verdicts["qr_forward"].reason
    assert verdicts["invconv1x1"].passed == ["z = W x at every pixel vs the reference",
                                             "invconv1x1(z, W^-1) gives x back"]


def test_a_reference_imported_anywhere_costs_every_task(verified):
    verdicts = verified["importing the reference"]
    assert {t: v.points for t, v in verdicts.items()} == dict.fromkeys(TASKS, 0.0)
    assert all("uses the library's reference dgm_course.flows.linear.LULinear" in v.reason for v in verdicts.values())
