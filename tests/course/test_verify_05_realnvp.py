"""Notebook 05 (RealNVP): its test cells and its verification spec against wrong answers
(the tests every notebook gets come from ``_verify``).

In this process, a coupling whose conditioner sees all of x fails the hidden checks, and so does the
identity with log-det 0. The verifier with ``specs/05_realnvp.py`` gives a submission mixing wrong
answers, references in disguise and correct work written differently exactly the points of its
correct parts.
"""

from __future__ import annotations

import pytest

from ._course import ASSIGNMENT_IDS, notebook
from ._verify import (assert_only_the_hidden_checks_fail, assert_the_hidden_checks_alone_fail, reasons, scores,
                      verify_submissions)
from ._verify import (  # noqa: F401 - the tests every notebook gets, collected here with this module's data
    namespace, pytest_generate_tests, test_the_solution_passes_visible_and_hidden_checks,
    test_the_verifier_gives_the_blank_release_zero, test_the_verifier_gives_the_solution_full_marks,
    test_visible_checks_name_the_mistake)

ID = "05_realnvp"
pytestmark = pytest.mark.skipif(ID not in ASSIGNMENT_IDS, reason="notebook 05 is not in this course")
SOURCE = notebook("source", ID) if ID in ASSIGNMENT_IDS else None
TASKS = ("half_mask", "alternating_mask", "checkerboard_mask", "channel_mask", "coupling_forward", "coupling_inverse")
POINTS = {"half_mask": 1.0, "alternating_mask": 1.0, "checkerboard_mask": 1.0, "channel_mask": 1.0,
          "coupling_forward": 3.0, "coupling_inverse": 3.0}
VISIBLE_MESSAGES_SAY = ("expected", "got")  # each visible failure shows both values


def _coupling(body: str, name: str = "coupling_forward", arg: str = "x") -> str:
    # a coupling function whose s_raw, t come from the conditioner; `body` finishes it
    return (f"def {name}({arg}, mask, conditioner, scale_bound=2.0):\n"
            f"    s_raw, t = conditioner(mask * {arg}).chunk(2, dim=1)\n"
            "    a = scale_bound\n" + "".join(f"    {line}\n" for line in body.splitlines()))


def _mask(name: str, args: str, body: str) -> str:
    return f"def {name}({args}, parity=0):\n" + "".join(f"    {line}\n" for line in body.splitlines())


CLAMPED = "s = a * torch.tanh(s_raw / a) * (1 - mask)\nt = t * (1 - mask)\n"
IDENTITY_FLOW = "def coupling_forward(x, mask, conditioner, scale_bound=2.0):\n    return x.clone(), x.new_zeros(x.shape[0])\n"
WRONG = {
    "the first D // 2 entries (rounded down) pass through": ("half_mask", _mask(
        "half_mask", "D", "m = (torch.arange(D) < (D + 1) // 2).float()\nreturn 1 - m if parity else m")),
    "parity=1 gives the complement 1 - m": ("alternating_mask", _mask(
        "alternating_mask", "D", "return (torch.arange(D) % 2 == 0).float()")),
    "these are stripes": ("checkerboard_mask", _mask(
        "checkerboard_mask", "C, H, W",
        "m = ((torch.arange(H * W) + parity) % 2 == 0).float().reshape(H, W)\nreturn m.expand(C, H, W).clone()")),
    "the first C // 2 channels (rounded down) pass through": ("channel_mask", _mask(
        "channel_mask", "C, H, W",
        "m = (torch.arange(C) < (C + 1) // 2).float()[:, None, None].expand(C, H, W).clone()\n"
        "return 1 - m if parity else m")),
    "the pass-through entry x1 was transformed too": ("coupling_forward", _coupling(
        "s = a * torch.tanh(s_raw / a)\nreturn x * torch.exp(s) + t, (s * (1 - mask)).reshape(len(x), -1).sum(1)")),
    "the clamp s = a tanh(s~ / a) is missing": ("coupling_forward", _coupling(
        "s, t = s_raw * (1 - mask), t * (1 - mask)\nreturn x * torch.exp(s) + t, s.reshape(len(x), -1).sum(1)")),
    "the log-det sums s over the pass-through entries too": ("coupling_forward", _coupling(
        CLAMPED + "return x * torch.exp(s) + t, (a * torch.tanh(s_raw / a)).reshape(len(x), -1).sum(1)")),
    "the log-det of f is +sum(s), not -sum(s)": ("coupling_forward", _coupling(
        CLAMPED + "return x * torch.exp(s) + t, -s.reshape(len(x), -1).sum(1)")),
    "subtract the shift first, then divide by the scale": ("coupling_inverse", _coupling(
        CLAMPED + "return z * torch.exp(-s) - t, -s.reshape(len(z), -1).sum(1)", "coupling_inverse", "z")),
    "the inverse's log-det is minus the forward's": ("coupling_inverse", _coupling(
        CLAMPED + "return (z - t) * torch.exp(-s), s.reshape(len(z), -1).sum(1)", "coupling_inverse", "z")),
}
# Right on the visible examples, whose conditioners read only pass-through entries: the
# conditioner sees all of x instead of m * x.
UNMASKED_INPUT = ("coupling_forward", "def coupling_forward(x, mask, conditioner, scale_bound=2.0):\n"
                  "    s_raw, t = conditioner(x).chunk(2, dim=1)\n"
                  "    s = scale_bound * torch.tanh(s_raw / scale_bound) * (1 - mask)\n"
                  "    return x * torch.exp(s) + t * (1 - mask), s.reshape(len(x), -1).sum(1)\n")


