"""Verification spec of notebook 02, composition of flows (3 tasks, 10 points).

Every check runs on a random composition the grader draws: its length, the kind of each step
(an elementwise ``Affine`` or a coupling layer of either parity) and all weights come from the
grading seed, so a composition right only on the notebook's two-step example fails.
Expected values are computed here, in float64, on the *reference* map (the library's
``Compose`` of the same steps): outputs by ``Compose``, log-dets by ``jacobian_log_det`` of the
reference map (the grader's autograd), so the identity with log-det 0, self-consistent, fails.
The inverse is checked on ``z = f(x)`` for data ``x``: it must give ``x`` back, with the
autograd log-det of the reference inverse. (No ``Sigmoid`` steps here, unlike the notebook's
examples: one that saturates makes ``g(f(x)) = x`` lose digits in float64 for any correct answer.)

Tolerances: 1e-8 absolute and relative, far above float64 round-off of these O(1)-O(10) values
and far below any conceptual error (a step skipped, a log-det taken at the wrong point or with
the wrong sign, a missing normalizing constant move a value by O(0.1) or more).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dgm_course.course.verify import AssignmentSpec, Check, Task
from dgm_course.flows import Affine, AffineCoupling, Compose, alternating_mask
from dgm_course.jacobian import jacobian_log_det

TOL = 1e-8
REFERENCES = ("dgm_course.flows.Compose", "dgm_course.flows.FlowModel", "dgm_course.jacobian.jacobian_log_det",
              "dgm_course.jacobian.batch_jacobian")
HIDDEN = ("dgm_course.flows.FlowModel", "dgm_course.jacobian.jacobian_log_det", "dgm_course.jacobian.batch_jacobian")
AFFINE, COUPLING_0, COUPLING_1 = range(3)


def _t(a) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float64)


def _steps(kinds, dim: int, theta) -> list:
    """The composition the probes build too (same kinds, same order of parameters)."""
    steps = [Affine(dim) if k == AFFINE else AffineCoupling(alternating_mask(dim, int(k) - 1), hidden=8)
             for k in kinds]
    steps = [s.double() for s in steps]
    if theta is not None:
        torch.nn.utils.vector_to_parameters(_t(theta), Compose(steps).parameters())
    return steps


def _draw_composition(rng: np.random.Generator, dim: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    kinds = rng.integers(AFFINE, COUPLING_1 + 1, size=K)
    kinds[0] = COUPLING_0  # at least one coupling layer, so the steps interact
    n = sum(p.numel() for s in _steps(kinds, dim, None) for p in s.parameters())
    return kinds, 0.5 * rng.normal(size=n)


def _log_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z.pow(2).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


# Task 1: z = f_K(...f_1(x)) and the summed log-det -----------------------------------------------

def draw_forward(rng: np.random.Generator) -> dict:
    kinds, theta = _draw_composition(rng, dim=3, K=int(rng.integers(4, 8)))
    return {"kinds": kinds, "theta": theta, "x": 1.5 * rng.normal(size=(16, 3))}


def probe_forward(ns, inputs):
    import torch

    from dgm_course.flows import Affine, AffineCoupling, Compose, alternating_mask

    steps = [(Affine(3) if k == 0 else AffineCoupling(alternating_mask(3, int(k) - 1), hidden=8)).double()
             for k in inputs["kinds"]]
    torch.nn.utils.vector_to_parameters(torch.from_numpy(inputs["theta"]), Compose(steps).parameters())
    z, log_det = ns["compose_forward"](steps, torch.from_numpy(inputs["x"]))
    return {"z": z, "log_det": log_det}


def expect_forward(inputs: dict) -> dict:
    f = Compose(_steps(inputs["kinds"], 3, inputs["theta"]))
    x = _t(inputs["x"])
    with torch.no_grad():
        z = f(x)[0]
    return {"z": z, "log_det": jacobian_log_det(lambda v: f(v)[0], x)}


# Task 2: x = g_1(...g_K(z)) and its log-det ----------------------------------------------------------

def draw_inverse(rng: np.random.Generator) -> dict:
    kinds, theta = _draw_composition(rng, dim=3, K=int(rng.integers(4, 8)))
    x = 1.5 * rng.normal(size=(16, 3))
    with torch.no_grad():
        z = Compose(_steps(kinds, 3, theta))(_t(x))[0].numpy()
    return {"kinds": kinds, "theta": theta, "x": x, "z": z}


def probe_inverse(ns, inputs):
    import torch

    from dgm_course.flows import Affine, AffineCoupling, Compose, alternating_mask

    steps = [(Affine(3) if k == 0 else AffineCoupling(alternating_mask(3, int(k) - 1), hidden=8)).double()
             for k in inputs["kinds"]]
    torch.nn.utils.vector_to_parameters(torch.from_numpy(inputs["theta"]), Compose(steps).parameters())
    x, log_det = ns["compose_inverse"](steps, torch.from_numpy(inputs["z"]))
    return {"x": x, "log_det": log_det}


def expect_inverse(inputs: dict) -> dict:
    f = Compose(_steps(inputs["kinds"], 3, inputs["theta"]))
    return {"x": _t(inputs["x"]), "log_det": jacobian_log_det(lambda v: f.inverse(v)[0], _t(inputs["z"]))}


# Task 3: log p(x | theta) = log N(f(x); 0, I) + log|det J_f(x)| ---------------------------------------

def draw_log_prob(rng: np.random.Generator) -> dict:
    out = {}
    for name, dim in (("a", 2), ("b", int(rng.integers(3, 7)))):
        kinds, theta = _draw_composition(rng, dim=dim, K=int(rng.integers(3, 6)))
        out |= {f"kinds_{name}": kinds, f"theta_{name}": theta, f"x_{name}": 2.0 * rng.normal(size=(32, dim))}
    return out


def probe_log_prob(ns, inputs):
    import torch

    from dgm_course.flows import Affine, AffineCoupling, Compose, alternating_mask

    out = {}
    for name in ("a", "b"):
        x = torch.from_numpy(inputs[f"x_{name}"])
        dim = x.shape[1]
        flow = Compose([(Affine(dim) if k == 0 else AffineCoupling(alternating_mask(dim, int(k) - 1), hidden=8))
                        .double() for k in inputs[f"kinds_{name}"]])
        torch.nn.utils.vector_to_parameters(torch.from_numpy(inputs[f"theta_{name}"]), flow.parameters())
        out[name] = ns["flow_log_prob"](flow, x)
    return out


def expect_log_prob(inputs: dict) -> dict:
    out = {}
    for name in ("a", "b"):
        x = _t(inputs[f"x_{name}"])
        f = Compose(_steps(inputs[f"kinds_{name}"], x.shape[1], inputs[f"theta_{name}"]))
        with torch.no_grad():
            z = f(x)[0]
        out[name] = _log_normal(z) + jacobian_log_det(lambda v: f(v)[0], x)
    return out


SPEC = AssignmentSpec(
    assignment_id="02_composition",
    tasks=(
        Task("compose_forward", ("compose_forward",), ("test_compose_forward",), draw_forward, probe_forward,
             expect_forward,
             (Check("z of a random composition vs the reference", "z", "z", 1, TOL, TOL),
              Check("log-det vs the grader's autograd log|det J_f(x)|", "log_det", "log_det", 2, TOL, TOL)),
             forbidden=REFERENCES),
        Task("compose_inverse", ("compose_inverse",), ("test_compose_inverse",), draw_inverse, probe_inverse,
             expect_inverse,
             (Check("g(f(x)) gives the data x back", "x", "x", 1, TOL, TOL),
              Check("inverse log-det vs the grader's autograd log|det J_g(z)|", "log_det", "log_det", 2, TOL, TOL)),
             forbidden=REFERENCES),
        Task("flow_log_prob", ("flow_log_prob",), ("test_flow_log_prob",), draw_log_prob, probe_log_prob,
             expect_log_prob,
             (Check("log p(x | theta) of a random 2D flow (grader's autograd log-det)", "a", "a", 3, TOL, TOL),
              Check("log p(x | theta) of a random flow in 3 to 6 dimensions", "b", "b", 1, TOL, TOL)),
             forbidden=REFERENCES),
    ),
    # Only the imports: the locked demo cells train a flow for seconds.
    setup_ids=("setup",),
    hidden=HIDDEN,
    setup_seconds=60,
    cell_seconds=10,
    wall_seconds=180,
)
