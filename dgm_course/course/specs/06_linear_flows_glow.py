"""Verification spec of notebook 06, linear flows and Glow (6 tasks, 10 points).

Every expected value is computed here, in the grader, in float64: outputs by the library's
reference flows (``LULinear``, ``QRLinear``, ``InvConv1x1("plain")``) loaded with the drawn
parameters, log-dets from the autograd Jacobian of the grader's own map
(:mod:`dgm_course.jacobian`), so an identity flow with log-det 0 fails both. Inputs and parameters
are drawn from the grading seed; permutations and pivot signs are random too.

The probes call the LU and QR functions with determinants, inverses and general solves switched
off (:class:`~dgm_course.runtime.guards.NoDenseAlgebra`, the notebook's ``no_dense_linear_algebra``):
the tasks ask for an O(m) log-det and triangular solves, and a solution that calls ``slogdet`` fails
with that reason.

Tolerances: 1e-9 (absolute and relative) is far above the float64 round-off of these O(1)-O(10)
values (the drawn matrices are well conditioned: unit-diagonal triangular factors with entries of
scale 0.3, pivots ``exp(N(0, 0.3^2))``) and far below any conceptual error (a transposed or
missing factor, a sign, a missing ``h * w``: O(0.1) or more).
"""

from __future__ import annotations

import numpy as np
import torch

from dgm_course.course.spec import AssignmentSpec, Check, Task, dense_call_message, f64
from dgm_course.flows import InvConv1x1, LULinear, QRLinear
from dgm_course.jacobian import jacobian_log_det

TOL = 1e-9
# Any of these answers a task: statically forbidden, and removed from the worker's library.
REFERENCES = ("dgm_course.flows.linear.LULinear", "dgm_course.flows.linear.QRLinear",
              "dgm_course.flows.linear.DenseLinear", "dgm_course.flows.glow")
# What probe_linear_flow says when a dense function is called (feedback quotes it: a fixed text).
NO_DENSE = (dense_call_message("the task asks for an O(m) log-det and triangular solves, without determinants, "
                               "inverses or general solves"),)
SIZES = (6, 24)  # the LU cases: a small one and a wider one
QR_SHAPES = ((5, 3), (6, 6))  # the QR cases (m, K): fewer reflections than dimensions, and K = m



# Task 1: the LU parametrization ------------------------------------------------------------------

def draw_lu_factors(rng: np.random.Generator) -> dict:
    m = 7  # every entry random: the entries outside the triangles must be ignored
    return {"lower": rng.normal(size=(m, m)), "upper": rng.normal(size=(m, m)),
            "log_abs_s": 0.5 * rng.normal(size=m), "sign": rng.choice([-1.0, 1.0], size=m)}


def probe_lu_factors(ns, inputs):
    import torch

    args = [torch.from_numpy(inputs[k]) for k in ("lower", "upper", "log_abs_s", "sign")]
    L, U = ns["lu_factors"](*args)
    return {"L": L, "U": U}


def _lu_reference(lower, upper, log_abs_s, sign, P=None, b=None) -> LULinear:
    m = len(log_abs_s)
    ref = LULinear(m, seed=0).double()  # every parameter is overwritten: the seed only spares the global RNG
    with torch.no_grad():
        ref.lower.copy_(f64(lower))
        ref.upper.copy_(f64(upper))
        ref.log_abs_s.copy_(f64(log_abs_s))
        ref.sign.copy_(f64(sign))
        ref.P.copy_(torch.eye(m, dtype=torch.float64) if P is None else f64(P))
        ref.bias.copy_(torch.zeros(m, dtype=torch.float64) if b is None else f64(b))
    return ref


def expect_lu_factors(inputs: dict) -> dict:
    L, U = _lu_reference(inputs["lower"], inputs["upper"], inputs["log_abs_s"], inputs["sign"]).factors()
    return {"L": L.detach(), "U": U.detach()}


# Tasks 2 to 5: the LU and QR linear flows, forward and inverse ---------------------------------

