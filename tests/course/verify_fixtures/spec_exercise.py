"""The verification spec of the test exercise (see ``exercise.py``); the shape of a real spec."""

from __future__ import annotations

import numpy as np
import torch

from dgm_course.course.sandbox import Limits
from dgm_course.course.verify import AssignmentSpec, Check, Task
from dgm_course.jacobian import batch_jacobian, jacobian_log_det

# float64 inputs: 1e-6 still admits a float32 intermediate a student may create by accident (eps
# 1.2e-7 on values of order 1-10), and is far below any conceptual error (a missing term moves a
# log-det by O(0.1)).
ATOL = RTOL = 1e-6


def _t(a) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float64)


# Planar ---------------------------------------------------------------------------------------

def draw_planar(rng: np.random.Generator) -> dict:
    w = rng.normal(size=2)
    u = rng.normal(size=2)
    wu = w @ u  # u_hat: the projection that makes the map invertible (w.u_hat >= -1)
    u = u + (-1 + np.log1p(np.exp(wu)) - wu) * w / (w @ w)
    return {"x": rng.normal(size=(16, 2)), "u": u, "w": w, "b": rng.normal(size=())}


def probe_planar(ns, inputs):
    import torch

    t = {k: torch.from_numpy(v) for k, v in inputs.items()}
    z, log_det = ns["planar_forward"](t["x"], t["u"], t["w"], t["b"])
    return {"z": z, "log_det": log_det}


def _planar_map(u, w, b):
    return lambda x: x + torch.tanh(x @ w + b)[:, None] * u


def expect_planar(inputs: dict) -> dict:
    x, u, w, b = (_t(inputs[k]) for k in ("x", "u", "w", "b"))
    f = _planar_map(u, w, b)
    return {"z": f(x), "log_det": jacobian_log_det(f, x)}


# Sigmoid --------------------------------------------------------------------------------------

def draw_sigmoid(rng: np.random.Generator) -> dict:
    return {"x": 2.0 * rng.normal(size=(16, 3))}


def probe_sigmoid(ns, inputs):
    import torch

    z, log_det = ns["sigmoid_forward"](torch.from_numpy(inputs["x"]))
    return {"z": z, "log_det": log_det}


def expect_sigmoid(inputs: dict) -> dict:
    x = _t(inputs["x"])
    return {"z": torch.sigmoid(x), "log_det": jacobian_log_det(torch.sigmoid, x)}


# Batched Jacobian -----------------------------------------------------------------------------

def draw_jacobian(rng: np.random.Generator) -> dict:
    return {"x": rng.normal(size=(4, 3)), "A": rng.normal(size=(3, 3)), "c": rng.normal(size=3)}


def probe_jacobian(ns, inputs):
    import torch

    A, c = torch.from_numpy(inputs["A"]), torch.from_numpy(inputs["c"])
    return {"J": ns["batch_jacobian"](lambda v: torch.tanh(v @ A.T + c) + v, torch.from_numpy(inputs["x"]))}


def expect_jacobian(inputs: dict) -> dict:
    x, A, c = (_t(inputs[k]) for k in ("x", "A", "c"))
    return {"J": batch_jacobian(lambda v: torch.tanh(v @ A.T + c) + v, x)}


SPEC = AssignmentSpec(
    assignment_id="exercise",
    tasks=(
        Task("planar", ("planar_solution",), ("planar_tests",), draw_planar, probe_planar, expect_planar,
             (Check("z = f(x) matches the reference", "z", "z", 1, ATOL, RTOL),
              Check("log_det matches log|det J_f| (grader's autograd)", "log_det", "log_det", 1, ATOL, RTOL)),
             forbidden=("dgm_course.flows.residual", "dgm_course.flows.Planar"), seconds=5),
        Task("sigmoid", ("sigmoid_solution",), ("sigmoid_tests",), draw_sigmoid, probe_sigmoid, expect_sigmoid,
             (Check("z = sigmoid(x)", "z", "z", 1, ATOL, RTOL),
              Check("log_det matches log|det J_f| (grader's autograd)", "log_det", "log_det", 1, ATOL, RTOL)),
             forbidden=("dgm_course.flows.Sigmoid",), seconds=5),
        Task("jacobian", ("jacobian_solution",), ("jacobian_tests",), draw_jacobian, probe_jacobian,
             expect_jacobian, (Check("J matches the grader's autograd Jacobian", "J", "J", 2, ATOL, RTOL),),
             forbidden=("dgm_course.jacobian",), seconds=5),
    ),
    hidden=("dgm_course.flows.residual", "dgm_course.flows.Sigmoid", "dgm_course.jacobian"),
    setup_seconds=60,
    cell_seconds=3,
    wall_seconds=120,
    limits=Limits(memory_mb=3072, stderr_bytes=256 << 10),
)

__all__ = ["SPEC"]
