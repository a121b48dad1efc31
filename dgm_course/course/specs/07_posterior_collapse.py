"""Verification spec of notebook 07, posterior collapse and its remedies (4 tasks, 10 points).

- ``causal_mask``: the masks of a kernel size drawn by the grader, and the dependency pattern of a
  stack of convolutions masked by the student's masks (random weights, tanh between, computed with
  autograd in the worker), against the receptive field the grader derives from the *reference*
  masks (``dgm_course.vae.receptive_field``). An all-open or all-closed mask fails it.
- ``active_units``: posterior means with per-dimension spreads the grader chose away from the
  threshold (large offsets, so thresholding the mean fails), and a ``GaussianEncoder`` with drawn
  weights at a threshold halfway (geometrically) between two of its variances.
- ``annealed_loss``/``free_bits_loss``: the loss and its gradients with respect to ``rec`` and
  ``kl`` (autograd in the worker) against the reference loss and the analytic gradients: below
  ``free_bits`` no gradient may reach ``kl``, and ``beta_t = min(1, t / T)``.

Tolerances: masks and active-unit flags are exact (0/1); losses are O(10) sums in float64, so 1e-10
absolute plus 1e-12 relative is far above round-off and far below any conceptual error (a wrong
beta, a per-sample max, a missing minus sign move them by 0.01 or more); the gradients are
exact multiples of 1/B.
"""

from __future__ import annotations

import numpy as np
import torch

from dgm_course.course.spec import AssignmentSpec, Check, Task, f64
from dgm_course.objectives import free_bits_kl, kl_annealing
from dgm_course.vae import GaussianEncoder, causal_mask, receptive_field

TOL, RTOL = 1e-10, 1e-12
B, D = 16, 5  # batch and latent size of the loss checks



# Task 1: the causal mask -----------------------------------------------------------------------

def draw_mask(rng: np.random.Generator) -> dict:
    layers, k_stack = int(rng.integers(2, 4)), int(rng.choice([3, 5]))
    widths = [4 * k_stack * k_stack] + [4 * 4 * k_stack * k_stack] * (layers - 1)
    return {"k": np.asarray(int(rng.choice([5, 7, 9, 11]))), "layers": np.asarray(layers),
            "k_stack": np.asarray(k_stack), "weights": rng.normal(size=sum(widths)), "x": rng.normal(size=(3, 64))}


