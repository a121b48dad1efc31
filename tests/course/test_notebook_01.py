"""Notebook 01's test cells against typical wrong answers: the visible checks name the mistake,
and the hidden checks catch an answer the visible ones let through.

The cells run in this process (no kernel): the setup cell, then a wrong task function, then the
task's test cell from the source, with or without its hidden block (the tests every notebook gets
come from ``_verify``).
"""

from __future__ import annotations

import pytest

from ._course import ASSIGNMENT_IDS, notebook
from ._verify import assert_only_the_hidden_checks_fail
from ._verify import (  # noqa: F401 - shared tests (see _verify), collected here with this module's data
    namespace, pytest_generate_tests, test_the_solution_passes_visible_and_hidden_checks,
    test_visible_checks_name_the_mistake)

ID = "01_change_of_variables"
SOURCE = notebook("source", ID) if ID in ASSIGNMENT_IDS else None
pytestmark = pytest.mark.skipif(SOURCE is None, reason="notebook 01 is not in this course")
TASKS = ("log_prob_transformed", "batch_jacobian", "log_abs_det", "elementwise_log_det")
VISIBLE_MESSAGES_SAY = ("expected", "got")  # each visible failure shows both values

WRONG = {
    "the log|det J_f| term is missing": ("log_prob_transformed", "def log_prob_transformed(x, f, log_prob_z):\n"
                                         "    return log_prob_z(f(x)[0])"),
    "the log-det has the wrong sign": ("log_prob_transformed", "def log_prob_transformed(x, f, log_prob_z):\n"
                                       "    z, log_det = f(x)\n    return log_prob_z(z) - log_det"),
    "J is transposed": ("batch_jacobian", "from dgm_course.jacobian import batch_jacobian as reference\n"
                        "def batch_jacobian(fn, x):\n    return reference(fn, x).transpose(1, 2)"),
    "the log of a negative determinant": ("log_abs_det", "def log_abs_det(jac):\n"
                                          "    return torch.log(torch.linalg.det(jac))"),
    "underflows to 0: use torch.linalg.slogdet": ("log_abs_det", "def log_abs_det(jac):\n"
                                                  "    return torch.linalg.det(jac).abs().log()"),
    "log of a negative slope": ("elementwise_log_det", "def elementwise_log_det(h, x):\n"
                                "    x = x.detach().requires_grad_(True)\n"
                                "    return torch.autograd.grad(h(x).sum(), x)[0].log().sum(dim=1)"),
}


def test_hidden_checks_catch_what_the_visible_ones_miss(namespace):
    # Right for the diagonal matrices of the visible checks, wrong for any other matrix.
    diagonal_only = "def log_abs_det(jac):\n    return jac.diagonal(dim1=1, dim2=2).abs().log().sum(dim=1)"
    assert_only_the_hidden_checks_fail(namespace, SOURCE, "log_abs_det", diagonal_only,
                                       "random matrices vs the reference")
