"""Notebook 06 (linear flows and Glow): its test cells and its verification spec against wrong answers
(the tests every notebook gets come from ``_verify``; the test cells rely on four set-up cells).

In this process, a log-det hard-coded for the visible example fails the hidden checks, and so does
the identity. The verifier with ``specs/06_linear_flows_glow.py`` gives a submission mixing wrong
answers, a reference in disguise, dense linear algebra and correct work written differently exactly
the points of its correct parts.
"""

from __future__ import annotations

import pytest

from ._course import ASSIGNMENT_IDS, notebook
from ._verify import (assert_every_task_scores_zero, assert_only_the_hidden_checks_fail,
                      assert_the_hidden_checks_alone_fail, reasons, scores, solution_answers, verify_submissions)
from ._verify import (  # noqa: F401 - the tests every notebook gets, collected here with this module's data
    namespace, pytest_generate_tests, test_the_solution_passes_visible_and_hidden_checks,
    test_the_verifier_gives_the_blank_release_zero, test_the_verifier_gives_the_solution_full_marks,
    test_visible_checks_name_the_mistake)

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


def test_hidden_checks_catch_what_the_visible_ones_miss(namespace):
    assert_only_the_hidden_checks_fail(namespace, SOURCE, *HARD_CODED, "forward log_det vs reference")


def test_the_identity_flow_fails_the_hidden_checks_too(namespace):
    assert_the_hidden_checks_alone_fail(namespace, SOURCE, "lu_forward", IDENTITY_FLOW, "forward output vs reference")


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


@pytest.fixture(scope="module")
def verified():
    solution = solution_answers(SOURCE, TASKS)
    importing = {**solution, "lu_factors": "from dgm_course.flows import LULinear\n\n" + solution["lu_factors"]}
    return verify_submissions(ID, {"mixed": MIXED, "importing the reference": importing})


def test_the_verifier_gives_exactly_the_points_of_the_correct_parts(verified):
    verdicts = verified["mixed"]
    assert scores(verdicts) == {
        "lu_factors": 1.0, "lu_forward": 0.0, "lu_inverse": 0.0, "qr_forward": 0.0, "qr_inverse": 1.0,
        "invconv1x1": 1.0}, reasons(verdicts)
    # the identity with log-det 0 fails the reference and the grader's autograd log-det, at both sizes
    assert len(verdicts["lu_forward"].failed) == 4 and verdicts["lu_forward"].passed == []
    assert "linalg_solve was called" in verdicts["lu_inverse"].reason
    assert "not available while grading" in verdicts["qr_forward"].reason
    assert verdicts["invconv1x1"].passed == ["z = W x at every pixel vs the reference",
                                             "invconv1x1(z, W^-1) gives x back"]


def test_a_reference_imported_anywhere_costs_every_task(verified):
    assert_every_task_scores_zero(verified["importing the reference"], TASKS,
                                  "uses the library's reference dgm_course.flows.linear.LULinear")