def probe_linear_flow(ns, inputs):
    """Calls ``ns[inputs["function"]]`` on every case with determinants, inverses and general solves
    switched off (as the notebook's ``no_dense_linear_algebra`` does). Case ``c`` is the arrays
    ``c.0, c.1, ...``, the function's arguments in order; it returns ``c.out`` and ``c.log_det``."""
    import torch
    from dgm_course.runtime.guards import NoDenseAlgebra

    reason = ("the task asks for an O(m) log-det and "
              "triangular solves, without determinants, inverses or general solves")

    function = ns[str(inputs["function"])]
    out = {}
    for case in sorted({k.split(".")[0] for k in inputs if "." in k}):
        n_args = sum(k.startswith(case + ".") for k in inputs)
        args = [torch.from_numpy(inputs[f"{case}.{i}"]) for i in range(n_args)]
        with NoDenseAlgebra(reason):
            out[f"{case}.out"], out[f"{case}.log_det"] = function(*args)
    return out


def draw_lu(function: str):
    """Cases m6 and m24: the arguments (x or z, P, L, U, b) with a random permutation and pivot signs."""

    def draw(rng: np.random.Generator) -> dict:
        out = {"function": np.array(function)}
        for m in SIZES:
            s = rng.choice([-1.0, 1.0], size=m) * np.exp(0.3 * rng.normal(size=m))
            out |= {f"m{m}.0": rng.normal(size=(8, m)), f"m{m}.1": np.eye(m)[rng.permutation(m)],
                    f"m{m}.2": np.eye(m) + np.tril(0.3 * rng.normal(size=(m, m)), -1),
                    f"m{m}.3": np.triu(0.3 * rng.normal(size=(m, m)), 1) + np.diag(s),
                    f"m{m}.4": rng.normal(size=m)}
        return out

    return draw


def draw_qr(function: str):
    """Cases m5 (K = 3 reflections) and m6 (K = 6): the arguments (x or z, v, R, b), R with a positive diagonal."""

    def draw(rng: np.random.Generator) -> dict:
        out = {"function": np.array(function)}
        for m, K in QR_SHAPES:
            R = np.triu(0.3 * rng.normal(size=(m, m)), 1) + np.diag(np.exp(0.3 * rng.normal(size=m)))
            out |= {f"m{m}.0": rng.normal(size=(8, m)), f"m{m}.1": rng.normal(size=(K, m)), f"m{m}.2": R,
                    f"m{m}.3": rng.normal(size=m)}
        return out

    return draw



def _lu_flow_reference(inputs: dict, case: str) -> LULinear:
    P, L, U, b = (inputs[f"{case}.{i}"] for i in range(1, 5))
    s = np.diag(U)
    return _lu_reference(L, U, np.log(np.abs(s)), np.sign(s), P, b)


def _qr_flow_reference(inputs: dict, case: str) -> QRLinear:
    v, R, b = (inputs[f"{case}.{i}"] for i in range(1, 4))
    ref = QRLinear(R.shape[0], n_householder=len(v), seed=0).double()
    with torch.no_grad():
        ref.householder.copy_(f64(v))
        ref.upper.copy_(f64(R))  # only its strict upper triangle is used
        ref.log_r.copy_(f64(np.log(np.diag(R))))
        ref.bias.copy_(f64(b))
    return ref


def expect_linear_flow(reference, direction: str):
    """The reference's output and the grader's autograd log-det of the reference map, for every case."""

    def expect(inputs: dict) -> dict:
        out = {}
        for case in sorted({k.split(".")[0] for k in inputs if "." in k}):
            ref = reference(inputs, case)
            fn = ref.forward if direction == "forward" else ref.inverse
            x = f64(inputs[f"{case}.0"])
            with torch.no_grad():
                out[f"{case}.out"] = fn(x)[0]
            out[f"{case}.log_det"] = jacobian_log_det(lambda v: fn(v)[0], x).detach()
        return out

    return expect


# Task 6: the invertible 1x1 convolution -----------------------------------------------------------

def draw_invconv(rng: np.random.Generator) -> dict:
    c, h, w = 3, 3, 5  # h != w: h * h or w * w instead of h * w fails
    return {"x": rng.normal(size=(4, c, h, w)), "W": rng.normal(size=(c, c)) + 2 * np.eye(c)}