def test_hidden_checks_catch_what_the_visible_ones_miss(namespace):
    assert_only_the_hidden_checks_fail(namespace, SOURCE, *UNMASKED_INPUT,
                                       "z of coupling_forward vs the reference AffineCoupling")


def test_the_identity_flow_fails_the_hidden_checks_too(namespace):
    assert_the_hidden_checks_alone_fail(namespace, SOURCE, "coupling_forward", IDENTITY_FLOW, "vs the reference")


# ---------------------------------------------------------------------------------------------
# The out-of-kernel verifier

MIXED = {
    # correct, written differently: two constant blocks concatenated
    "half_mask": "def half_mask(D, parity=0):\n"
                 "    return torch.cat([torch.full((D // 2,), 1.0 - parity), torch.full((D - D // 2,), float(parity))])\n",
    # right for parity 0 only
    "alternating_mask": WRONG["parity=1 gives the complement 1 - m"][1],
    # stripes: alternating along the row-by-row numbering
    "checkerboard_mask": WRONG["these are stripes"][1],
    # the reference, reached at run time under another name: not in the worker's library
    "channel_mask": "import importlib\n\n"
                    "def channel_mask(C, H, W, parity=0):\n"
                    "    coupling = importlib.import_module('dgm_' + 'course.flows.coupling')\n"
                    "    return getattr(coupling, 'channel' + '_mask')(C, H, W, parity)\n",
    # self-consistent but wrong: the identity with log-det 0
    "coupling_forward": IDENTITY_FLOW,
    # right map, log-det with the forward's sign
    "coupling_inverse": WRONG["the inverse's log-det is minus the forward's"][1],
}
# The reference imported for the first task, all else right.
FORBIDDEN_FIRST = {"half_mask": "from dgm_course.flows import half_mask\n"}


@pytest.fixture(scope="module")
def verified():
    return verify_submissions(ID, {"mixed": MIXED}, on_source={"forbidden_first": FORBIDDEN_FIRST})


def test_the_verifier_gives_exactly_the_points_of_the_correct_parts(verified):
    verdicts = verified["mixed"]
    assert scores(verdicts) == {
        "half_mask": 1.0, "alternating_mask": 0.5, "checkerboard_mask": 0.0, "channel_mask": 0.0,
        "coupling_forward": 0.0, "coupling_inverse": 1.5}, reasons(verdicts)
    assert verdicts["alternating_mask"].passed == ["alternating_mask(..., parity=0) at sizes drawn for grading"]
    assert "not available while grading" in verdicts["channel_mask"].reason
    # the identity with log-det 0 fails the reference and the grader's autograd log-det, at both shapes
    assert len(verdicts["coupling_forward"].failed) == 4 and verdicts["coupling_forward"].passed == []
    assert [p.split(" ")[0] for p in verdicts["coupling_inverse"].passed] == ["x", "x"]  # vectors and images


def test_a_reference_imported_for_the_first_task_costs_only_its_points(verified):
    verdicts = verified["forbidden_first"]
    assert scores(verdicts) == {**POINTS, "half_mask": 0.0}, reasons(verdicts)
    assert "uses the library's reference dgm_course.flows.coupling.half_mask" in verdicts["half_mask"].reason
