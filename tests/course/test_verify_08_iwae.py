"""Notebook 08 (the IWAE bound): its test cells and its verification spec against wrong answers
(the tests every notebook gets come from ``_verify``; the test cells rely on the set-up cell and the
linear-Gaussian model).

In this process, answers right on the visible examples fail the hidden checks. The verifier with
``specs/08_iwae.py`` gives a submission mixing a wrong answer and correct work written differently
exactly the points of its correct parts; a reference imported anywhere earns nothing.
"""

from __future__ import annotations

import pytest

from ._course import ASSIGNMENT_IDS, notebook, task_test_code
from ._verify import assert_every_task_scores_zero, reasons, scores, solution_answers, verify_submissions
from ._verify import (  # noqa: F401 - the tests every notebook gets, collected here with this module's data
    namespace, pytest_generate_tests, test_hidden_checks_catch_what_the_visible_ones_miss,
    test_the_solution_passes_visible_and_hidden_checks, test_the_verifier_gives_the_blank_release_zero,
    test_the_verifier_gives_the_solution_full_marks, test_visible_checks_name_the_mistake)

ID = "08_iwae"
pytestmark = pytest.mark.skipif(ID not in ASSIGNMENT_IDS, reason="notebook 08 is not in this course")
SOURCE = notebook("source", ID) if ID in ASSIGNMENT_IDS else None
TASKS = ("iwae_bound", "estimate_log_likelihood")
POINTS = {"iwae_bound": 5.0, "estimate_log_likelihood": 5.0}
SETUP_CELLS = ("setup", "linear-gaussian-model")  # what the test cells rely on


def _bound(z="mu + torch.exp(0.5 * log_var) * eps", log_q="-0.5 * (eps**2 + log_var + math.log(2 * math.pi)).sum(-1)",
           mean="torch.logsumexp(log_w, 0) - math.log(K)", repeat="x.unsqueeze(0).expand(K, *x.shape).reshape(K * B, *x.shape[1:])",
           grad=True) -> str:
    body = (f"    K, B, d = eps.shape\n    mu, log_var = model.encoder(x)\n    z = {z}\n    log_q = {log_q}\n"
            f"    log_p_z = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)\n    x_k = {repeat}\n"
            f"    log_w = model.decoder.log_prob(x_k, z.reshape(K * B, d)).reshape(K, B) + log_p_z - log_q\n"
            f"    return {mean}\n")
    if not grad:
        body = "    with torch.no_grad():\n" + "".join("    " + line + "\n" for line in body.splitlines())
    return "def iwae_bound(model, x, eps):\n" + body


def _estimate(eps="torch.randn(k, B, d, dtype=mu.dtype)", chunk="chunk_size", chunk_value="torch.logsumexp(log_w, 0)",
              combine="torch.logsumexp(torch.stack(chunks), 0) - math.log(K)") -> str:
    return ("def estimate_log_likelihood(model, x, K, chunk_size):\n"
            "    mu, log_var = model.encoder(x)\n    B, d = mu.shape\n    chunks = []\n"
            f"    for start in range(0, K, {chunk}):\n        k = min({chunk}, K - start)\n        eps = {eps}\n"
            "        z = mu + torch.exp(0.5 * log_var) * eps\n"
            "        x_k = x.unsqueeze(0).expand(k, *x.shape).reshape(k * B, *x.shape[1:])\n"
            "        log_w = (model.decoder.log_prob(x_k, z.reshape(k * B, d)).reshape(k, B)\n"
            "                 - 0.5 * (z**2).sum(-1) + 0.5 * (eps**2 + log_var).sum(-1))\n"
            f"        chunks.append({chunk_value})\n"
            f"    return {combine}\n")


WRONG = {
    "the log of the MEAN of the weights: subtract log K": ("iwae_bound", _bound(mean="torch.logsumexp(log_w, 0)")),
    "it needs -0.5 log sigma^2 per dimension": (
        "iwae_bound", _bound(log_q="-0.5 * (eps**2 + math.log(2 * math.pi)).sum(-1)")),
    "sigma = exp(log_var / 2), not exp(log_var)": ("iwae_bound", _bound(z="mu + torch.exp(log_var) * eps")),
    "average the weights in log space (torch.logsumexp)": (
        "iwae_bound", _bound(mean="torch.log(torch.exp(log_w).mean(0))")),
    "the log of the MEAN of the K weights: subtract log K": (
        "estimate_log_likelihood", _estimate(combine="torch.logsumexp(torch.stack(chunks), 0)")),
    "chunk_size=4 allows 4 * B = 80": ("estimate_log_likelihood", _estimate(chunk="K")),
    "mean over the 20 points of estimate_log_likelihood(rough, x, K=2000, chunk_size=5)": (
        "estimate_log_likelihood", _estimate(chunk_value="torch.logsumexp(log_w, 0) - math.log(k)",
                                             combine="torch.stack(chunks).mean(0)")),
    "combine the chunks by logsumexp": (
        "estimate_log_likelihood", _estimate(combine="torch.log(torch.exp(torch.stack(chunks)).sum(0) / K)")),
}
# Right on the visible examples, wrong where the hidden checks look.
PASS_VISIBLE = {
    "iwae_bound": (_bound(grad=False), "does not require grad"),
    "estimate_log_likelihood": (_estimate(eps="torch.randn(k, B, 2, dtype=mu.dtype)"), "must match the size"),
}


def test_the_written_out_variants_are_right(namespace):
    # the helpers above, unchanged, are correct answers: the mistakes are exactly the changes
    exec(_bound(), namespace)
    exec(task_test_code(SOURCE, "iwae_bound", hidden=True), namespace)
    exec("@torch.no_grad()\n" + _estimate(), namespace)
    exec(task_test_code(SOURCE, "estimate_log_likelihood", hidden=True), namespace)


# ---------------------------------------------------------------------------------------------
# The out-of-kernel verifier

MIXED = {
    # log K forgotten: only the gradient survives (a constant does not change it)
    "iwae_bound": _bound(mean="torch.logsumexp(log_w, 0)"),
    # right, but all K samples in one decoder call: everything but the memory bound
    "estimate_log_likelihood": "@torch.no_grad()\n" + _estimate(chunk="K"),
}


@pytest.fixture(scope="module")
def verified():
    solution = solution_answers(SOURCE, TASKS)
    importing = {**solution, "estimate_log_likelihood": "from dgm_course.objectives import log_likelihood\n\n"
                                                        + solution["estimate_log_likelihood"]}
    return verify_submissions(ID, {"mixed": MIXED, "importing the reference": importing})


def test_the_verifier_gives_exactly_the_points_of_the_correct_parts(verified):
    verdicts = verified["mixed"]
    assert scores(verdicts) == {"iwae_bound": 1.0, "estimate_log_likelihood": 4.0}, reasons(verdicts)
    assert verdicts["iwae_bound"].passed == ["its gradient with respect to every weight vs autograd of the reference"]
    (failed,) = verdicts["estimate_log_likelihood"].failed
    assert failed.startswith("no decoder call evaluates more than chunk_size * B pairs"), failed


def test_a_reference_imported_anywhere_costs_every_task(verified):
    assert_every_task_scores_zero(verified["importing the reference"], TASKS,
                                  "uses the library's reference dgm_course.objectives.log_likelihood")
