"""Notebook 03 (forward vs reverse KL): its test cells and its verification spec against wrong answers
(the tests every notebook gets come from ``_verify``).

In this process, a loss right only on the visible 2D example fails the hidden checks, and so does a
latent density that ignores the flow. The verifier with ``specs/03_forward_reverse_kl.py`` gives a
submission mixing correct work written differently, a loss without gradients and a reference in
disguise exactly the points of its correct parts.
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

ID = "03_forward_reverse_kl"
pytestmark = pytest.mark.skipif(ID not in ASSIGNMENT_IDS, reason="notebook 03 is not in this course")
SOURCE = notebook("source", ID) if ID in ASSIGNMENT_IDS else None
TASKS = ("forward_kl_loss", "reverse_kl_loss", "latent_log_prob")
POINTS = {"forward_kl_loss": 3.0, "reverse_kl_loss": 4.0, "latent_log_prob": 3.0}

NORMAL = "-0.5 * z.pow(2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)"


def _forward(body: str) -> str:
    return f"def forward_kl_loss(flow, x):\n    z, ld = flow(x)\n    return {body}\n"


def _reverse(body: str) -> str:
    return f"def reverse_kl_loss(flow, log_target, z):\n    x, ld = flow.inverse(z)\n    return {body}\n"


def _latent(body: str) -> str:
    return f"def latent_log_prob(flow, log_target, z):\n    x, ld = flow.inverse(z)\n    return {body}\n"


WRONG = {
    "the sign: the loss is the NEGATIVE log-likelihood": ("forward_kl_loss", _forward(f"({NORMAL} + ld).mean()")),
    "the log|det J_f| term is missing": ("forward_kl_loss", _forward(f"-({NORMAL}).mean()")),
    "the sum over the batch: take the mean": ("forward_kl_loss", _forward(f"-({NORMAL} + ld).sum()")),
    "forward_kl_loss must keep the graph": ("forward_kl_loss", _forward(f"-({NORMAL} + ld).mean().detach()")),
    "the log-det has the wrong sign: log q(x) = log p(z) - log|det J_g(z)|": (
        "reverse_kl_loss", _reverse(f"({NORMAL} + ld - log_target(x)).mean()")),
    "log_target was evaluated at z instead of at x = g(z)": (
        "reverse_kl_loss", _reverse(f"({NORMAL} - ld - log_target(z)).mean()")),
    "the base term log p(z) is missing": ("reverse_kl_loss", _reverse("(-ld - log_target(x)).mean()")),
    "the log-det has the wrong sign: add log|det J_g(z)|, the inverse's": (
        "latent_log_prob", _latent("log_target(x) - ld")),
    "the log|det J_g| term is missing": ("latent_log_prob", _latent("log_target(x)")),
}
# Right on the visible 2D example, wrong in any other dimension.
HARD_CODED = ("forward_kl_loss", _forward("-(-0.5 * z.pow(2).sum(1) - math.log(2 * math.pi) + ld).mean()"))
IDENTITY = "def latent_log_prob(flow, log_target, z):\n    return log_target(z)\n"


def test_hidden_checks_catch_what_the_visible_ones_miss(namespace):
    assert_only_the_hidden_checks_fail(namespace, SOURCE, *HARD_CODED, "in 5D vs the reference FlowModel.forward_kl")


def test_the_identity_fails_the_hidden_checks_too(namespace):
    assert_the_hidden_checks_alone_fail(namespace, SOURCE, "latent_log_prob", IDENTITY, "vs the reference inverse")


# ---------------------------------------------------------------------------------------------
# The out-of-kernel verifier

MIXED = {
    # correct, written differently: the library's base density
    "forward_kl_loss": "def forward_kl_loss(flow, x):\n"
                       "    z, log_det = flow(x)\n"
                       "    return -(StandardNormal((x.shape[1],)).to(x.dtype).log_prob(z) + log_det).mean()\n",
    # the right value, detached: no gradient reaches the flow
    "reverse_kl_loss": _reverse(f"({NORMAL} - ld - log_target(x)).mean().detach()"),
    # the grader's autograd log-det, reached at run time under another name: not in the worker's library
    "latent_log_prob": "import importlib\n\n"
                       "def latent_log_prob(flow, log_target, z):\n"
                       "    jacobian = importlib.import_module('dgm_' + 'course.jacobian')\n"
                       "    g = lambda v: flow.inverse(v)[0]\n"
                       "    return log_target(g(z)) + getattr(jacobian, 'jacobian_' + 'log_det')(g, z)\n",
}


@pytest.fixture(scope="module")
def verified():
    solution = solution_answers(SOURCE, TASKS)
    importing = {**solution,
                 "latent_log_prob": f"from dgm_course.flows import FlowModel\n\n{solution['latent_log_prob']}"}
    return verify_submissions(ID, {"mixed": MIXED, "importing the reference": importing})


def test_the_verifier_gives_exactly_the_points_of_the_correct_parts(verified):
    verdicts = verified["mixed"]
    assert scores(verdicts) == {
        "forward_kl_loss": 3.0, "reverse_kl_loss": 2.0, "latent_log_prob": 0.0}, reasons(verdicts)
    # a detached loss keeps the points of its values and loses those of its gradient
    assert [f.split(":")[0] for f in verdicts["reverse_kl_loss"].failed] == [
        "its gradient with respect to the flow's parameters (2D)",
        "its gradient with respect to the flow's parameters (3 to 6 dimensions)"]
    assert "not available while grading" in verdicts["latent_log_prob"].reason


def test_a_reference_imported_anywhere_costs_every_task(verified):
    assert_every_task_scores_zero(verified["importing the reference"], TASKS,
                                  "uses the library's reference dgm_course.flows.FlowModel")
