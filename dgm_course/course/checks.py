"""Messages for the visible tests of the notebooks: what was expected, what came back, for which input.

A visible test cell compares a student's value with a known one and asserts on the message::

    problem = mismatch("log_prob_transformed(x, f, log_prob_z)", got, expected, atol=1e-6,
                       inputs={"x": x}, mistakes={"the log-det term is missing": log_prob_z(z)})
    assert not problem, problem

The comparison is :func:`dgm_course.jacobian.assert_close` (shape, finiteness, tolerance, worst
sample); this module only words the result for a student. When the value matches one of the
``mistakes`` (a typical wrong answer computed by the test), the message names the mistake.

Example:
    >>> import torch
    >>> x = torch.tensor([[1.0], [2.0]])
    >>> mismatch("double(x)", 2 * x, 2 * x, atol=1e-6, inputs={"x": x})
    ''
    >>> print(mismatch("double(x)", x, 2 * x, atol=1e-6, inputs={"x": x},
    ...                mistakes={"you returned x unchanged": x}))
    double(x) is wrong: you returned x unchanged.
      input x = [[1.0], [2.0]]
      expected  [[2.0], [4.0]]
      got       [[1.0], [2.0]]
      (value: mismatch at sample 1: got 2, expected 4 ...)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from dgm_course.jacobian import FlowCheckError, assert_close

__all__ = ["mismatch", "show"]


def show(value: object, max_items: int = 6, digits: int = 4) -> str:
    """A short, readable rendering of a tensor (or anything): rounded, at most ``max_items`` rows."""
    if not isinstance(value, Tensor):
        return repr(value)
    t = value.detach().cpu()
    if t.is_floating_point():
        t = t.double().mul(10**digits).round().div(10**digits)
    rows = t.tolist()
    if isinstance(rows, list) and len(rows) > max_items:
        return f"{rows[:max_items]} ... ({t.shape[0]} rows in all)"[:600]
    return str(rows)[:600]


def mismatch(
    what: str,
    got: object,
    expected: Tensor,
    atol: float,
    rtol: float = 0.0,
    inputs: Mapping[str, object] | None = None,
    mistakes: Mapping[str, Tensor] | None = None,
) -> str:
    """``''`` if ``got`` equals ``expected`` within ``atol + rtol * |expected|``, else a message.

    The message says what was computed (``what``), for which ``inputs``, what was expected and
    what came back, and, when ``got`` equals one of ``mistakes`` (description -> the value that
    mistake gives), which mistake it looks like. Also wrong: a non-tensor, another shape or a
    dtype other than ``expected``'s.
    """
    if isinstance(got, Tensor) and got.shape == expected.shape and got.dtype != expected.dtype:
        detail = f"dtype {got.dtype}, expected {expected.dtype} (keep the input's dtype)"
    else:
        try:
            assert_close(got, expected, atol, rtol, what="value")  # type: ignore[arg-type]
            return ""
        except FlowCheckError as err:
            detail = str(err)
    diagnosis = "."
    for description, value in (mistakes or {}).items():
        if isinstance(got, Tensor) and got.shape == value.shape and torch.allclose(
            got.detach().to(value.dtype), value, atol=atol, rtol=max(rtol, 1e-6), equal_nan=True
        ):
            diagnosis = f": {description}."
            break
    lines = [f"{what} is wrong{diagnosis}"]
    lines += [f"  input {name} = {show(value)}" for name, value in (inputs or {}).items()]
    lines += [f"  expected  {show(expected)}", f"  got       {show(got)}", f"  ({detail})"]
    return "\n".join(lines)
