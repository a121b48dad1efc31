"""The spec contract: what a spec imports, the defaults every course spec keeps, the dense-algebra guard."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dgm_course.course.spec import AssignmentSpec, Task, f64
from dgm_course.course.verify import load_spec
from dgm_course.runtime.guards import DENSE_FUNCTIONS, NoDenseAlgebra, dense_call_message

from ._course import ASSIGNMENT_IDS

SPECS = Path(__file__).resolve().parents[2] / "dgm_course" / "course" / "specs"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "notebooks.md"


@pytest.mark.parametrize("assignment_id", ASSIGNMENT_IDS)
def test_a_spec_imports_only_the_contract_of_the_grading_package(assignment_id):
    tree = ast.parse((SPECS / f"{assignment_id}.py").read_text())
    course = {node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dgm_course.course")}
    course |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
               if a.name.startswith("dgm_course.course")}
    assert course == {"dgm_course.course.spec"}


@pytest.mark.parametrize("assignment_id", ASSIGNMENT_IDS)
def test_every_course_spec_keeps_the_default_limits(assignment_id):
    spec, default = load_spec(assignment_id), AssignmentSpec("x", ())
    kept = ("setup_ids", "skip_ids", "setup_seconds", "cell_seconds", "wall_seconds", "limits")
    assert {k: getattr(spec, k) for k in kept} == {k: getattr(default, k) for k in kept}


def test_the_example_of_the_docs_is_a_spec_whose_probe_and_reference_agree():
    block = re.search(r"```python\n(.*?)```", DOCS.read_text().split("## Adding notebook NN")[1], re.S).group(1)
    ns: dict = {}
    exec(compile(textwrap.dedent(block), "<docs/notebooks.md>", "exec"), ns)  # dedent: a list item's block
    spec = ns["SPEC"]
    assert isinstance(spec, AssignmentSpec) and spec.setup_ids == ("setup",) and spec.wall_seconds == 180
    (task,) = spec.tasks
    assert isinstance(task, Task) and task.max_points == 2
    inputs = task.draw(np.random.default_rng(0))
    got = task.probe({"square": lambda x: x * x}, inputs)
    assert torch.equal(got["y"], task.expect(inputs)["y"])


def test_f64_is_a_float64_copy():
    a = np.arange(3.0)
    t = f64(a)
    t[0] = 7.0
    assert t.dtype == torch.float64 and a[0] == 0.0
    assert f64(2).dtype == torch.float64 and f64([1, 2]).tolist() == [1.0, 2.0]


def _dense_calls():
    a = torch.eye(3, dtype=torch.float64) + 0.1 * torch.ones(3, 3, dtype=torch.float64)
    b = torch.ones(3, 1, dtype=torch.float64)
    lu, piv = torch.linalg.lu_factor(a)
    return {
        torch.linalg.slogdet: (a,), torch.linalg.det: (a,), torch.det: (a,), torch.slogdet: (a,),
        torch.logdet: (a,), torch.Tensor.det: (a,), torch.Tensor.slogdet: (a,), torch.Tensor.logdet: (a,),
        torch.linalg.inv: (a,), torch.linalg.inv_ex: (a,), torch.inverse: (a,), torch.Tensor.inverse: (a,),
        torch.linalg.pinv: (a,), torch.linalg.solve: (a, b), torch.linalg.solve_ex: (a, b),
        torch.linalg.lstsq: (a, b), torch.linalg.lu: (a,), torch.linalg.lu_factor: (a,),
        torch.linalg.lu_factor_ex: (a,), torch.linalg.lu_solve: (lu, piv, b), torch.linalg.eig: (a,),
        torch.linalg.eigvals: (a,),
    }


def test_the_guard_refuses_every_dense_function_with_a_message_feedback_may_quote():
    calls = _dense_calls()
    assert set(calls) == set(DENSE_FUNCTIONS)
    pattern = dense_call_message("use the formula")
    for func, args in calls.items():
        with pytest.raises(AssertionError) as err, NoDenseAlgebra("use the formula"):
            func(*args)
        assert re.fullmatch(pattern, str(err.value)), (func, str(err.value))


def test_the_guard_lets_structured_algebra_through():
    a = torch.triu(torch.rand(4, 4, dtype=torch.float64)) + torch.eye(4, dtype=torch.float64)
    b = torch.rand(4, 2, dtype=torch.float64)
    with NoDenseAlgebra("use the formula"):
        x = torch.linalg.solve_triangular(a, b, upper=True)
        log_det = torch.diagonal(a).abs().log().sum()
    assert torch.allclose(a @ x, b)
    assert torch.allclose(log_det, torch.linalg.slogdet(a)[1])


def test_the_course_specs_use_the_shared_guard():
    for assignment_id in ("04_planar_sylvester", "06_linear_flows_glow"):
        spec = load_spec(assignment_id)
        probes = {t.probe for t in spec.tasks if t.messages}
        assert probes, assignment_id
        for probe in probes:
            source = ast.unparse(ast.parse(inspect.getsource(probe)))
            assert "NoDenseAlgebra(reason)" in source and "TorchFunctionMode" not in source
