"""Verification spec of notebook 04, planar and Sylvester flows (3 tasks, 10 points).

Every expected value is computed here, in the grader, in float64: points ``x = g(z)`` by the
library's reference layers (``Planar``, ``OrthogonalSylvester``) loaded with the drawn parameters,
or by the grader's own one-line map where the parameters are outside what the library allows
(``w^T u < -1``, ``R1_ii R2_ii < -1``); log-dets from the autograd Jacobian of that map
(:mod:`dgm_course.jacobian`), so an identity flow with log-det 0 fails both. Parameters and inputs
are drawn from the grading seed.

The probes call the two layers with determinants, inverses and general solves switched off
(:class:`~dgm_course.runtime.guards.NoDenseAlgebra`, the notebook's ``no_dense_determinants``): the
tasks ask for the log-det from the matrix determinant lemma and from the diagonals of ``R1`` and ``R2``.

Tolerances: 1e-9 (absolute and relative) is far above the float64 round-off of these O(1)-O(800)
values and far below any conceptual error (``h`` for ``h'``, a missing ``|.|``, ``||w||`` for
``||w||^2``: O(0.1) or more). The draws keep every ``|det J_g|`` above 1e-3, where the log of an
autograd determinant loses no more than 1e-12.
"""

from __future__ import annotations

import numpy as np
import torch

from dgm_course.course.spec import AssignmentSpec, Check, Task, dense_call_message, f64
from dgm_course.flows import OrthogonalSylvester, Planar
from dgm_course.jacobian import jacobian_log_det

TOL = 1e-9
# Any of these answers a task: statically forbidden, and removed from the worker's library.
REFERENCES = ("dgm_course.flows.residual", "dgm_course.jacobian.jacobian_log_det", "dgm_course.jacobian.batch_jacobian")
# What probe_layer says when a dense function is called (feedback quotes it: a fixed text).
NO_DENSE = (dense_call_message("the task asks for the log-det from its formula (the matrix determinant lemma, "
                               "the diagonals of R1 and R2), without determinants, inverses or general solves"),)



def _planar(u, w, b) -> Planar:
    layer = Planar(len(w)).double()
    with torch.no_grad():
        layer.u.copy_(f64(u))
        layer.w.copy_(f64(w))
        layer.b.copy_(f64(b))
    return layer


def _away_from_zero(det: np.ndarray) -> bool:
    return bool(np.abs(det).min() > 1e-3)


def probe_layer(ns, inputs):
    """Calls ``ns[inputs["function"]]`` on every case with determinants, inverses and general solves
    switched off. Case ``c`` passes the arrays ``c.<name>`` for the names in ``inputs["args"]``, in
    order, and gets back ``c.x`` and ``c.log_det``."""
    import torch
    from dgm_course.runtime.guards import NoDenseAlgebra

    reason = ("the task asks for the log-det from its formula "
              "(the matrix determinant lemma, the diagonals of R1 and R2), without "
              "determinants, inverses or general solves")

    function, names = ns[str(inputs["function"])], [str(n) for n in inputs["args"]]
    out = {}
    for case in sorted({k.split(".")[0] for k in inputs if "." in k}):
        args = [torch.from_numpy(inputs[f"{case}.{n}"]) for n in names]
        with NoDenseAlgebra(reason):
            out[f"{case}.x"], out[f"{case}.log_det"] = function(*args)
    return out


# Task 1: the planar layer and its log-det by the lemma -----------------------------------------

