"""The registry of flow test cases.

Every flow class exported from ``dgm_course.flows`` needs at least one :class:`Case`; the generic
tests in ``test_all_flows.py`` run each case through the autograd-Jacobian, inverse and
composition checks in float64, and fail if an exported flow has no case.

A module's cases live in ``tests/flows/cases_<module>.py`` as a list named ``CASES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from dgm_course.flows import Flow


@dataclass(frozen=True)
class Case:
    """One configuration of one flow class.

    ``make(seed)`` returns a float64 flow with random (non-trivial) parameters and a float64
    batch of inputs ``x`` for its forward direction. ``directions`` lists the directions that
    are implemented exactly; a direction left out must raise ``NotImplementedError``.
    ``atol`` is the log-det tolerance; the default 1e-8 is float64 round-off over an O(D^3)
    slogdet with a margin: a looser one must be justified where the case is defined.
    """

    id: str
    cls: type[Flow]
    make: Callable[[int], tuple[Flow, Tensor]]
    directions: tuple[str, ...] = ("forward", "inverse")
    atol: float = 1e-8
