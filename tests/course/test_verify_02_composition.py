"""Notebook 02 (composition of flows): its test cells and its verification spec against wrong answers
(the tests every notebook gets come from ``_verify``).

In this process, a log-density right only on the visible 3D example fails the hidden checks, and so
does the identity. The verifier with ``specs/02_composition.py`` gives a submission mixing a wrong
answer, a reference in disguise and correct work written differently exactly the points of its
correct parts.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from ._course import ASSIGNMENT_IDS, notebook
from ._verify import (assert_every_task_scores_zero, assert_only_the_hidden_checks_fail,
                      assert_the_hidden_checks_alone_fail, reasons, scores, solution_answers, verify_submissions)
from ._verify import (  # noqa: F401 - the tests every notebook gets, collected here with this module's data
    namespace, pytest_generate_tests, test_the_solution_passes_visible_and_hidden_checks,
    test_the_verifier_gives_the_blank_release_zero, test_the_verifier_gives_the_solution_full_marks,
    test_visible_checks_name_the_mistake)

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


def test_hidden_checks_catch_what_the_visible_ones_miss(namespace):
    assert_only_the_hidden_checks_fail(namespace, SOURCE, *HARD_CODED, "in 2D vs the reference FlowModel")


def test_the_identity_fails_the_hidden_checks_too(namespace):
    assert_the_hidden_checks_alone_fail(namespace, SOURCE, "compose_forward", IDENTITY, "vs the reference Compose")


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


# Issue 20: the library's Compose reached by paths a per-cell static check cannot see. Each scored
# 10/10 while the worker's library held Compose (the probe imported it).
REACHING = {
    # a computed name: the worker's Compose is a stand-in that raises
    "compose_forward": "import importlib\n\n"
                       "def compose_forward(flows, x):\n"
                       "    base = importlib.import_module('dgm_course.flows.' + 'base')\n"
                       "    return getattr(base, 'Com' + 'pose')(flows)(x)\n",
    # every subclass of Flow and every class alive, while the probe calls this function
    "compose_inverse": "import gc\n\n"
                       "def compose_inverse(flows, z):\n"
                       "    classes, todo = [], [Flow]\n"
                       "    while todo:\n"
                       "        classes.append(todo.pop())\n"
                       "        todo.extend(classes[-1].__subclasses__())\n"
                       "    classes += [c for c in gc.get_objects() if isinstance(c, type)]\n"
                       "    for c in classes:\n"
                       "        if c.__name__ in ('Compose', 'GlowStep', 'Steps') and hasattr(c, 'inverse'):\n"
                       "            return c(flows).inverse(z)\n"
                       "    raise LookupError('no composition of flows in reach')\n",
}


def alias_from_another_cell(solution: dict[str, str]) -> dict[str, str]:
    """``dgm_course.flows`` imported under an alias in one solution cell, its Compose used in another."""
    return {**solution, "compose_inverse": f"from dgm_course import flows as F\n\n{solution['compose_inverse']}",
            "compose_forward": "def compose_forward(flows, x):\n    return F.Compose(flows)(x)\n"}


@pytest.fixture(scope="module")
def verified():
    solution = solution_answers(SOURCE, TASKS)
    importing = {**solution,
                 "compose_forward": f"from dgm_course.flows import Compose\n\n{solution['compose_forward']}"}
    return verify_submissions(ID, {"mixed": MIXED, "importing the reference": importing},
                              {"reaching the reference": REACHING, "alias": alias_from_another_cell(solution)})


def test_the_verifier_gives_exactly_the_points_of_the_correct_parts(verified):
    verdicts = verified["mixed"]
    assert scores(verdicts) == {"compose_forward": 0.0, "compose_inverse": 3.0, "flow_log_prob": 0.0}, reasons(verdicts)
    # the identity with log-det 0 fails both the reference output and the grader's autograd log-det
    assert len(verdicts["compose_forward"].failed) == 3 and verdicts["compose_forward"].passed == []
    assert "not available while grading" in verdicts["flow_log_prob"].reason


def test_a_reference_imported_anywhere_costs_every_task(verified):
    assert_every_task_scores_zero(verified["importing the reference"], TASKS,
                                  "uses the library's reference dgm_course.flows.Compose")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # gc's search touches torch's deprecated objects
def test_the_attacks_work_where_the_library_is_whole(namespace):
    """In this process (the whole library, Compose a Flow) each attack gets the reference's answer:
    the verifier's 0 below is the worker's library's doing, not a broken attack."""
    from dgm_course.flows import Affine, AffineCoupling, Compose, alternating_mask

    steps = [AffineCoupling(alternating_mask(3, 0), hidden=8).double(), Affine(3).double()]
    x = torch.randn(5, 3, dtype=torch.float64)
    for code in REACHING.values():
        exec(code, namespace)
    z, log_det = Compose(steps)(x)
    assert all(torch.equal(a, b) for a, b in zip(namespace["compose_forward"](steps, x), (z, log_det)))
    assert all(torch.equal(a, b) for a, b in zip(namespace["compose_inverse"](steps, z), Compose(steps).inverse(z)))
    namespace["F"] = importlib.import_module("dgm_course.flows")
    exec(alias_from_another_cell(solution_answers(SOURCE, TASKS))["compose_forward"], namespace)
    assert all(torch.equal(a, b) for a, b in zip(namespace["compose_forward"](steps, x), (z, log_det)))


def test_the_reference_is_out_of_reach_at_run_time(verified):
    verdicts = verified["reaching the reference"]
    assert scores(verdicts) == {"compose_forward": 0.0, "compose_inverse": 0.0, "flow_log_prob": 4.0}, reasons(verdicts)
    assert "not available while grading" in verdicts["compose_forward"].reason
    # neither the library's Compose nor the probe's own composition is a class with an inverse there
    assert "LookupError (cell compose_inverse, line 12)" in verdicts["compose_inverse"].reason


def test_an_alias_imported_in_one_cell_and_used_in_another_is_detected(verified):
    assert_every_task_scores_zero(verified["alias"], TASKS,
                                  "uses the library's reference dgm_course.flows.Compose (line 2 of compose_forward)")
