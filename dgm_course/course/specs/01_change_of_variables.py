"""Verification spec of notebook 01, the change-of-variables formula (4 tasks, 10 points).

Every expected value is computed here, in the grader, in float64: log-densities and log-dets from
the autograd Jacobian of the *trusted* map (:mod:`dgm_course.jacobian`), log|det| of matrices by
``torch.linalg.slogdet``. Inputs are drawn from the grading seed, so a student cannot tune an
answer to them.

Tolerances: the student's code sees float64 inputs; 1e-8 (absolute and relative) is far above
float64 round-off of these O(1)-O(100) quantities and far below any conceptual error (a missing
log-det term or a sign error moves a value by O(0.1) or more). The tiny-determinant and m = 200,000
checks use relative 1e-10 on values of order 1e3 to 1e5, as the notebook's hidden tests do.

Task 4 asks for O(m) and never the m x m Jacobian: its wide check runs at m = 200,000, where a dense
answer cannot finish (see ``WIDE``).
"""

from __future__ import annotations

import re

import numpy as np
import torch

from dgm_course.course.spec import AssignmentSpec, Check, Task, f64
from dgm_course.jacobian import batch_jacobian, jacobian_log_det

TOL = 1e-8



def _log_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z**2).sum(dim=1) - 0.5 * z.shape[1] * np.log(2 * np.pi)


# Task 1: log p_X(x) = log p_Z(f(x)) + log|det J_f(x)| ------------------------------------------

def draw_log_prob(rng: np.random.Generator) -> dict:
    return {"x": 1.5 * rng.normal(size=(32, 2)), "ab": rng.uniform(0.2, 0.8, size=2),
            "x_sigmoid": 2.0 * rng.normal(size=(16, 3))}


def probe_log_prob(ns, inputs):
    import math

    import torch

    a, b = (float(v) for v in inputs["ab"])

    def banana(x):  # f(x) = (x1, exp(-a x1)(x2 - b x1^2)), log|det J_f| = -a x1
        x1, x2 = x.unbind(dim=1)
        return torch.stack([x1, torch.exp(-a * x1) * (x2 - b * x1**2)], dim=1), -a * x1

    def sigmoid(x):
        return torch.sigmoid(x), (-torch.nn.functional.softplus(-x) - torch.nn.functional.softplus(x)).sum(dim=1)

    def log_normal(z):
        return -0.5 * (z**2).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)

    f = ns["log_prob_transformed"]
    return {"banana": f(torch.from_numpy(inputs["x"]), banana, log_normal),
            "sigmoid": f(torch.from_numpy(inputs["x_sigmoid"]), sigmoid, lambda z: z.new_zeros(z.shape[0]))}


def expect_log_prob(inputs: dict) -> dict:
    a, b = (float(v) for v in inputs["ab"])

    def banana(x):
        x1, x2 = x.unbind(dim=1)
        return torch.stack([x1, torch.exp(-a * x1) * (x2 - b * x1**2)], dim=1)

    x, xs = f64(inputs["x"]), f64(inputs["x_sigmoid"])
    return {"banana": _log_normal(banana(x)) + jacobian_log_det(banana, x),
            "sigmoid": jacobian_log_det(torch.sigmoid, xs)}  # uniform base: log p_Z = 0 on the cube


# Task 2: batched autograd Jacobian -------------------------------------------------------------

def draw_jacobian(rng: np.random.Generator) -> dict:
    return {"x": rng.normal(size=(6, 3)), "A": rng.normal(size=(2, 3)), "W": rng.normal(size=(3, 3))}


def probe_jacobian(ns, inputs):
    import torch

    A, W = torch.from_numpy(inputs["A"]), torch.from_numpy(inputs["W"])
    x = torch.from_numpy(inputs["x"])
    f = ns["batch_jacobian"]
    return {"J_rect": f(lambda v: torch.tanh(v @ A.T) + v[:, :2] ** 2, x),
            "J_coupled": f(lambda v: torch.tanh(v @ W.T) * v.sum(dim=1, keepdim=True) + v**3, x)}


def expect_jacobian(inputs: dict) -> dict:
    A, W, x = f64(inputs["A"]), f64(inputs["W"]), f64(inputs["x"])
    return {"J_rect": batch_jacobian(lambda v: torch.tanh(v @ A.T) + v[:, :2] ** 2, x),
            "J_coupled": batch_jacobian(lambda v: torch.tanh(v @ W.T) * v.sum(dim=1, keepdim=True) + v**3, x)}


# Task 3: log|det| of a batch of matrices, without overflow ------------------------------------

def draw_log_abs_det(rng: np.random.Generator) -> dict:
    return {"jac": rng.normal(size=(10, 6, 6)), "tiny": np.exp(-3 + rng.uniform(size=(3, 300)))}


