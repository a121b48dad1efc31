"""Notebook 08 (the IWAE bound): its test cells and its verification spec against wrong answers.

1. In this process (no kernel): the cells a task's tests need (set-up, the linear-Gaussian model),
   then a wrong task function, then the task's test cell from the source. The visible checks must
   name the mistake; the hidden ones must catch what the visible ones let through; the solution
   passes both.
2. The out-of-kernel verifier with ``specs/08_iwae.py``: the solution earns full marks, the blank
   release 0, and a submission mixing a wrong answer and correct work written differently earns
   exactly the points of its correct parts; a reference imported anywhere earns nothing.
"""

from __future__ import annotations

import copy
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import dgm_course.course.kernel
from dgm_course.course.verify import grading_seed, verify_submission

from ._course import ASSIGNMENT_IDS, ROOT, cell_by_id, notebook

ID = "08_iwae"
pytestmark = pytest.mark.skipif(ID not in ASSIGNMENT_IDS, reason="notebook 08 is not in this course")
SOURCE = notebook("source", ID) if ID in ASSIGNMENT_IDS else None
TASKS = ("iwae_bound", "estimate_log_likelihood")
POINTS = {"iwae_bound": 5.0, "estimate_log_likelihood": 5.0}


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


@pytest.fixture
def namespace(monkeypatch):
    # The real set-up would send this process's stderr to stdout: seeds are all the tests need.
    monkeypatch.setattr(dgm_course.course.kernel, "setup_notebook", lambda seed=0, **_: torch.manual_seed(seed))
    ns: dict = {}
    for grade_id in ("setup", "linear-gaussian-model"):
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


@pytest.mark.parametrize("name", list(PASS_VISIBLE))
def test_hidden_checks_catch_what_the_visible_ones_miss(namespace, name):
    wrong, message = PASS_VISIBLE[name]
    exec(wrong, namespace)
    exec(_test_cell(name, hidden=False), namespace)
    with pytest.raises((AssertionError, RuntimeError), match=re.escape(message)):
        exec(_test_cell(name, hidden=True), namespace)


@pytest.mark.parametrize("name", TASKS)
def test_the_solution_passes_visible_and_hidden_checks(namespace, name):
    exec(cell_by_id(SOURCE, name).source, namespace)
    exec(_test_cell(name, hidden=True), namespace)


def test_the_written_out_variants_are_right(namespace):
    # the helpers above, unchanged, are correct answers: the mistakes are exactly the changes
    exec(_bound(), namespace)
    exec(_test_cell("iwae_bound", hidden=True), namespace)
    exec("@torch.no_grad()\n" + _estimate(), namespace)
    exec(_test_cell("estimate_log_likelihood", hidden=True), namespace)


# ---------------------------------------------------------------------------------------------
# The out-of-kernel verifier

MIXED = {
    # log K forgotten: only the gradient survives (a constant does not change it)
    "iwae_bound": _bound(mean="torch.logsumexp(log_w, 0)"),
    # right, but all K samples in one decoder call: everything but the memory bound
    "estimate_log_likelihood": "@torch.no_grad()\n" + _estimate(chunk="K"),
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
    importing = {**solution, "estimate_log_likelihood": "from dgm_course.objectives import log_likelihood\n\n"
                                                        + solution["estimate_log_likelihood"]}
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
    assert {t: v.points for t, v in verdicts.items()} == {"iwae_bound": 1.0, "estimate_log_likelihood": 4.0}, (
        {t: v.reason for t, v in verdicts.items()})
    assert verdicts["iwae_bound"].passed == ["its gradient with respect to every weight vs autograd of the reference"]
    (failed,) = verdicts["estimate_log_likelihood"].failed
    assert failed.startswith("no decoder call evaluates more than chunk_size * B pairs"), failed


def test_a_reference_imported_anywhere_costs_every_task(verified):
    verdicts = verified["importing the reference"]
    assert {t: v.points for t, v in verdicts.items()} == dict.fromkeys(TASKS, 0.0)
    assert all("uses the library's reference dgm_course.objectives.log_likelihood" in v.reason
               for v in verdicts.values())
