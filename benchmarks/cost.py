r"""Cost growth: the linear flows' log-det and inverse against the dimension, and the library's Jacobian check.

- **Linear flows**: :math:`\log|\det W|` and the inverse of a batch, for ``DenseLinear``
  (``slogdet`` and ``solve``: O(m^3)), ``LULinear`` (a sum, O(m); two triangular solves, O(m^2)
  per row) and ``QRLinear`` (a sum; ``m`` reflections and a triangular solve, O(m^2) per row),
  for m from 16 to 1024. Each time is the best of several calls (the least disturbed by other
  load); the slope of log time against log m is fitted over the larger half of the sizes, where
  the asymptotic cost shows (below, a call's fixed overhead dominates and the slope is near 0).
- **Jacobian check**: the generic autograd-Jacobian tests of ``tests/flows/test_all_flows.py``
  (the log-det of every registered case against ``slogdet`` of its batched autograd Jacobian, in
  both directions, float64) timed over the same case registry and seeds as the test suite.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from dgm_course.flows import DenseLinear, LULinear, QRLinear

__all__ = ["best_time", "LinearCost", "linear_costs", "JacobianCheck", "jacobian_check"]

LINEAR_FLOWS = {"dense": DenseLinear, "LU": LULinear, "QR": QRLinear}


def best_time(fn: Callable[[], object], min_total: float = 0.05, min_calls: int = 3) -> float:
    """The shortest wall time (s) of ``fn()`` over at least ``min_calls`` calls and ``min_total`` seconds."""
    fn()  # warm-up: first-call allocations and lazy initialization
    best, total, calls = math.inf, 0.0, 0
    while calls < min_calls or total < min_total:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, total, calls = min(best, elapsed), total + elapsed, calls + 1
    return best


@dataclass
class LinearCost:
    """Times (s) of one linear flow at each size ``m``, and the fitted log-log slopes."""

    name: str
    sizes: list[int]
    log_det_s: list[float] = field(default_factory=list)
    inverse_s: list[float] = field(default_factory=list)

    def slope(self, which: str) -> float:
        """The least-squares slope of log(time) against log(m) over the larger half of the sizes."""
        times = self.log_det_s if which == "log_det" else self.inverse_s
        half = len(self.sizes) // 2
        m, t = np.log(self.sizes[half:]), np.log(times[half:])
        return float(np.polyfit(m, t, 1)[0])

    @property
    def fit_from(self) -> int:
        return self.sizes[len(self.sizes) // 2]


def linear_costs(sizes: list[int], batch: int = 256, log: Callable[[str], None] = print) -> list[LinearCost]:
    """Time ``log_abs_det()`` and ``inverse(z)`` of a ``(batch, m)`` ``z`` for each flow and size (no grad)."""
    results = [LinearCost(name, sizes) for name in LINEAR_FLOWS]
    log(f"linear flows: log-det and inverse for m in {sizes}")
    with torch.no_grad():
        for m in sizes:
            z = torch.randn(batch, m, generator=torch.Generator().manual_seed(m))
            for result, cls in zip(results, LINEAR_FLOWS.values()):
                flow = cls(m, seed=0)
                result.log_det_s.append(best_time(flow.log_abs_det))
                result.inverse_s.append(best_time(lambda: flow.inverse(z)))
    return results


@dataclass
class JacobianCheck:
    """The time (s) of the generic Jacobian tests over ``cases`` registry cases and ``seeds``."""

    cases: int
    seeds: list[int]
    total_s: float
    slowest: list[tuple[str, float]]  # (case id, seconds over all seeds and both directions), slowest first


def jacobian_check(seeds: list[int] | None = None, log: Callable[[str], None] = print) -> JacobianCheck:
    """Run the log-det-vs-autograd tests of ``tests/flows/test_all_flows.py`` for every case.

    ``seeds`` defaults to the test module's ``SEEDS``. Timed after one warm-up check (the first
    vmap of a process pays for torch.func's set-up). A failing check raises: a benchmark of a
    broken library is no benchmark.
    """
    from tests.flows import test_all_flows as suite

    seeds = list(suite.SEEDS) if seeds is None else seeds
    log(f"Jacobian check: {len(suite.CASES)} cases x seeds {seeds}, both directions")
    suite.test_forward_log_det_matches_autograd(suite.CASES[0], seeds[0])  # warm-up: torch.func's first vmap
    per_case = []
    for case in suite.CASES:
        start = time.perf_counter()
        for seed in seeds:
            suite.test_forward_log_det_matches_autograd(case, seed)
            suite.test_inverse_log_det_matches_autograd(case, seed)
        per_case.append((case.id, time.perf_counter() - start))
    per_case.sort(key=lambda item: -item[1])
    return JacobianCheck(len(per_case), seeds, sum(t for _, t in per_case), per_case[:3])
