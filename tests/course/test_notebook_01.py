"""Notebook 01's test cells against typical wrong answers: the visible checks name the mistake,
and the hidden checks catch an answer the visible ones let through.

The cells run in this process (no kernel): the setup cell, then a wrong task function, then the
task's test cell from the source, with or without its hidden block.
"""

from __future__ import annotations

import pytest

from ._course import ASSIGNMENT_IDS, cell_by_id, notebook, setup_namespace, task_test_code

ID = "01_change_of_variables"
SOURCE = notebook("source", ID) if ID in ASSIGNMENT_IDS else None
pytestmark = pytest.mark.skipif(SOURCE is None, reason="notebook 01 is not in this course")

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


@pytest.fixture
def namespace(monkeypatch):
    return setup_namespace(SOURCE, monkeypatch)


def _test_cell(name: str, hidden: bool) -> str:
    return task_test_code(SOURCE, name, hidden)


@pytest.mark.parametrize("hint", list(WRONG))
def test_visible_checks_name_the_mistake(namespace, hint):
    name, wrong = WRONG[hint]
    exec(wrong, namespace)
    with pytest.raises(AssertionError) as failure:
        exec(_test_cell(name, hidden=False), namespace)
    message = str(failure.value)
    assert hint in message, message
    assert "expected" in message and "got" in message


def test_hidden_checks_catch_what_the_visible_ones_miss(namespace):
    # Right for the diagonal matrices of the visible checks, wrong for any other matrix.
    exec("def log_abs_det(jac):\n    return jac.diagonal(dim1=1, dim2=2).abs().log().sum(dim=1)", namespace)
    exec(_test_cell("log_abs_det", hidden=False), namespace)
    with pytest.raises(AssertionError, match="random matrices vs the reference"):
        exec(_test_cell("log_abs_det", hidden=True), namespace)


@pytest.mark.parametrize("name", ["log_prob_transformed", "batch_jacobian", "log_abs_det", "elementwise_log_det"])
def test_the_solution_passes_visible_and_hidden_checks(namespace, name):
    exec(cell_by_id(SOURCE, name).source, namespace)
    exec(_test_cell(name, hidden=True), namespace)
