"""Verification spec of notebook 02, composition of flows (3 tasks, 10 points).

Every check runs on random compositions the grader draws, in 3 dimensions and in a dimension from
2 to 6: the length, the kind of each step (an elementwise ``Affine`` or a coupling layer of either
parity) and all weights come from the grading seed, so a composition right only on the
notebook's two-step example fails. Expected values are computed here, in float64, on the
*reference* map (the library's ``Compose`` of the same steps): outputs by ``Compose``, log-dets by
``jacobian_log_det`` of the reference map (the grader's autograd), so the identity with log-det 0,
self-consistent, fails. The inverse is checked on ``z = f(x)`` for data ``x``: it must give ``x``
back, with the autograd log-det of the reference inverse. (No ``Sigmoid`` steps here, unlike the
notebook's examples: one that saturates makes ``g(f(x)) = x`` lose digits in float64 for any
correct answer.) Every reference is missing from the worker's library, ``Compose`` included: the
probe builds what it needs without it (see :func:`probe`).

Tolerances: 1e-8 absolute and relative, far above float64 round-off of these O(1)-O(10) values
and far below any conceptual error (a step skipped, a log-det taken at the wrong point or with
the wrong sign, a missing normalizing constant move a value by O(0.1) or more).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dgm_course.course.spec import AssignmentSpec, Check, Task, f64
from dgm_course.flows import Affine, AffineCoupling, Compose, alternating_mask
from dgm_course.jacobian import jacobian_log_det

TOL = 1e-8
TASKS = ("compose_forward", "compose_inverse", "flow_log_prob")
REFERENCES = ("dgm_course.flows.Compose", "dgm_course.flows.FlowModel", "dgm_course.jacobian.jacobian_log_det",
              "dgm_course.jacobian.batch_jacobian")
CASES = ("a", "b")  # 3 dimensions, and 2 to 6
AFFINE, COUPLING_0, COUPLING_1 = range(3)



def _steps(kinds, dim: int, theta=None) -> list:
    """The composition the probe builds too (same kinds, same order of parameters)."""
    steps = [(Affine(dim) if k == AFFINE else AffineCoupling(alternating_mask(dim, int(k) - 1), hidden=8)).double()
             for k in kinds]
    if theta is not None:
        torch.nn.utils.vector_to_parameters(f64(theta), Compose(steps).parameters())
    return steps


def _draw(task: str):
    """Per case a random composition and a batch ``v``: data for Tasks 1 and 3, ``z = f(x)`` for Task 2."""

    def draw(rng: np.random.Generator) -> dict:
        out = {"task": np.asarray(TASKS.index(task))}
        for case, dim in zip(CASES, (3, int(rng.integers(2, 7)))):
            kinds = rng.integers(AFFINE, COUPLING_1 + 1, size=int(rng.integers(3, 8)))
            kinds[0] = COUPLING_0  # at least one coupling layer, so the steps interact
            n = sum(p.numel() for s in _steps(kinds, dim) for p in s.parameters())
            theta, x = 0.5 * rng.normal(size=n), 1.5 * rng.normal(size=(16, dim))
            out |= {f"kinds_{case}": kinds, f"theta_{case}": theta, f"x_{case}": x, f"v_{case}": x}
            if task == "compose_inverse":
                with torch.no_grad():
                    out[f"v_{case}"] = Compose(_steps(kinds, dim, theta))(f64(x))[0].numpy()
        return out

    draw.__name__ = f"draw_{task}"
    return draw


def probe(ns, inputs):
    """The one probe of the three tasks (only its source reaches the worker): build, then call the task.

    The worker's library has no ``Compose`` (it is forbidden, so it is hidden): the steps get their
    parameters through a ``ModuleList`` (the order of ``Compose(steps).parameters()``), and
    ``flow_log_prob``, which takes a flow, gets a composition of its own made for that call only: a
    class defined in that branch, not a ``Flow`` (so ``Flow.__subclasses__()`` never lists it),
    with a forward pass only. ``flow_log_prob`` is the spec's last task, so it exists only once the
    other two have answered.
    """
    import torch

    from dgm_course.flows import Affine, AffineCoupling, alternating_mask

    task = ("compose_forward", "compose_inverse", "flow_log_prob")[int(inputs["task"])]
    if task == "flow_log_prob":

        class Steps(torch.nn.Module):  # f = f_K o ... o f_1 with its log-det, for this call only
            def __init__(self, flows):
                super().__init__()
                self.flows, self.event_shape = torch.nn.ModuleList(flows), flows[0].event_shape

            def forward(self, x):
                log_det = x.new_zeros(x.shape[0])
                for flow in self.flows:
                    x, step_log_det = flow(x)
                    log_det = log_det + step_log_det
                return x, log_det

    out = {}
    for case in ("a", "b"):
        v = torch.from_numpy(inputs[f"v_{case}"])
        dim = v.shape[1]
        steps = [(Affine(dim) if k == 0 else AffineCoupling(alternating_mask(dim, int(k) - 1), hidden=8)).double()
                 for k in inputs[f"kinds_{case}"]]
        torch.nn.utils.vector_to_parameters(torch.from_numpy(inputs[f"theta_{case}"]),
                                            torch.nn.ModuleList(steps).parameters())
        if task == "flow_log_prob":
            out[case] = ns[task](Steps(steps), v)
        else:
            out[f"out_{case}"], out[f"log_det_{case}"] = ns[task](steps, v)
    return out


def _reference(inputs: dict, case: str):
    x = f64(inputs[f"x_{case}"])
    return Compose(_steps(inputs[f"kinds_{case}"], x.shape[1], inputs[f"theta_{case}"])), x


def expect_forward(inputs: dict) -> dict:
    out = {}
    for case in CASES:
        f, x = _reference(inputs, case)
        with torch.no_grad():
            out[f"out_{case}"] = f(x)[0]
        out[f"log_det_{case}"] = jacobian_log_det(lambda v: f(v)[0], x)
    return out


def expect_inverse(inputs: dict) -> dict:
    out = {}
    for case in CASES:
        f, x = _reference(inputs, case)
        out[f"out_{case}"] = x
        out[f"log_det_{case}"] = jacobian_log_det(lambda v: f.inverse(v)[0], f64(inputs[f"v_{case}"]))
    return out


def expect_log_prob(inputs: dict) -> dict:
    out = {}
    for case in CASES:
        f, x = _reference(inputs, case)
        with torch.no_grad():
            z = f(x)[0]
        log_normal = -0.5 * z.pow(2).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
        out[case] = log_normal + jacobian_log_det(lambda v: f(v)[0], x)
    return out


def _checks(output: str, log_det: str) -> tuple[Check, ...]:
    return (Check(output, "out_a", "out_a", 0.5, TOL, TOL),
            Check(f"{log_det} in 3D vs the grader's autograd", "log_det_a", "log_det_a", 1.5, TOL, TOL),
            Check(f"{log_det} in 2 to 6 dimensions", "log_det_b", "log_det_b", 1, TOL, TOL))


SPEC = AssignmentSpec(
    assignment_id="02_composition",
    tasks=(
        Task("compose_forward", ("compose_forward",), ("test_compose_forward",), _draw("compose_forward"), probe,
             expect_forward, _checks("z of a random composition vs the reference", "log|det J_f(x)|"),
             forbidden=REFERENCES),
        Task("compose_inverse", ("compose_inverse",), ("test_compose_inverse",), _draw("compose_inverse"), probe,
             expect_inverse, _checks("g(f(x)) gives the data x back", "log|det J_g(z)|"), forbidden=REFERENCES),
        Task("flow_log_prob", ("flow_log_prob",), ("test_flow_log_prob",), _draw("flow_log_prob"), probe,
             expect_log_prob,
             (Check("log p(x | theta) of a random 3D flow (grader's autograd log-det)", "a", "a", 3, TOL, TOL),
              Check("log p(x | theta) of a random flow in 2 to 6 dimensions", "b", "b", 1, TOL, TOL)),
             forbidden=REFERENCES),
    ),
    hidden=REFERENCES,  # all of them: the probe does without Compose
)
