"""Verification spec of notebook 03, forward KL vs reverse KL and their duality (3 tasks, 10 points).

Every check runs on a random RealNVP flow (``realnvp(dim, K, hidden=8)``, all weights drawn from
the grading seed, in 2D and in a dimension from 3 to 6) and, for the reverse KL and the latent
density, on a random unnormalized target :math:`\\log\\tilde\\pi(x) = -\\tfrac12\\|x A\\|^2 +
\\sum_i \\sin(c_i x_i) + b` the grader draws too, so an answer tuned to the notebook's affine
examples fails. Expected values are computed here, in float64: log-dets by ``jacobian_log_det``
of the *reference* map (the grader's autograd), so a flow used in the wrong direction, a missing
or flipped log-det, or the identity fail. The losses' gradients with respect to the flow's
parameters are compared with those of the reference ``FlowModel.forward_kl`` /
``FlowModel.reverse_kl``: a loss that is right but detached (no gradient) earns only the value's
points.

Tolerances: 1e-8 absolute and relative, far above float64 round-off of these O(1)-O(100) values
and far below any conceptual error (a sign, a missing term, a sum instead of a mean move a value
by O(0.1) or more).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dgm_course.course.spec import AssignmentSpec, Check, Task, f64
from dgm_course.flows import FlowModel, StandardNormal, realnvp
from dgm_course.jacobian import jacobian_log_det

TOL = 1e-8
REFERENCES = ("dgm_course.flows.FlowModel", "dgm_course.jacobian.jacobian_log_det",
              "dgm_course.jacobian.batch_jacobian")
TASKS = ("forward_kl_loss", "reverse_kl_loss", "latent_log_prob")
CASES = ("a", "b")  # 2D, and a dimension from 3 to 6



def _flow(inputs: dict, case: str):
    """The flow the probes build too: the same constructor, the same order of parameters."""
    flow = realnvp(inputs[f"x_{case}"].shape[1], n_layers=int(inputs[f"K_{case}"]), hidden=8).double()
    torch.nn.utils.vector_to_parameters(f64(inputs[f"theta_{case}"]), flow.parameters())
    return flow


def _log_target(inputs: dict, case: str):
    A, c, b = f64(inputs[f"A_{case}"]), f64(inputs[f"c_{case}"]), float(inputs[f"b_{case}"])
    return lambda x: -0.5 * (x @ A).pow(2).sum(dim=1) + torch.sin(c * x).sum(dim=1) + b


def _log_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z.pow(2).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def _draw(task: str, scale: float):
    """Per case a flow, a target and a batch: data for the forward KL, base samples otherwise."""

    def draw(rng: np.random.Generator) -> dict:
        out = {"task": np.asarray(TASKS.index(task))}
        for case, dim in zip(CASES, (2, int(rng.integers(3, 7)))):
            K = int(rng.integers(3, 6))
            n = sum(p.numel() for p in realnvp(dim, n_layers=K, hidden=8).parameters())
            out |= {f"K_{case}": np.asarray(K), f"theta_{case}": 0.5 * rng.normal(size=n),
                    f"x_{case}": scale * rng.normal(size=(64, dim)),
                    f"A_{case}": rng.normal(size=(dim, dim)) / math.sqrt(dim),
                    f"c_{case}": rng.uniform(0.5, 2.0, size=dim), f"b_{case}": np.asarray(rng.normal())}
        return out

    draw.__name__ = f"draw_{task}"
    return draw


def probe(ns, inputs):
    """The one probe of the three tasks (only its source reaches the worker): build, then call the task."""
    import torch

    from dgm_course.flows import realnvp

    task = ("forward_kl_loss", "reverse_kl_loss", "latent_log_prob")[int(inputs["task"])]
    out = {}
    for case in ("a", "b"):
        v = torch.from_numpy(inputs[f"x_{case}"])
        flow = realnvp(v.shape[1], n_layers=int(inputs[f"K_{case}"]), hidden=8).double()
        torch.nn.utils.vector_to_parameters(torch.from_numpy(inputs[f"theta_{case}"]), flow.parameters())
        A, c = torch.from_numpy(inputs[f"A_{case}"]), torch.from_numpy(inputs[f"c_{case}"])
        b = float(inputs[f"b_{case}"])
        log_target = lambda x: -0.5 * (x @ A).pow(2).sum(dim=1) + torch.sin(c * x).sum(dim=1) + b  # noqa: E731
        if task == "latent_log_prob":
            out[case] = ns[task](flow, log_target, v)
            continue
        loss = ns[task](flow, v) if task == "forward_kl_loss" else ns[task](flow, log_target, v)
        params = list(flow.parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True) if loss.requires_grad else [None] * len(params)
        out[f"loss_{case}"] = loss.reshape(1)  # results travel as arrays of rank >= 1
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]  # a detached loss: 0
        out[f"grad_{case}"] = torch.cat([g.flatten() for g in grads])
    return out


def _gradient(loss: torch.Tensor, flow) -> torch.Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(flow.parameters()))])


def expect_forward(inputs: dict) -> dict:
    out = {}
    for case in CASES:
        x, flow = f64(inputs[f"x_{case}"]), _flow(inputs, case)
        f = lambda v: flow(v)[0]  # noqa: E731
        with torch.no_grad():
            out[f"loss_{case}"] = -(_log_normal(f(x)) + jacobian_log_det(f, x)).mean().reshape(1)
        base = StandardNormal((x.shape[1],)).double()
        out[f"grad_{case}"] = _gradient(FlowModel(base, flow).forward_kl(x), flow)
    return out


def expect_reverse(inputs: dict) -> dict:
    out = {}
    for case in CASES:
        z, flow, log_target = f64(inputs[f"x_{case}"]), _flow(inputs, case), _log_target(inputs, case)
        g = lambda v: flow.inverse(v)[0]  # noqa: E731
        with torch.no_grad():
            out[f"loss_{case}"] = (_log_normal(z) - jacobian_log_det(g, z) - log_target(g(z))).mean().reshape(1)
        x, log_det = flow.inverse(z)  # the reference's loss on the same z, for its gradient
        out[f"grad_{case}"] = _gradient((_log_normal(z) - log_det - log_target(x)).mean(), flow)
    return out


def expect_latent(inputs: dict) -> dict:
    out = {}
    for case in CASES:
        z, flow, log_target = f64(inputs[f"x_{case}"]), _flow(inputs, case), _log_target(inputs, case)
        g = lambda v: flow.inverse(v)[0]  # noqa: E731
        with torch.no_grad():
            out[case] = log_target(g(z)) + jacobian_log_det(g, z)
    return out


def _loss_checks(what: str) -> tuple[Check, ...]:
    return (Check(f"{what} of a random 2D flow (grader's autograd log-det)", "loss_a", "loss_a", 1.5, TOL, TOL),
            Check(f"{what} of a random flow in 3 to 6 dimensions", "loss_b", "loss_b", 0.5, TOL, TOL),
            Check("its gradient with respect to the flow's parameters (2D)", "grad_a", "grad_a", 1, TOL, TOL))


SPEC = AssignmentSpec(
    assignment_id="03_forward_reverse_kl",
    tasks=(
        Task("forward_kl_loss", ("forward_kl_loss",), ("test_forward_kl_loss",), _draw("forward_kl_loss", 1.5),
             probe, expect_forward, _loss_checks("forward KL loss"), forbidden=REFERENCES),
        Task("reverse_kl_loss", ("reverse_kl_loss",), ("test_reverse_kl_loss",), _draw("reverse_kl_loss", 1.0),
             probe, expect_reverse,
             (*_loss_checks("reverse KL loss"),
              Check("its gradient with respect to the flow's parameters (3 to 6 dimensions)", "grad_b", "grad_b", 1,
                    TOL, TOL)),
             forbidden=REFERENCES),
        Task("latent_log_prob", ("latent_log_prob",), ("test_latent_log_prob",), _draw("latent_log_prob", 1.5),
             probe, expect_latent,
             (Check("log p(z | theta) of a random 2D flow (grader's autograd log|det J_g|)", "a", "a", 2, TOL, TOL),
              Check("log p(z | theta) of a random flow in 3 to 6 dimensions", "b", "b", 1, TOL, TOL)),
             forbidden=REFERENCES),
    ),
    hidden=REFERENCES,
)
