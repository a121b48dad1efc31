"""Notebook 03 (forward vs reverse KL): its test cells and its verification spec against wrong answers.

1. In this process (no kernel): the set-up cell, then a wrong task function, then the task's test
   cell from the source. The visible checks must name the mistake; the hidden ones must catch what
   the visible ones let through; the solution passes both.
2. The out-of-kernel verifier with ``specs/03_forward_reverse_kl.py``: the solution earns full
   marks, the blank release 0, and a submission mixing correct work written differently, a loss
   without gradients and a reference in disguise earns exactly the points of its correct parts.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

import dgm_course.course.kernel
from dgm_course.course.verify import grading_seed, verify_submission

from ._course import ASSIGNMENT_IDS, ROOT, cell_by_id, notebook

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


@pytest.fixture
def namespace(monkeypatch):
    # The real set-up would send this process's stderr to stdout: seeds are all the tests need.
    monkeypatch.setattr(dgm_course.course.kernel, "setup_notebook", lambda seed=0, **_: torch.manual_seed(seed))
    ns: dict = {}
    exec(cell_by_id(SOURCE, "setup").source, ns)
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
    with pytest.raises(AssertionError, match="in 5D vs the reference FlowModel.forward_kl"):
        exec(_test_cell(name, hidden=True), namespace)


def test_the_identity_fails_the_hidden_checks_too(namespace):
    # Hidden checks alone (visible part skipped): the reference comparison catches it.
    exec(IDENTITY, namespace)
    hidden = cell_by_id(SOURCE, "test_latent_log_prob").source.split("### BEGIN HIDDEN TESTS")[1]
    with pytest.raises(AssertionError, match="vs the reference inverse"):
        exec(hidden, namespace)


@pytest.mark.parametrize("name", TASKS)
def test_the_solution_passes_visible_and_hidden_checks(namespace, name):
    exec(cell_by_id(SOURCE, name).source, namespace)
    exec(_test_cell(name, hidden=True), namespace)


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
    importing = {**solution,
                 "latent_log_prob": f"from dgm_course.flows import FlowModel\n\n{solution['latent_log_prob']}"}
    submissions = {"solution": source, "release": release, "mixed": _with(release, MIXED),
                   "importing the reference": _with(release, importing)}
    seed = grading_seed("dgm-course", ID, "student-1")
    # One at a time: the verifier parses code with ``ast``, and CPython 3.11 can raise a spurious
    # "AST constructor recursion depth mismatch" when threads do that concurrently (gh-106905).
    return {name: {v.task_id: v for v in verify_submission(ID, nb, source, seed=seed)}
            for name, nb in submissions.items()}


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
    reasons = {t: v.reason for t, v in verdicts.items()}
    assert {t: v.points for t, v in verdicts.items()} == {
        "forward_kl_loss": 3.0, "reverse_kl_loss": 2.0, "latent_log_prob": 0.0}, reasons
    # a detached loss keeps the points of its values and loses those of its gradient
    assert [f.split(":")[0] for f in verdicts["reverse_kl_loss"].failed] == [
        "its gradient with respect to the flow's parameters (2D)",
        "its gradient with respect to the flow's parameters (3 to 6 dimensions)"]
    assert "not available while grading" in verdicts["latent_log_prob"].reason


def test_a_reference_imported_anywhere_costs_every_task(verified):
    verdicts = verified["importing the reference"]
    assert {t: v.points for t, v in verdicts.items()} == dict.fromkeys(TASKS, 0.0)
    assert all("uses the library's reference dgm_course.flows.FlowModel" in v.reason for v in verdicts.values())
