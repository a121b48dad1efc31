"""Verification spec of notebook 05, RealNVP coupling layers (6 tasks, 10 points).

Masks are compared entry by entry with the library's masks (exact: they are 0s and 1s) on sizes
drawn from the grading seed, so a mask right only on the notebook's examples fails.

The coupling layer is checked on conditioners the grader draws: a one-hidden-layer tanh MLP on
vectors (its weights large enough that :math:`|\\tilde s|` often exceeds the clamp ``a``, so a
missing clamp shows) and a 3x3 convolution on images, with a random binary mask (not only
the notebook's patterns) for vectors and a checkerboard for images. Every expected value is
computed in the grader, in float64: outputs by the reference ``AffineCoupling`` wrapped around
the same conditioner, log-dets by ``jacobian_log_det`` of the *reference* map, so the identity
with log-det 0 (self-consistent, and right for a zero conditioner) fails.

Tolerances: 1e-8 absolute and relative, far above float64 round-off of O(1)-O(10) values and far
below any conceptual error (a missing clamp, a log-det summed over the pass-through entries or
with the wrong sign moves a value by O(0.1) or more).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dgm_course.course.spec import AssignmentSpec, Check, Task, f64
from dgm_course.flows import AffineCoupling, alternating_mask, channel_mask, checkerboard_mask, half_mask
from dgm_course.jacobian import jacobian_log_det

TOL = 1e-8
MASKS = ("half_mask", "alternating_mask", "checkerboard_mask", "channel_mask")
COUPLING_TASKS = ("coupling_forward", "coupling_inverse")
LIBRARY_MASKS = tuple(f"dgm_course.flows.coupling.{name}" for name in MASKS)
LIBRARY_COUPLING = ("dgm_course.flows.coupling.AffineCoupling", "dgm_course.flows.coupling.realnvp",
                    "dgm_course.flows.coupling.tanh_clamp", "dgm_course.flows.glow")



# Tasks 1-4: masks --------------------------------------------------------------------------------
# Each probe returns every drawn size's mask, flattened and concatenated, for both parities
# (probes are shipped as source, so each is a top-level function of its own).

def draw_vector_mask(rng: np.random.Generator) -> dict:
    return {"D": rng.integers(2, 40, size=6)}


def draw_image_mask(rng: np.random.Generator) -> dict:
    # C >= 2 for the channel mask, H * W >= 2 for the checkerboard
    return {"CHW": np.stack([rng.integers(2, 6, size=4), rng.integers(1, 7, size=4), rng.integers(2, 7, size=4)], 1)}


def probe_half_mask(ns, inputs):
    import torch

    f = ns["half_mask"]
    return {f"p{p}": torch.cat([f(int(D), p).reshape(-1) for D in inputs["D"]]) for p in (0, 1)}


def probe_alternating_mask(ns, inputs):
    import torch

    f = ns["alternating_mask"]
    return {f"p{p}": torch.cat([f(int(D), p).reshape(-1) for D in inputs["D"]]) for p in (0, 1)}


def probe_checkerboard_mask(ns, inputs):
    import torch

    f = ns["checkerboard_mask"]
    return {f"p{p}": torch.cat([f(*map(int, chw), p).reshape(-1) for chw in inputs["CHW"]]) for p in (0, 1)}


def probe_channel_mask(ns, inputs):
    import torch

    f = ns["channel_mask"]
    return {f"p{p}": torch.cat([f(*map(int, chw), p).reshape(-1) for chw in inputs["CHW"]]) for p in (0, 1)}


def _expect_masks(reference, sizes) -> dict:
    return {f"p{p}": torch.cat([reference(*map(int, np.atleast_1d(s)), p).reshape(-1) for s in sizes]).double()
            for p in (0, 1)}


def expect_half_mask(inputs: dict) -> dict:
    return _expect_masks(half_mask, inputs["D"])


def expect_alternating_mask(inputs: dict) -> dict:
    return _expect_masks(alternating_mask, inputs["D"])


def expect_checkerboard_mask(inputs: dict) -> dict:
    return _expect_masks(checkerboard_mask, inputs["CHW"])


def expect_channel_mask(inputs: dict) -> dict:
    return _expect_masks(channel_mask, inputs["CHW"])


def _mask_task(name: str, draw, probe, expect) -> Task:
    checks = (Check(f"{name}(..., parity=0) at sizes drawn for grading", "p0", "p0", 0.5, 0.0),
              Check(f"{name}(..., parity=1) at sizes drawn for grading", "p1", "p1", 0.5, 0.0))
    # Only its own reference: the scan covers every student cell, and another mask imported for a
    # helper must not cost this task. (All four are hidden from the worker all the same.)
    return Task(name, (name,), (f"test_{name}",), draw, probe, expect, checks,
                forbidden=(f"dgm_course.flows.coupling.{name}",))


# Tasks 5-6: the coupling layer ----------------------------------------------------------------------

def draw_coupling(rng: np.random.Generator) -> dict:
    D, hidden = 7, 10
    mask = np.zeros(D)
    mask[rng.choice(D, size=int(rng.integers(1, D)), replace=False)] = 1.0  # both 0s and 1s, any pattern
    ij = np.add.outer(np.arange(4), np.arange(4))
    return {
        "x": 1.5 * rng.normal(size=(16, D)),
        "mask": mask,
        "W1": rng.normal(size=(hidden, D)), "b1": 0.5 * rng.normal(size=hidden),
        "W2": rng.normal(size=(2 * D, hidden)), "b2": 0.5 * rng.normal(size=2 * D),
        "a": rng.uniform(1.0, 2.5, size=()),
        "x_img": rng.normal(size=(4, 2, 4, 4)),
        "mask_img": np.broadcast_to((ij + rng.integers(0, 2)) % 2 == 0, (2, 4, 4)).astype(np.float64),
        "K": 0.4 * rng.normal(size=(4, 2, 3, 3)), "kb": 0.3 * rng.normal(size=4),
    }


def _conditioners(inputs: dict):
    W1, b1, W2, b2, K, kb = (f64(inputs[k]) for k in ("W1", "b1", "W2", "b2", "K", "kb"))
    return (lambda v: torch.tanh(v @ W1.T + b1) @ W2.T + b2), (lambda v: F.conv2d(v, K, kb, padding=1))


def _references(inputs: dict) -> tuple[AffineCoupling, AffineCoupling]:
    mlp, conv = _conditioners(inputs)
    a = float(inputs["a"])
    # the notebook's tasks are the paper's layer, with the tanh clamp (the library's default is the soft one)
    vector = AffineCoupling(f64(inputs["mask"]), conditioner=mlp, scale_bound=a, clamp="tanh").double()
    image = AffineCoupling(f64(inputs["mask_img"]), conditioner=conv, scale_bound=a, clamp="tanh").double()
    return vector, image


def _draw_coupling(task: str):
    """The inputs of ``draw_coupling`` and which task the probe calls (the same inputs for both tasks)."""

    def draw(rng: np.random.Generator) -> dict:
        return {**draw_coupling(rng), "task": np.asarray(COUPLING_TASKS.index(task))}

    draw.__name__ = f"draw_{task}"
    return draw


def probe_coupling(ns, inputs):
    """The one probe of both coupling tasks (only its source reaches the worker): vectors, then images."""
    import torch
    import torch.nn.functional as F

    task, out = (("coupling_forward", "z"), ("coupling_inverse", "x"))[int(inputs["task"])]
    W1, b1, W2, b2, K, kb = (torch.from_numpy(inputs[k]) for k in ("W1", "b1", "W2", "b2", "K", "kb"))
    a = float(inputs["a"])
    f = ns[task]
    y, log_det = f(torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["mask"]),
                   lambda v: torch.tanh(v @ W1.T + b1) @ W2.T + b2, a)
    y_img, log_det_img = f(torch.from_numpy(inputs["x_img"]), torch.from_numpy(inputs["mask_img"]),
                           lambda v: F.conv2d(v, K, kb, padding=1), a)
    return {out: y, "log_det": log_det, f"{out}_img": y_img, "log_det_img": log_det_img}


def expect_coupling_forward(inputs: dict) -> dict:
    vector, image = _references(inputs)
    x, x_img = f64(inputs["x"]), f64(inputs["x_img"])
    with torch.no_grad():
        z, z_img = vector(x)[0], image(x_img)[0]
    return {"z": z, "log_det": jacobian_log_det(lambda v: vector(v)[0], x),
            "z_img": z_img, "log_det_img": jacobian_log_det(lambda v: image(v)[0], x_img)}


def expect_coupling_inverse(inputs: dict) -> dict:
    # the drawn "x" arrays serve as the points z at which g is evaluated
    vector, image = _references(inputs)
    z, z_img = f64(inputs["x"]), f64(inputs["x_img"])
    with torch.no_grad():
        x, x_img = vector.inverse(z)[0], image.inverse(z_img)[0]
    return {"x": x, "log_det": jacobian_log_det(lambda v: vector.inverse(v)[0], z),
            "x_img": x_img, "log_det_img": jacobian_log_det(lambda v: image.inverse(v)[0], z_img)}


def _coupling_checks(out: str, direction: str) -> tuple[Check, ...]:
    J = "J_f(x)" if direction == "forward" else "J_g(z)"
    return (
        Check(f"{out} on vectors (random mask, MLP conditioner) vs the reference", out, out, 1, TOL, TOL),
        Check(f"log_det on vectors vs the grader's autograd log|det {J}|", "log_det", "log_det", 1, TOL, TOL),
        Check(f"{out} on images (checkerboard mask, conv conditioner) vs the reference", f"{out}_img", f"{out}_img",
              0.5, TOL, TOL),
        Check(f"log_det on images vs the grader's autograd log|det {J}|", "log_det_img", "log_det_img", 0.5, TOL, TOL),
    )


SPEC = AssignmentSpec(
    assignment_id="05_realnvp",
    tasks=(
        _mask_task("half_mask", draw_vector_mask, probe_half_mask, expect_half_mask),
        _mask_task("alternating_mask", draw_vector_mask, probe_alternating_mask, expect_alternating_mask),
        _mask_task("checkerboard_mask", draw_image_mask, probe_checkerboard_mask, expect_checkerboard_mask),
        _mask_task("channel_mask", draw_image_mask, probe_channel_mask, expect_channel_mask),
        Task("coupling_forward", ("coupling_forward",), ("test_coupling_forward",), _draw_coupling("coupling_forward"),
             probe_coupling, expect_coupling_forward, _coupling_checks("z", "forward"), forbidden=LIBRARY_COUPLING),
        Task("coupling_inverse", ("coupling_inverse",), ("test_coupling_inverse",), _draw_coupling("coupling_inverse"),
             probe_coupling, expect_coupling_inverse, _coupling_checks("x", "inverse"), forbidden=LIBRARY_COUPLING),
    ),
    # Glow builds on AffineCoupling and channel_mask, so it goes with them.
    hidden=(*LIBRARY_MASKS, *LIBRARY_COUPLING),
)