def draw_planar_g(rng: np.random.Generator) -> dict:
    """Case ``hat``: D = 2 with the library's u_hat; case ``fold``: D = 5 with w^T u = -2.5 (1 + h' w^T u < 0 near the
    hyperplane), z drawn again until every |det J_g| > 1e-3."""
    u_raw, w, b = 1.5 * rng.normal(size=2), rng.normal(size=2), rng.normal()
    u_hat = _planar(u_raw, w, b).u_hat.detach().numpy()  # the layer's u_hat is the student's u
    out = {"function": np.array("planar_g"), "args": np.array(["z", "u", "w", "b"]),
           "hat.z": 1.5 * rng.normal(size=(32, 2)), "hat.u": u_hat, "hat.w": w, "hat.b": np.array(b),
           "hat.u_raw": u_raw}
    w5, u5 = rng.normal(size=5), rng.normal(size=5)
    u5 = u5 + (-2.5 - w5 @ u5) * w5 / (w5 @ w5)
    b5 = 0.5 * rng.normal()
    while True:
        z5 = rng.normal(size=(32, 5))
        if _away_from_zero(1 - 2.5 * (1 - np.tanh(z5 @ w5 + b5) ** 2)):
            break
    return out | {"fold.z": z5, "fold.u": u5, "fold.w": w5, "fold.b": np.array(b5)}


def expect_planar_g(inputs: dict) -> dict:
    z = f64(inputs["hat.z"])
    ref = _planar(inputs["hat.u_raw"], inputs["hat.w"], inputs["hat.b"])
    with torch.no_grad():
        x_hat = ref.inverse(z)[0]
    out = {"hat.x": x_hat, "hat.log_det": jacobian_log_det(lambda v: ref.inverse(v)[0], z).detach()}
    z, u, w, b = (f64(inputs[f"fold.{k}"]) for k in ("z", "u", "w", "b"))

    def g(v):  # outside the library's reach (w^T u < -1): the grader's own map
        return v + torch.tanh(v @ w + b)[:, None] * u

    return out | {"fold.x": g(z), "fold.log_det": jacobian_log_det(g, z)}


# Task 2: u_hat ----------------------------------------------------------------------------------

def draw_planar_u_hat(rng: np.random.Generator) -> dict:
    """Cases: D = 2 near the boundary; D = 6 with |w^T u| in the tens; D = 3 with w^T u = 800 (softplus overflow)."""
    w2 = rng.normal(size=2)
    w6, u6 = rng.normal(size=6), 8 * rng.normal(size=6)
    w3 = rng.normal(size=3)
    u3 = rng.normal(size=3)
    u3 = u3 + (800 - w3 @ u3) * w3 / (w3 @ w3)
    return {"near.u": rng.normal(size=2) - 1.5 * w2 / (w2 @ w2), "near.w": w2, "wide.u": u6, "wide.w": w6,
            "big.u": u3, "big.w": w3}


def probe_planar_u_hat(ns, inputs):
    import torch

    return {case: ns["planar_u_hat"](torch.from_numpy(inputs[f"{case}.u"]), torch.from_numpy(inputs[f"{case}.w"]))
            for case in ("near", "wide", "big")}


def expect_planar_u_hat(inputs: dict) -> dict:
    return {case: _planar(inputs[f"{case}.u"], inputs[f"{case}.w"], 0.0).u_hat.detach()
            for case in ("near", "wide", "big")}


# Task 3: the Sylvester layer and its log-det from the diagonals --------------------------------

def draw_sylvester_g(rng: np.random.Generator) -> dict:
    """Case ``o``: an O-SNF layer (D = 5, M = 3) with the library's Q, R1, R2; case ``wide``: D = 4, M = 2 with
    R1_ii R2_ii < -1 (a factor changes sign), z drawn again until every |det J_g| > 1e-3."""
    raw = {"q_raw": rng.normal(size=(5, 3)), "r1_raw": 1.5 * rng.normal(size=(3, 3)),
           "r2_raw": 1.5 * rng.normal(size=(3, 3)), "b": rng.normal(size=3)}
    ref = _o_snf(raw)
    out = {"function": np.array("sylvester_g"), "args": np.array(["z", "Q", "R1", "R2", "b"])}
    out |= {f"o.{k}": t.detach().numpy() for k, t in zip(("Q", "R1", "R2", "b"), (ref.Q, ref.R1, ref.R2, ref.b))}
    out |= {f"o.raw.{k}": v for k, v in raw.items()}
    out["o.z"] = 1.5 * rng.normal(size=(24, 5))
    Q = np.linalg.qr(rng.normal(size=(4, 2)))[0]
    R1 = np.triu(rng.normal(size=(2, 2)), 1) + np.diag([2.0, -1.5])
    R2 = np.triu(rng.normal(size=(2, 2)), 1) + np.diag([-1.5, 2.0])
    b = rng.normal(size=2)
    while True:
        z = rng.normal(size=(24, 4))
        dh = 1 - np.tanh(z @ Q @ R2.T + b) ** 2
        if _away_from_zero(np.prod(1 + dh * np.diag(R1) * np.diag(R2), axis=1)):
            break
    return out | {"wide.Q": Q, "wide.R1": R1, "wide.R2": R2, "wide.b": b, "wide.z": z}


