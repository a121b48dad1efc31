r"""Refusing dense linear algebra: the guard of the tasks whose point is a structured log-det.

A planar layer's log-det by the matrix determinant lemma costs O(D), an LU layer's O(m); a call
to ``slogdet``, ``inv`` or ``solve`` gets the same number in O(D^3) and misses the lesson. Inside
:class:`NoDenseAlgebra` every such torch function raises ``AssertionError("<name> was called:
<reason>")``; :func:`dense_call_message` is the pattern of those messages, for a verifier spec's
``Task.messages`` (a finite set of texts, so feedback may quote them).

>>> import torch
>>> with NoDenseAlgebra("use the formula"):
...     torch.linalg.slogdet(torch.eye(2))
Traceback (most recent call last):
...
AssertionError: linalg_slogdet was called: use the formula
>>> import re
>>> bool(re.fullmatch(dense_call_message("use the formula"), "linalg_slogdet was called: use the formula"))
True
"""

from __future__ import annotations

import re

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["DENSE_FUNCTIONS", "NoDenseAlgebra", "dense_call_message"]

#: Determinants, inverses, general solves and eigendecompositions, as functions and as methods.
DENSE_FUNCTIONS = frozenset({
    torch.linalg.slogdet, torch.linalg.det, torch.det, torch.slogdet, torch.logdet,
    torch.Tensor.det, torch.Tensor.slogdet, torch.Tensor.logdet,
    torch.linalg.inv, torch.linalg.inv_ex, torch.inverse, torch.Tensor.inverse, torch.linalg.pinv,
    torch.linalg.solve, torch.linalg.solve_ex, torch.linalg.lstsq,
    torch.linalg.lu, torch.linalg.lu_factor, torch.linalg.lu_factor_ex, torch.linalg.lu_solve,
    torch.linalg.eig, torch.linalg.eigvals,
})

# The names torch gives them (``func.__name__``).
_NAMES = (r"(?:linalg_)?(?:slogdet|logdet|det|inv_ex|inv|inverse|pinv|solve_ex|solve|lstsq|lu_factor_ex"
          r"|lu_factor|lu_solve|lu|eigvals|eig)")


class NoDenseAlgebra(TorchFunctionMode):
    """Within this context a function of :data:`DENSE_FUNCTIONS` raises ``AssertionError``
    whose message is ``"<its name> was called: <reason>"``; every other torch call runs as usual."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in DENSE_FUNCTIONS:
            raise AssertionError(f"{func.__name__} was called: {self.reason}")
        return func(*args, **(kwargs or {}))


def dense_call_message(reason: str) -> str:
    """The regular expression of :class:`NoDenseAlgebra`'s messages for ``reason``."""
    return f"{_NAMES} was called: {re.escape(reason)}"
