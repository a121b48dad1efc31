"""The messages of the visible tests (dgm_course.runtime.checks.mismatch)."""

from __future__ import annotations

import torch

from dgm_course.runtime.checks import mismatch, show

X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)


def test_a_match_is_the_empty_string():
    assert mismatch("f(x)", X.sum(dim=1), torch.tensor([3.0, 7.0], dtype=torch.float64), atol=1e-12) == ""


def test_a_wrong_value_names_input_expected_got_and_the_worst_sample():
    message = mismatch("f(x)", torch.tensor([3.0, 8.0], dtype=torch.float64),
                       torch.tensor([3.0, 7.0], dtype=torch.float64), atol=1e-6, inputs={"x": X})
    assert message.startswith("f(x) is wrong.")
    assert "input x = [[1.0, 2.0], [3.0, 4.0]]" in message
    assert "expected  [3.0, 7.0]" in message and "got       [3.0, 8.0]" in message
    assert "mismatch at sample 1" in message


def test_shape_dtype_and_type_mistakes_are_named():
    expected = torch.tensor([3.0, 7.0], dtype=torch.float64)
    assert "expected shape (2,), got (2, 1)" in mismatch("f(x)", expected[:, None], expected, atol=1e-6)
    assert "dtype torch.float32, expected torch.float64" in mismatch("f(x)", expected.float(), expected, atol=1e-6)
    assert "expected a tensor, got list" in mismatch("f(x)", [3.0, 7.0], expected, atol=1e-6)


def test_the_first_matching_mistake_is_named():
    expected = torch.tensor([3.0, 7.0], dtype=torch.float64)
    mistakes = {"you summed the wrong axis": torch.tensor([4.0, 6.0], dtype=torch.float64),
                "you returned nan": torch.full((2,), torch.nan, dtype=torch.float64)}
    assert "f(x) is wrong: you summed the wrong axis." in mismatch("f(x)", X.sum(dim=0), expected, 1e-6,
                                                                  mistakes=mistakes)
    assert "f(x) is wrong: you returned nan." in mismatch("f(x)", torch.full((2,), torch.nan, dtype=torch.float64),
                                                         expected, 1e-6, mistakes=mistakes)


def test_show_rounds_and_truncates():
    assert show(torch.tensor([1 / 3])) == "[0.3333]"
    assert show(torch.arange(10.0)).endswith("... (10 rows in all)")
    assert show("text") == "'text'"


# ---------------------------------------------------------------------------------------------
# assert_no_reference: the visible warning before submitting (what the grader scores 0)

import importlib.util  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import pytest  # noqa: E402

from dgm_course.runtime.checks import assert_no_reference, reference_use  # noqa: E402


def _module(tmp_path, code: str):
    """A module written from ``code``, as a notebook's cells define their functions (source readable)."""
    name = f"student_{abs(hash(code))}"
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(code))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_a_solution_that_writes_its_own_is_not_warned(tmp_path):
    m = _module(tmp_path, """
        import torch
        from dgm_course.flows import Affine

        def compose_forward(x, steps):
            log_det = torch.zeros(x.shape[0], dtype=x.dtype)
            for step in steps:
                x, ld = step(x)
                log_det = log_det + ld
            return x, log_det
        """)
    assert reference_use("02_composition", m.compose_forward) == ""
    assert assert_no_reference("02_composition", m.compose_forward) is None


@pytest.mark.parametrize("body", [
    "from dgm_course.flows import Compose\n            return Compose(steps)(x)",       # imported in the function
    "return flows.Compose(steps)(x)",                                             # a module attribute
    "return C(steps)(x)",                                                         # an alias in the globals
    "return _helper(x, steps)",                                                   # a helper of the student's
])
def test_each_path_to_the_reference_is_named(tmp_path, body):
    m = _module(tmp_path, f"""
        from dgm_course import flows
        from dgm_course.flows import Compose as C

        def _helper(x, steps):
            return C(steps)(x)

        def compose_forward(x, steps):
            {body}
        """)
    message = reference_use("02_composition", m.compose_forward)
    assert message == ("compose_forward uses dgm_course.flows.Compose, which scores 0 when graded: "
                       "this task asks you to write it yourself.")
    with pytest.raises(AssertionError, match="uses dgm_course.flows.Compose, which scores 0"):
        assert_no_reference("02_composition", m.compose_forward)


def test_a_forbidden_module_counts_for_what_it_defines_and_only_the_tasks_own_names(tmp_path):
    m = _module(tmp_path, """
        from dgm_course.flows import Planar
        from dgm_course.objectives import kl_annealing

        def planar_g(z, u, w, b):
            return Planar(z.shape[1])(z)

        def active_units(mu, threshold):
            return kl_annealing(mu, threshold)
        """)
    # 04 forbids the module dgm_course.flows.residual, which defines Planar.
    assert "planar_g uses dgm_course.flows.residual" in reference_use("04_planar_sylvester", m.planar_g)
    # 07 forbids kl_annealing for annealed_loss only: active_units may call it.
    assert reference_use("07_posterior_collapse", m.active_units) == ""
    m.active_units.__name__ = "annealed_loss"  # the same code as the task that forbids it
    assert "annealed_loss uses dgm_course.objectives.kl_annealing" in reference_use("07_posterior_collapse",
                                                                                    m.active_units)


def test_a_function_without_readable_source_is_not_warned():
    namespace: dict = {}
    exec("def compose_forward(x, steps):\n    return x", namespace)  # noqa: S102 - no file, no source
    assert reference_use("02_composition", namespace["compose_forward"]) == ""