def _o_snf(raw: dict) -> OrthogonalSylvester:
    ref = OrthogonalSylvester(*raw["q_raw"].shape).double()
    with torch.no_grad():
        for name, value in raw.items():
            getattr(ref, name).copy_(f64(value))
    return ref


def expect_sylvester_g(inputs: dict) -> dict:
    z = f64(inputs["o.z"])
    ref = _o_snf({k.removeprefix("o.raw."): v for k, v in inputs.items() if k.startswith("o.raw.")})
    with torch.no_grad():
        x = ref.inverse(z)[0]
    out = {"o.x": x, "o.log_det": jacobian_log_det(lambda v: ref.inverse(v)[0], z).detach()}
    z, Q, R1, R2, b = (f64(inputs[f"wide.{k}"]) for k in ("z", "Q", "R1", "R2", "b"))

    def g(v):  # outside the library's reach (R1_ii R2_ii < -1): the grader's own map
        return v + torch.tanh(v @ Q @ R2.T + b) @ R1.T @ Q.T

    return out | {"wide.x": g(z), "wide.log_det": jacobian_log_det(g, z)}


SPEC = AssignmentSpec(
    assignment_id="04_planar_sylvester",
    tasks=(
        Task("planar_g", ("planar_g",), ("test_planar_g",), draw_planar_g, probe_layer, expect_planar_g,
             (Check("x = g(z) vs the reference Planar (D = 2)", "hat.x", "hat.x", 1, TOL, TOL),
              Check("log|det J_g| vs the grader's autograd log-det of the reference Planar (D = 2)", "hat.log_det",
                    "hat.log_det", 1, TOL, TOL),
              Check("x = z + u tanh(w^T z + b) with w^T u = -2.5 (D = 5)", "fold.x", "fold.x", 1, TOL, TOL),
              Check("log|det J_g| vs the grader's autograd log-det where 1 + h' w^T u < 0 (D = 5)", "fold.log_det",
                    "fold.log_det", 1, TOL, TOL)),
             forbidden=REFERENCES, messages=NO_DENSE),
        Task("planar_u_hat", ("planar_u_hat",), ("test_planar_u_hat",), draw_planar_u_hat, probe_planar_u_hat,
             expect_planar_u_hat,
             (Check("u_hat vs the reference Planar.u_hat near w^T u = -1.5 (D = 2)", "near", "near", 1, TOL, TOL),
              Check("u_hat vs the reference with |w^T u| in the tens (D = 6)", "wide", "wide", 1, TOL, TOL),
              Check("u_hat vs the reference at w^T u = 800 (softplus must not overflow)", "big", "big", 1, TOL, TOL)),
             forbidden=REFERENCES),
        Task("sylvester_g", ("sylvester_g",), ("test_sylvester_g",), draw_sylvester_g, probe_layer,
             expect_sylvester_g,
             (Check("x = g(z) vs the reference OrthogonalSylvester (D = 5, M = 3)", "o.x", "o.x", 1, TOL, TOL),
              Check("log|det J_g| vs the grader's autograd log-det of the reference (D = 5, M = 3)", "o.log_det",
                    "o.log_det", 1, TOL, TOL),
              Check("log|det J_g| vs the grader's autograd log-det with R1_ii R2_ii < -1 (D = 4, M = 2)",
                    "wide.log_det", "wide.log_det", 1, TOL, TOL)),
             forbidden=REFERENCES, messages=NO_DENSE),
    ),
    hidden=REFERENCES,
)
