"""The messages of the visible tests (dgm_course.course.checks.mismatch)."""

from __future__ import annotations

import torch

from dgm_course.course.checks import mismatch, show

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