def probe_invconv(ns, inputs):
    import torch

    x, W = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["W"])
    z, log_det = ns["invconv1x1"](x, W)
    x_back, log_det_back = ns["invconv1x1"](z.detach(), torch.linalg.inv(W))  # the inverse: W^-1 per pixel
    return {"z": z, "log_det": log_det, "x_back": x_back, "log_det_back": log_det_back}


def expect_invconv(inputs: dict) -> dict:
    c = inputs["W"].shape[0]
    ref = InvConv1x1(c, "plain", seed=0).double()
    with torch.no_grad():
        ref.linear.w.copy_(f64(inputs["W"]))
    x = f64(inputs["x"])
    with torch.no_grad():
        z = ref(x)[0]
    log_det = jacobian_log_det(lambda v: ref(v)[0], x).detach()
    return {"z": z, "log_det": log_det, "x": x, "minus_log_det": -log_det}


def _checks(output: str, log_det: str, sizes, points: float) -> tuple[Check, ...]:
    return (*(Check(f"{output}, m = {m}", f"m{m}.out", f"m{m}.out", points, TOL, TOL) for m in sizes),
            *(Check(f"{log_det}, m = {m}", f"m{m}.log_det", f"m{m}.log_det", points, TOL, TOL) for m in sizes))


SPEC = AssignmentSpec(
    assignment_id="06_linear_flows_glow",
    tasks=(
        Task("lu_factors", ("lu_factors",), ("test_lu_factors",), draw_lu_factors, probe_lu_factors,
             expect_lu_factors,
             (Check("L = tril(lower, -1) + I (entries outside the triangle ignored)", "L", "L", 0.5, TOL, TOL),
              Check("U = triu(upper, 1) + diag(sign * exp(log_abs_s))", "U", "U", 0.5, TOL, TOL)),
             forbidden=REFERENCES),
        Task("lu_forward", ("lu_forward",), ("test_lu_forward",), draw_lu("lu_forward"), probe_linear_flow,
             expect_linear_flow(_lu_flow_reference, "forward"),
             _checks("z = P L U x + b vs the reference", "log_det vs the grader's autograd log|det J_f|", SIZES, 0.5),
             forbidden=REFERENCES, messages=NO_DENSE),
        Task("lu_inverse", ("lu_inverse",), ("test_lu_inverse",), draw_lu("lu_inverse"), probe_linear_flow,
             expect_linear_flow(_lu_flow_reference, "inverse"),
             _checks("x = U^-1 L^-1 P^T (z - b) vs the reference", "log_det vs the grader's autograd log|det J_g|",
                     SIZES, 0.5),
             forbidden=REFERENCES, messages=NO_DENSE),
        Task("qr_forward", ("qr_forward",), ("test_qr_forward",), draw_qr("qr_forward"), probe_linear_flow,
             expect_linear_flow(_qr_flow_reference, "forward"),
             _checks("z = Q R x + b vs the reference", "log_det vs the grader's autograd log|det J_f|", (5, 6), 0.5),
             forbidden=REFERENCES, messages=NO_DENSE),
        Task("qr_inverse", ("qr_inverse",), ("test_qr_inverse",), draw_qr("qr_inverse"), probe_linear_flow,
             expect_linear_flow(_qr_flow_reference, "inverse"),
             _checks("x = R^-1 Q^T (z - b) vs the reference", "log_det vs the grader's autograd log|det J_g|",
                     (5, 6), 0.25),
             forbidden=REFERENCES, messages=NO_DENSE),
        Task("invconv1x1", ("invconv1x1",), ("test_invconv1x1",), draw_invconv, probe_invconv, expect_invconv,
             (Check("z = W x at every pixel vs the reference", "z", "z", 0.75, TOL, TOL),
              Check("log_det vs the grader's autograd log|det J_f| (h * w log|det W|)", "log_det", "log_det", 0.75,
                    TOL, TOL),
              Check("invconv1x1(z, W^-1) gives x back", "x_back", "x", 0.25, TOL, TOL),
              Check("invconv1x1(z, W^-1) has log-det -h * w log|det W|", "log_det_back", "minus_log_det", 0.25,
                    TOL, TOL)),
             forbidden=REFERENCES),
    ),
    hidden=REFERENCES,
)
