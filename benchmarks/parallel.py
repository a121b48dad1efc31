"""Independent benchmark jobs in worker processes, one torch thread each, results in submission order.

Each job is ``(function, args)``; with ``workers=1`` the jobs run here, one after the other, so a
run without a pool is the same code. Workers are *spawned* (a fresh interpreter that imports the
function's module), not forked: forking a process whose torch has started its thread pools can
hang. A job's exception is raised here, when its result is collected, as it would be inline.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

__all__ = ["default_workers", "run_jobs"]

Job = tuple[Callable[..., Any], tuple]


def default_workers(limit: int = 2) -> int:
    """``limit`` workers, or fewer on a machine with fewer cores."""
    return max(1, min(limit, os.cpu_count() or 1))


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_jobs(jobs: Sequence[Job], workers: int) -> list[Any]:
    """``[f(*args) for f, args in jobs]``, computed by ``workers`` processes on one torch thread each."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(jobs) <= 1:
        _one_thread()
        return [f(*args) for f, args in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_one_thread) as pool:
        futures = [pool.submit(f, *args) for f, args in jobs]  # submitted in order, so started in order
        try:
            return [future.result() for future in futures]
        except BaseException:
            pool.shutdown(cancel_futures=True)  # do not wait for the jobs not started yet
            raise
