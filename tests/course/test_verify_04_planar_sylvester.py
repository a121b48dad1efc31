"""Notebook 04 (planar and Sylvester flows): its test cells and its verification spec against wrong answers
(the tests every notebook gets come from ``_verify``; the test cells rely on two set-up cells).

In this process, a Sylvester log-det right only where Q is the identity's first columns fails the
hidden checks, and so does the identity. The verifier with ``specs/04_planar_sylvester.py`` gives a
submission mixing wrong answers, a reference in disguise, a dense determinant and correct work
written differently exactly the points of its correct parts.
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

ID = "04_planar_sylvester"
pytestmark = pytest.mark.skipif(ID not in ASSIGNMENT_IDS, reason="notebook 04 is not in this course")
SOURCE = notebook("source", ID) if ID in ASSIGNMENT_IDS else None
SETUP_CELLS = ("setup", "guard")  # what the test cells rely on
TASKS = ("planar_g", "planar_u_hat", "sylvester_g")
POINTS = {"planar_g": 4.0, "planar_u_hat": 3.0, "sylvester_g": 3.0}

IDENTITY_PLANAR = "def planar_g(z, u, w, b):\n    return z.clone(), z.new_zeros(z.shape[0])\n"
WRONG = {
    "x is missing z": ("planar_g", "def planar_g(z, u, w, b):\n"
                       "    th = torch.tanh(z @ w + b)\n"
                       "    return th[:, None] * u, torch.log(torch.abs(1 + (1 - th**2) * (w @ u)))"),
    "h was used where its derivative h' = 1 - tanh^2 belongs": ("planar_g", "def planar_g(z, u, w, b):\n"
        "    th = torch.tanh(z @ w + b)\n"
        "    return z + th[:, None] * u, torch.log(torch.abs(1 + th * (w @ u)))"),
    "this is log|det J_f| = -log|det J_g|": ("planar_g", "def planar_g(z, u, w, b):\n"
        "    th = torch.tanh(z @ w + b)\n"
        "    return z + th[:, None] * u, -torch.log(torch.abs(1 + (1 - th**2) * (w @ u)))"),
    "the log of a negative determinant": ("planar_g", "def planar_g(z, u, w, b):\n"
        "    th = torch.tanh(z @ w + b)\n"
        "    return z + th[:, None] * u, torch.log(1 + (1 - th**2) * (w @ u))"),
    "linalg_slogdet was called": ("planar_g", "def planar_g(z, u, w, b):\n"
        "    th = torch.tanh(z @ w + b)\n"
        "    eye = torch.eye(z.shape[1], dtype=z.dtype)\n"
        "    J = eye + (1 - th**2)[:, None, None] * torch.outer(u, w)\n"
        "    return z + th[:, None] * u, torch.linalg.slogdet(J).logabsdet"),
    "divided by ||w|| instead of ||w||^2": ("planar_u_hat", "def planar_u_hat(u, w):\n"
        "    wu = w @ u\n"
        "    return u + (-1 + F.softplus(wu) - wu) * w / w.norm()"),
    "u came back unchanged": ("planar_u_hat", "def planar_u_hat(u, w):\n    return u.clone()"),
    "the -1 is missing": ("planar_u_hat", "def planar_u_hat(u, w):\n"
        "    wu = w @ u\n"
        "    return u + (F.softplus(wu) - wu) * w / (w @ w)"),
    "log(1 + exp(800)) overflows: use F.softplus": ("planar_u_hat", "def planar_u_hat(u, w):\n"
        "    wu = w @ u\n"
        "    return u + (-1 + torch.log(1 + torch.exp(wu)) - wu) * w / (w @ w)"),
    "R1 and R2 are swapped": ("sylvester_g", "def sylvester_g(z, Q, R1, R2, b):\n"
        "    th = torch.tanh(z @ Q @ R1.T + b)\n"
        "    return z + th @ R2.T @ Q.T, torch.log(torch.abs(1 + (1 - th**2) * R1.diagonal() * R2.diagonal())).sum(1)"),
    "the product of the factors is there, but not its log": ("sylvester_g", "def sylvester_g(z, Q, R1, R2, b):\n"
        "    th = torch.tanh(z @ Q @ R2.T + b)\n"
        "    return z + th @ R1.T @ Q.T, (1 + (1 - th**2) * R1.diagonal() * R2.diagonal()).prod(1)"),
    "the log of a negative factor": ("sylvester_g", "def sylvester_g(z, Q, R1, R2, b):\n"
        "    th = torch.tanh(z @ Q @ R2.T + b)\n"
        "    return z + th @ R1.T @ Q.T, torch.log(1 + (1 - th**2) * R1.diagonal() * R2.diagonal()).sum(1)"),
}
# Right x, and a log-det right only where Q is the identity's first columns (the visible examples).
HARD_CODED = ("sylvester_g", "def sylvester_g(z, Q, R1, R2, b):\n"
              "    th = torch.tanh(z @ Q @ R2.T + b)\n"
              "    a = z[:, :R1.shape[0]] @ R2.T + b\n"
              "    dh = 1 - torch.tanh(a)**2\n"
              "    return z + th @ R1.T @ Q.T, torch.log(torch.abs(1 + dh * R1.diagonal() * R2.diagonal())).sum(1)")


def test_hidden_checks_catch_what_the_visible_ones_miss(namespace):
    assert_only_the_hidden_checks_fail(namespace, SOURCE, *HARD_CODED,
                                       "log|det J_g| vs the reference OrthogonalSylvester")


def test_the_identity_flow_fails_the_hidden_checks_too(namespace):
    assert_the_hidden_checks_alone_fail(namespace, SOURCE, "planar_g", IDENTITY_PLANAR, "vs the reference Planar")


# ---------------------------------------------------------------------------------------------
# The out-of-kernel verifier

MIXED = {
    # the identity with log-det 0: consistent with its own Jacobian, wrong against the reference
    "planar_g": IDENTITY_PLANAR,
    # correct, written differently: the projection on w spelled out, softplus as logaddexp
    "planar_u_hat": "def planar_u_hat(u, w):\n"
                    "    along = w / w.norm()\n"
                    "    wu = w @ u\n"
                    "    m = -1 + torch.logaddexp(torch.zeros_like(wu), wu)\n"
                    "    return u - (u @ along) * along + m * w / (w @ w)\n",
    # a dense determinant of the M x M matrix I + diag(h') R2 R1: right values, not the task
    "sylvester_g": "def sylvester_g(z, Q, R1, R2, b):\n"
                   "    th = torch.tanh(z @ Q @ R2.T + b)\n"
                   "    inner = torch.eye(R1.shape[0], dtype=z.dtype) + (1 - th**2)[:, :, None] * (R2 @ R1)\n"
                   "    return z + th @ R1.T @ Q.T, torch.linalg.slogdet(inner).logabsdet\n",
}


@pytest.fixture(scope="module")
def verified():
    solution = solution_answers(SOURCE, TASKS)
    disguised = {**solution, "planar_u_hat": "import importlib\n\n"
                 "def planar_u_hat(u, w):\n"
                 "    residual = importlib.import_module('dgm_' + 'course.flows.residual')\n"
                 "    layer = getattr(residual, 'Pla' + 'nar')(len(w)).to(u.dtype)\n"
                 "    with torch.no_grad():\n"
                 "        layer.u.copy_(u)\n"
                 "        layer.w.copy_(w)\n"
                 "    return layer.u_hat.detach()\n"}
    importing = {**solution, "planar_g": "from dgm_course.flows import Planar\n\n" + solution["planar_g"]}
    return verify_submissions(ID, {"mixed": MIXED, "disguised": disguised, "importing the reference": importing})


def test_the_verifier_gives_exactly_the_points_of_the_correct_parts(verified):
    verdicts = verified["mixed"]
    assert scores(verdicts) == {"planar_g": 0.0, "planar_u_hat": 3.0, "sylvester_g": 0.0}, reasons(verdicts)
    # the identity with log-det 0 fails the reference and the grader's autograd log-det, in both cases
    assert len(verdicts["planar_g"].failed) == 4 and verdicts["planar_g"].passed == []
    assert "linalg_slogdet was called" in verdicts["sylvester_g"].reason


def test_a_reference_in_disguise_is_not_available_while_grading(verified):
    verdicts = verified["disguised"]
    assert scores(verdicts) == {**POINTS, "planar_u_hat": 0.0}, reasons(verdicts)
    assert "not available while grading" in verdicts["planar_u_hat"].reason


def test_a_reference_imported_anywhere_costs_every_task(verified):
    assert_every_task_scores_zero(verified["importing the reference"], TASKS,
                                  "uses the library's reference dgm_course.flows.residual (line")