def probe_log_abs_det(ns, inputs):
    import torch

    f = ns["log_abs_det"]
    return {"random": f(torch.from_numpy(inputs["jac"])),
            "tiny": f(torch.diag_embed(torch.from_numpy(inputs["tiny"])))}


def expect_log_abs_det(inputs: dict) -> dict:
    return {"random": torch.linalg.slogdet(f64(inputs["jac"])).logabsdet,
            "tiny": torch.log(f64(inputs["tiny"])).sum(dim=1)}


# Task 4: elementwise log-det in O(m) ----------------------------------------------------------

# The task says: O(m) per sample, never the m x m Jacobian. At m = WIDE an m x m Jacobian of float64
# takes 8 m^2 bytes = 320 GB per sample (the worker may allocate 4 GiB), and its m backward passes
# take minutes (the task may take 10 s), while one backward pass takes milliseconds: a dense
# answer (autograd Jacobian, then slogdet or its diagonal) cannot finish, and the task earns 0.
WIDE = 200_000
# What probe_elementwise says when the wide call fails (feedback quotes it: a fixed text).
TOO_WIDE = ("elementwise_log_det failed with m = 200000, where an m x m Jacobian (320 GB per sample) cannot "
            "be built: get every h'(x_i) from one backward pass, in O(m)")


def draw_elementwise(rng: np.random.Generator) -> dict:
    return {"x": 3.0 * rng.normal(size=(9, 6)), "c": rng.uniform(0.05, 0.2, size=()),
            "x_wide": rng.normal(size=(2, WIDE))}


def probe_elementwise(ns, inputs):
    import torch

    c = float(inputs["c"])
    f = ns["elementwise_log_det"]
    out = {"decreasing": f(lambda v: -v - v**3 / 3 + c * torch.sin(v), torch.from_numpy(inputs["x"]))}
    try:
        out["wide"] = f(torch.sinh, torch.from_numpy(inputs["x_wide"]))
    except Exception:  # out of memory, or anything else the m x m Jacobian runs into at this size
        raise RuntimeError("elementwise_log_det failed with m = 200000, where an m x m Jacobian (320 GB per "
                           "sample) cannot be built: get every h'(x_i) from one backward pass, in O(m)") from None
    return out


def expect_elementwise(inputs: dict) -> dict:
    c = float(inputs["c"])
    return {"decreasing": jacobian_log_det(lambda v: -v - v**3 / 3 + c * torch.sin(v), f64(inputs["x"])),
            "wide": torch.log(torch.cosh(f64(inputs["x_wide"]))).sum(dim=1)}


SPEC = AssignmentSpec(
    assignment_id="01_change_of_variables",
    tasks=(
        Task("log_prob_transformed", ("log_prob_transformed",), ("test_log_prob_transformed",),
             draw_log_prob, probe_log_prob, expect_log_prob,
             (Check("log p_X under a banana map (grader's autograd log-det)", "banana", "banana", 2, TOL, TOL),
              Check("log p_X under the sigmoid with a uniform base", "sigmoid", "sigmoid", 1, TOL, TOL)),
             forbidden=("dgm_course.flows.FlowModel",)),
        Task("batch_jacobian", ("batch_jacobian",), ("test_batch_jacobian",), draw_jacobian, probe_jacobian,
             expect_jacobian,
             (Check("J of a map R^3 -> R^2, shape (B, m_out, m_in)", "J_rect", "J_rect", 2, TOL, TOL),
              Check("J of a coupled map R^3 -> R^3", "J_coupled", "J_coupled", 1, TOL, TOL)),
             forbidden=("dgm_course.jacobian.batch_jacobian", "dgm_course.jacobian.jacobian_log_det")),
        Task("log_abs_det", ("log_abs_det",), ("test_log_abs_det",), draw_log_abs_det, probe_log_abs_det,
             expect_log_abs_det,
             (Check("log|det| of random 6x6 matrices", "random", "random", 1, TOL, TOL),
              Check("log|det| of 300x300 matrices whose determinant underflows", "tiny", "tiny", 1, TOL, 1e-10)),
             forbidden=("dgm_course.jacobian.jacobian_log_det",)),
        Task("elementwise_log_det", ("elementwise_log_det",), ("test_elementwise_log_det",), draw_elementwise,
             probe_elementwise, expect_elementwise,
             (Check("log-det of a decreasing elementwise map (grader's autograd)", "decreasing", "decreasing", 1,
                    TOL, TOL),
              Check("log-det of sinh with m = 200,000, in O(m) (no m x m Jacobian)", "wide", "wide", 1, TOL, 1e-10)),
             forbidden=("dgm_course.jacobian.jacobian_log_det", "dgm_course.jacobian.batch_jacobian"),
             messages=(re.escape(TOO_WIDE),)),
    ),
    hidden=("dgm_course.jacobian.batch_jacobian", "dgm_course.jacobian.jacobian_log_det",
            "dgm_course.flows.FlowModel"),
)
