"""Notebook 02 (composition of flows): its test cells and its verification spec against wrong answers.

1. In this process (no kernel): the set-up cell, then a wrong task function, then the task's test
   cell from the source. The visible checks must name the mistake; the hidden ones must catch what
   the visible ones let through; the solution passes both.
2. The out-of-kernel verifier with ``specs/02_composition.py``: the solution earns full marks, the
   blank release 0, and a submission mixing a wrong answer, a reference in disguise and correct
   work written differently earns exactly the points of its correct parts.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

import dgm_course.course.kernel
from dgm_course.course.verify import grading_seed, verify_submission

from ._course import ASSIGNMENT_IDS, ROOT, cell_by_id, notebook

ID = "02_composition"
pytestmark = pytest.mark.skipif(ID not in ASSIGNMENT_IDS, reason="notebook 02 is not in this course")
SOURCE = notebook("source", ID) if ID in ASSIGNMENT_IDS else None
TASKS = ("compose_forward", "compose_inverse", "flow_log_prob")
POINTS = {"compose_forward": 3.0, "compose_inverse": 3.0, "flow_log_prob": 4.0}

IDENTITY = "def compose_forward(flows, x):\n    return x.clone(), x.new_zeros(x.shape[0])\n"
NORMAL = "-0.5 * z.pow(2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)"
WRONG = {
    "flows[0] is f_1, applied first": ("compose_forward", "def compose_forward(flows, x):\n"
                                       "    log_det = x.new_zeros(len(x))\n"
                                       "    for f in reversed(flows):\n"
                                       "        x, ld = f(x)\n        log_det = log_det + ld\n"
                                       "    return x, log_det"),
    "each step was applied to x instead of to the previous step's output": (
        "compose_forward", "def compose_forward(flows, x):\n    log_det = x.new_zeros(len(x))\n"
                           "    for f in flows:\n        z, ld = f(x)\n        log_det = log_det + ld\n"
                           "    return z, log_det"),
    "only the last step's log-det was kept": ("compose_forward", "def compose_forward(flows, x):\n"
                                              "    for f in flows:\n        x, log_det = f(x)\n"
                                              "    return x, log_det"),
    "undo the last step, flows[-1], first": ("compose_inverse", "def compose_inverse(flows, z):\n"
                                             "    log_det = z.new_zeros(len(z))\n"
                                             "    for f in flows:\n        z, ld = f.inverse(z)\n"
                                             "        log_det = log_det + ld\n    return z, log_det"),
    "the log-det has the wrong sign: add each inverse's own": (
        "compose_inverse", "def compose_inverse(flows, z):\n    log_det = z.new_zeros(len(z))\n"
                           "    for f in reversed(flows):\n        z, ld = f.inverse(z)\n"
                           "        log_det = log_det - ld\n    return z, log_det"),
    "the log|det J_f| term is missing": ("flow_log_prob", f"def flow_log_prob(flow, x):\n    z, _ = flow(x)\n"
                                                          f"    return {NORMAL}"),
    "log p(z) was evaluated at x instead of at z = f(x)": (
        "flow_log_prob", f"def flow_log_prob(flow, x):\n    z, ld = flow(x)\n"
                         f"    return {NORMAL.replace('z.pow', 'x.pow')} + ld"),
    "the normalizing constant -(m/2) log(2 pi) of N(0, I) is missing": (
        "flow_log_prob", "def flow_log_prob(flow, x):\n    z, ld = flow(x)\n    return -0.5 * z.pow(2).sum(1) + ld"),
}
# Right on the visible 3D example, wrong in any other dimension.
HARD_CODED = ("flow_log_prob", "def flow_log_prob(flow, x):\n    z, ld = flow(x)\n"
                               "    return -0.5 * z.pow(2).sum(1) - 1.5 * math.log(2 * math.pi) + ld")


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
    with pytest.raises(AssertionError, match="in 2D vs the reference FlowModel"):
        exec(_test_cell(name, hidden=True), namespace)


def test_the_identity_fails_the_hidden_checks_too(namespace):
    # Hidden checks alone (visible part skipped): the reference comparison catches it.
    exec(IDENTITY, namespace)
    hidden = cell_by_id(SOURCE, "test_compose_forward").source.split("### BEGIN HIDDEN TESTS")[1]
    with pytest.raises(AssertionError, match="vs the reference Compose"):
        exec(hidden, namespace)


@pytest.mark.parametrize("name", TASKS)
def test_the_solution_passes_visible_and_hidden_checks(namespace, name):
    exec(cell_by_id(SOURCE, name).source, namespace)
    exec(_test_cell(name, hidden=True), namespace)


# ---------------------------------------------------------------------------------------------
# The out-of-kernel verifier

MIXED = {
    "compose_forward": IDENTITY,
    # correct, written differently: recursion, the log-det as a sum of a list
    "compose_inverse": "def compose_inverse(flows, z):\n"
                       "    if not flows:\n"
                       "        return z, z.new_zeros(z.shape[0])\n"
                       "    y, last = flows[-1].inverse(z)\n"
                       "    x, rest = compose_inverse(flows[:-1], y)\n"
                       "    return x, rest + last\n",
    # the reference, reached at run time under another name: not in the worker's library
    "flow_log_prob": "import importlib\n\n"
                     "def flow_log_prob(flow, x):\n"
                     "    flows = importlib.import_module('dgm_' + 'course.flows.base')\n"
                     "    base = flows.StandardNormal((x.shape[1],)).to(x.dtype)\n"
                     "    return getattr(flows, 'Flow' + 'Model')(base, flow).log_prob(x)\n",
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
                 "compose_forward": f"from dgm_course.flows import Compose\n\n{solution['compose_forward']}"}
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
        "compose_forward": 0.0, "compose_inverse": 3.0, "flow_log_prob": 0.0}, reasons
    # the identity with log-det 0 fails both the reference output and the grader's autograd log-det
    assert len(verdicts["compose_forward"].failed) == 3 and verdicts["compose_forward"].passed == []
    assert "not available while grading" in verdicts["flow_log_prob"].reason


def test_a_reference_imported_anywhere_costs_every_task(verified):
    verdicts = verified["importing the reference"]
    assert {t: v.points for t, v in verdicts.items()} == dict.fromkeys(TASKS, 0.0)
    assert all("uses the library's reference dgm_course.flows.Compose" in v.reason for v in verdicts.values())
