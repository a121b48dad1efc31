r"""The spec contract: what a verification spec declares, and what the verifier answers.

A spec (``dgm_course/course/specs/<assignment_id>.py``, see :mod:`dgm_course.course.specs`)
imports this module alone: :class:`AssignmentSpec` made of :class:`Task` objects, each with its
:class:`Check` list; the verifier answers with one :class:`TaskVerdict` per task.
:func:`grading_seed` is the seed a grading run draws each submission's inputs from. The helpers
a spec's reference code shares: :func:`f64`, and for tasks that refuse dense linear
algebra :func:`~dgm_course.runtime.guards.dense_call_message`.

Importing it imports torch and numpy, not the verifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..runtime.guards import dense_call_message
from .sandbox import Limits

__all__ = ["AssignmentSpec", "Check", "SpecError", "Task", "TaskVerdict", "f64", "dense_call_message",
           "grading_seed"]


class SpecError(ValueError):
    """The spec does not fit the source notebook (an instructor's error, never a student's)."""


@dataclass(frozen=True)
class Check:
    """One graded comparison: worker output ``output`` against grader value ``expected``.

    Passes when shapes agree, every entry is finite and ``|out - exp| <= atol + rtol |exp|``.
    """

    name: str
    output: str
    expected: str
    points: float
    atol: float
    rtol: float = 0.0


@dataclass(frozen=True)
class Task:
    """A graded task of an assignment.

    - ``solution_ids``/``test_ids``: nbgrader ``grade_id`` values of its solution and test cells (the
      test cells' points must add up to the checks' points).
    - ``draw(rng) -> {name: ndarray}``: the inputs, drawn in the grader at grading time.
    - ``probe(ns, inputs) -> {name: tensor}``: runs in the worker; ``ns`` is the notebook's
      namespace. It must be a top-level function that imports what it needs in its body: only
      its source is shipped, so the grader's references never enter the worker.
    - ``expect(inputs) -> {name: tensor}``: the grader's reference values (float64).
    - ``forbidden``: dotted names (objects or modules) a solution may not use.
    - ``messages``: regular expressions of the probe's own exception messages that feedback may
      quote when a message matches one in full (a finite set of texts: a pattern that admits
      free text would let a student's message through, see :func:`_describe`).
    """

    task_id: str
    solution_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    draw: Callable[[np.random.Generator], dict[str, np.ndarray]]
    probe: Callable
    expect: Callable[[dict[str, np.ndarray]], dict[str, torch.Tensor]]
    checks: tuple[Check, ...]
    forbidden: tuple[str, ...] = ()
    seconds: float = 10.0
    messages: tuple[str, ...] = ()

    @property
    def max_points(self) -> float:
        return float(sum(c.points for c in self.checks))


@dataclass(frozen=True)
class AssignmentSpec:
    """What the verifier checks in one assignment, and its limits.

    ``setup_ids``: the source's trusted cells to run (default: the course's convention, the cell
    ``setup`` that holds the imports, as the locked cells after it plot and train; ``None``: every
    locked code cell that is neither a solution nor a test). ``skip_ids``: cells never run (slow training).
    ``hidden``: ``dgm_course`` modules or objects (``dgm_course.jacobian.batch_jacobian``)
    removed from the worker's copy of the library; it must cover every task's ``forbidden``
    (:func:`_check_hidden`). A removed class or function leaves a stand-in that raises when used,
    so the set-up cells may still import it; a whole module hidden must not be one they import.
    ``setup_seconds`` bounds interpreter start-up plus each set-up cell, ``cell_seconds`` each
    student cell, ``wall_seconds`` the whole submission including restarts. The defaults are the
    course's: every spec in :mod:`dgm_course.course.specs` keeps them.
    """

    assignment_id: str
    tasks: tuple[Task, ...]
    setup_ids: tuple[str, ...] | None = ("setup",)
    skip_ids: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    setup_seconds: float = 60.0
    cell_seconds: float = 10.0
    wall_seconds: float = 180.0
    limits: Limits = Limits()  # its wall_s is replaced by what is left of wall_seconds


@dataclass
class TaskVerdict:
    """The verified result of one task; ``reason`` is the feedback shown to the student.

    ``in_kernel_points``: what nbgrader's in-kernel tests gave (when passed in); ``flag`` says
    why it differs from the verified ``points``. ``isolation``: the sandbox level used
    (``"not run"`` when no student code had to run).
    """

    task_id: str
    points: float
    max_points: float
    passed: list[str]
    failed: list[str]
    reason: str
    isolation: str
    in_kernel_points: float | None = None
    flag: str | None = None


def grading_seed(course_id: str, assignment_id: str, student_id: str, key: str = "", nonce: str = "") -> int:
    """The grading seed of one submission: a hash the grader controls.

    ``key``: the grader's secret. Without one, a student who reads the specs can compute the
    inputs of their own grading and answer them from a table. ``nonce``: drawn afresh for each
    grading run and recorded with its grades, so a regrade or a resubmission is checked on new
    inputs (whatever a run let out is worth nothing to the next) while the grader, who holds
    the key and the record, can reproduce any past run.
    """
    text = f"{course_id}\0{assignment_id}\0{student_id}"
    if nonce:
        text = f"{nonce}\0{text}"
    digest = hashlib.sha256((f"{key}\0{text}" if key else text).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def f64(a) -> torch.Tensor:
    """A float64 copy of an array, a number or a tensor (parameters set from it may change in place)."""
    return torch.tensor(np.asarray(a), dtype=torch.float64)