def probe_mask(ns, inputs):
    import torch
    import torch.nn.functional as F

    f = ns["causal_mask"]
    k, layers, ks = int(inputs["k"]), int(inputs["layers"]), int(inputs["k_stack"])
    out = {"masks_k": torch.stack([torch.as_tensor(f(k, t), dtype=torch.float64) for t in "AB"]),
           "masks_3": torch.stack([torch.as_tensor(f(3, t), dtype=torch.float64) for t in "AB"])}
    flat, weights, start = torch.from_numpy(inputs["weights"]), [], 0
    for l in range(layers):
        shape = (4, 1 if l == 0 else 4, ks, ks)
        n = 4 * shape[1] * ks * ks
        weights.append(flat[start:start + n].reshape(shape))
        start += n
    masks = [torch.as_tensor(f(ks, "A" if l == 0 else "B"), dtype=torch.float64) for l in range(layers)]
    x = torch.from_numpy(inputs["x"]).requires_grad_(True)
    h = x.reshape(-1, 1, 8, 8)
    for m, w in zip(masks, weights):
        h = torch.tanh(F.conv2d(h, w * m, padding=ks // 2))
    y = h.sum(dim=1).reshape(-1, 64)
    rows = [torch.autograd.grad(y[:, i].sum(), x, retain_graph=True)[0].abs().sum(dim=0) > 0 for i in range(64)]
    out["depends"] = torch.stack(rows).double()
    return out


def expect_mask(inputs: dict) -> dict:
    k, layers, ks = int(inputs["k"]), int(inputs["layers"]), int(inputs["k_stack"])
    field = torch.stack([receptive_field(layers, (i // 8, i % 8), ks).flatten() for i in range(64)])
    return {"masks_k": torch.stack([causal_mask(k, t) for t in "AB"]).double(),
            "masks_3": torch.stack([causal_mask(3, t) for t in "AB"]).double(),
            "depends": field.double()}


# Task 2: active units --------------------------------------------------------------------------

STDS = np.array([0.0, 0.03, 0.05, 0.2, 1.0, 3.0])  # standard deviations of the means; threshold 0.01


def draw_active(rng: np.random.Generator) -> dict:
    order = rng.permutation(len(STDS))
    n_theta = sum(p.numel() for p in GaussianEncoder(z_dim=6).parameters())
    theta = 0.15 * rng.normal(size=n_theta)
    x = (rng.uniform(size=(400, 64)) < 0.3).astype(np.float64)
    inputs = {"stds": STDS[order], "offsets": 5 * rng.normal(size=len(STDS)), "u": rng.normal(size=(3000, len(STDS))),
              "log_var": rng.normal(size=(3000, len(STDS))), "theta": theta, "x": x}
    log_variance = np.sort(np.log(_encoder_variance(inputs).numpy()))
    j = int(np.argmax(np.diff(log_variance)))  # the widest gap: no variance lies near the threshold
    inputs["threshold"] = np.asarray(float(np.exp((log_variance[j] + log_variance[j + 1]) / 2)))
    return inputs


def _encoder_variance(inputs: dict) -> torch.Tensor:
    encoder = GaussianEncoder(z_dim=6).double()
    torch.nn.utils.vector_to_parameters(f64(inputs["theta"]), encoder.parameters())
    with torch.no_grad():
        return encoder(f64(inputs["x"]))[0].var(dim=0, correction=0)


def probe_active(ns, inputs):
    import torch

    from dgm_course.vae import GaussianEncoder

    f = ns["active_units"]
    stds, offsets = torch.from_numpy(inputs["stds"]), torch.from_numpy(inputs["offsets"])
    log_var = torch.from_numpy(inputs["log_var"])
    designed = f(lambda u: (offsets + stds * u, log_var[: len(u)]), torch.from_numpy(inputs["u"]))
    encoder = GaussianEncoder(z_dim=6).double()
    torch.nn.utils.vector_to_parameters(torch.from_numpy(inputs["theta"]), encoder.parameters())
    random = f(encoder, torch.from_numpy(inputs["x"]), float(inputs["threshold"]))
    as_numbers = lambda a: a.double() if isinstance(a, torch.Tensor) else a
    return {"designed": as_numbers(designed), "random": as_numbers(random)}


def expect_active(inputs: dict) -> dict:
    return {"designed": f64(inputs["stds"] ** 2 > 0.01), "random": (_encoder_variance(inputs) > float(inputs["threshold"])).double()}


# Tasks 3 and 4: the annealed and the free-bits losses, with their gradients ----------------------

def _draw_losses(rng: np.random.Generator, n: int) -> dict:
    # KL entries in [0, 0.8): batch-mean totals near 2, some samples below a threshold and some above
    return {"rec": -30 * rng.uniform(size=(n, B)), "kl": 0.8 * rng.uniform(size=(n, B, D))}


def draw_annealed(rng: np.random.Generator) -> dict:
    warmup = rng.integers(1, 200, size=6)
    step = np.array([0, rng.integers(1, warmup[1]), warmup[2], warmup[3] + rng.integers(1, 100),
                     rng.integers(0, 500), rng.integers(0, 500)])
    warmup[5] = 0  # no annealing: the plain negative ELBO
    return {**_draw_losses(rng, 6), "step": step, "warmup": warmup}


def probe_loss(ns, inputs):
    import torch

    if "free_bits" in inputs:
        loss, args = ns["free_bits_loss"], [(float(lam),) for lam in inputs["free_bits"]]
    else:
        loss, args = ns["annealed_loss"], [(int(s), int(w)) for s, w in zip(inputs["step"], inputs["warmup"])]
    values, d_rec, d_kl = [], [], []
    for r, k, a in zip(torch.from_numpy(inputs["rec"]), torch.from_numpy(inputs["kl"]), args):
        r, k = r.clone().requires_grad_(True), k.clone().requires_grad_(True)
        value = loss(r, k, *a)
        g_rec, g_kl = torch.autograd.grad(value, (r, k))
        values.append(value.reshape(()))
        d_rec.append(g_rec)
        d_kl.append(g_kl)
    return {"loss": torch.stack(values), "d_rec": torch.stack(d_rec), "d_kl": torch.stack(d_kl)}


def _expected_losses(inputs: dict, kl_term, kl_weight) -> dict:
    rec, kl = f64(inputs["rec"]), f64(inputs["kl"])
    n = rec.shape[0]
    loss = torch.stack([-rec[i].mean() + kl_term(i, kl[i]) for i in range(n)])
    d_kl = torch.stack([torch.full((B, D), kl_weight(i, kl[i]) / B, dtype=torch.float64) for i in range(n)])
    return {"loss": loss, "d_rec": torch.full((n, B), -1.0 / B, dtype=torch.float64), "d_kl": d_kl}


def expect_annealed(inputs: dict) -> dict:
    beta = [kl_annealing(int(s), int(w)) for s, w in zip(inputs["step"], inputs["warmup"])]
    return _expected_losses(inputs, lambda i, kl: beta[i] * kl.sum(dim=1).mean(), lambda i, kl: beta[i])


def draw_free_bits(rng: np.random.Generator) -> dict:
    inputs = _draw_losses(rng, 6)
    means = inputs["kl"].sum(axis=2).mean(axis=1)
    # thresholds below, between the samples' totals and above each batch mean
    shifts = np.array([-1.5, -0.3, -0.05, 0.05, 0.3, 1.5])
    inputs["free_bits"] = np.maximum(means + rng.permutation(shifts), 0.0)
    return inputs


def expect_free_bits(inputs: dict) -> dict:
    lam = [float(v) for v in inputs["free_bits"]]
    return _expected_losses(inputs, lambda i, kl: free_bits_kl(kl, lam[i]),
                            lambda i, kl: float(kl.sum(dim=1).mean() > lam[i]))


# The mask itself and what holds one: all hidden too (the set-up cell's import of PixelCNNDecoder
# gets the worker's stand-in, which cannot be instantiated).
REFERENCES_MASK = ("dgm_course.vae.causal_mask", "dgm_course.vae.MaskedConv2d", "dgm_course.vae.PixelCNNDecoder",
                   "dgm_course.vae.receptive_field")

SPEC = AssignmentSpec(
    assignment_id="07_posterior_collapse",
    tasks=(
        Task("causal_mask", ("causal_mask",), ("test_causal_mask",), draw_mask, probe_mask, expect_mask,
             (Check("masks A and B of a kernel size drawn by the grader", "masks_k", "masks_k", 1, 0.0),
              Check("masks A and B of a 3x3 kernel", "masks_3", "masks_3", 1, 0.0),
              Check("a masked stack reads exactly its receptive field (autograd vs the reference masks)",
                    "depends", "depends", 1, 0.0)),
             forbidden=REFERENCES_MASK),
        Task("active_units", ("active_units",), ("test_active_units",), draw_active, probe_active, expect_active,
             (Check("means with chosen spreads and large offsets, threshold 0.01", "designed", "designed", 1, 0.0),
              Check("a GaussianEncoder with drawn weights, at a drawn threshold", "random", "random", 1, 0.0)),
             forbidden=("dgm_course.vae.active_units",)),
        Task("annealed_loss", ("annealed_loss",), ("test_annealed_loss",), draw_annealed, probe_loss,
             expect_annealed,
             (Check("the annealed loss at drawn steps and warm-ups (reference beta)", "loss", "loss", 2, TOL, RTOL),
              Check("d loss / d kl = beta / B (autograd)", "d_kl", "d_kl", 0.5, TOL, RTOL),
              Check("d loss / d rec = -1 / B (autograd)", "d_rec", "d_rec", 0.5, TOL, RTOL)),
             forbidden=("dgm_course.objectives.kl_annealing", "dgm_course.objectives.vae_loss")),
        Task("free_bits_loss", ("free_bits_loss",), ("test_free_bits_loss",), draw_free_bits, probe_loss,
             expect_free_bits,
             (Check("the free-bits loss at drawn thresholds (reference free_bits_kl)", "loss", "loss", 1, TOL, RTOL),
              Check("d loss / d kl: 1 / B above free_bits, 0 below (autograd)", "d_kl", "d_kl", 0.5, TOL, RTOL),
              Check("d loss / d rec = -1 / B (autograd)", "d_rec", "d_rec", 0.5, TOL, RTOL)),
             forbidden=("dgm_course.objectives.free_bits_kl", "dgm_course.objectives.vae_loss")),
    ),
    hidden=(*REFERENCES_MASK, "dgm_course.vae.active_units",
            "dgm_course.objectives.kl_annealing", "dgm_course.objectives.free_bits_kl",
            "dgm_course.objectives.vae_loss"),
)
