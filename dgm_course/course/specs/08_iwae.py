"""Verification spec of notebook 08, the importance-weighted bound (2 tasks, 10 points).

- ``iwae_bound``: a VAE (MLP encoder, factorized Bernoulli decoder) with weights, data and noise
  drawn by the grader: the bound against the *reference* ``dgm_course.objectives.iwae_bound`` on the
  same noise, its gradient with respect to every weight against the gradient the grader's autograd
  takes of the reference, the same model with a decoder sharpened 300-fold (log-weights in the
  thousands, where a mean of ``exp`` underflows), and a linear-Gaussian model with the exact
  posterior as encoder, whose bound is the closed-form ``log p(x)`` for any noise.
- ``estimate_log_likelihood``: linear-Gaussian models drawn by the grader (orthogonal ``W``, so the
  exact posterior is a diagonal Gaussian). With the exact posterior the estimate is the closed-form
  ``log p(x)`` for any draw; with a rough encoder (its mean 1.2 posterior standard deviations off, its
  variance 1.5 times too large) and ``K = 3000``, the mean over 30 points lies within 0.1 nats of the
  closed form (the reference's worst error over 200 grading seeds: 0.04; a mean of per-chunk
  estimates is off by the ``K = 7`` gap, at least 0.23 nats over those seeds). A counting decoder
  checks the chunks: no call evaluates more than ``chunk_size * B`` pairs, and all calls together
  ``K * B``.

Tolerances: bounds are O(10)-O(1000) nats in float64, compared to 1e-10 absolute plus 1e-12
relative; gradients to 1e-9; the closed-form ``log p(x)`` to 1e-8.
"""

from __future__ import annotations

import numpy as np
import torch

from dgm_course.course.spec import AssignmentSpec, Check, Task, f64
from dgm_course.objectives import iwae_bound
from dgm_course.vae import VAE, BernoulliDecoder, GaussianEncoder

TOL, RTOL = 1e-10, 1e-12
HIDDEN = 16  # hidden units of the drawn VAE
SHARP = 300.0  # the factor of the sharpened decoder's last layer



def _vae(inputs: dict) -> VAE:
    d = int(inputs["d"])
    vae = VAE(GaussianEncoder(d, hidden=(HIDDEN,)), BernoulliDecoder(d, hidden=(HIDDEN,))).double()
    torch.nn.utils.vector_to_parameters(f64(inputs["theta"]), vae.parameters())
    return vae


def _orthogonal_columns(rng: np.random.Generator, D: int, d: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(D, d)))
    return q * rng.uniform(0.5, 2.5, size=d)


def _log_p(W: np.ndarray, b: np.ndarray, s: float, x: np.ndarray) -> torch.Tensor:
    W, b = f64(W), f64(b)
    cov = W @ W.T + s**2 * torch.eye(len(b), dtype=torch.float64)
    return torch.distributions.MultivariateNormal(b, cov).log_prob(f64(x))


# Task 1: the IWAE bound ------------------------------------------------------------------------

def draw_bound(rng: np.random.Generator) -> dict:
    d, K, B = int(rng.integers(2, 5)), int(rng.integers(3, 13)), 5
    n = sum(p.numel() for p in VAE(GaussianEncoder(d, hidden=(HIDDEN,)), BernoulliDecoder(d, hidden=(HIDDEN,))).parameters())
    W = _orthogonal_columns(rng, 5, 2)
    return {"d": np.asarray(d), "theta": 0.3 * rng.normal(size=n), "x": (rng.uniform(size=(B, 64)) < 0.3).astype(float),
            "eps": rng.normal(size=(K, B, d)), "W": W, "b": rng.normal(size=5), "s": np.asarray(rng.uniform(0.5, 1.5)),
            "x_lg": rng.normal(size=(6, 5)) * 2, "eps_lg": rng.normal(size=(K, 6, 2))}


def probe_bound(ns, inputs):
    import torch

    from dgm_course.vae import VAE, BernoulliDecoder, GaussianEncoder

    f, t = ns["iwae_bound"], lambda a: torch.tensor(a, dtype=torch.float64)
    d = int(inputs["d"])
    vae = VAE(GaussianEncoder(d, hidden=(16,)), BernoulliDecoder(d, hidden=(16,))).double()
    torch.nn.utils.vector_to_parameters(t(inputs["theta"]), vae.parameters())
    value = f(vae, t(inputs["x"]), t(inputs["eps"]))
    grads = torch.autograd.grad(value.sum(), list(vae.parameters()))
    out = {"random": value, "grad": torch.cat([g.reshape(-1) for g in grads])}
    with torch.no_grad():
        vae.decoder.net[-1].weight.mul_(300.0)
        vae.decoder.net[-1].bias.mul_(300.0)
        out["sharp"] = f(vae, t(inputs["x"]), t(inputs["eps"]))

    W, b, s = t(inputs["W"]), t(inputs["b"]), float(inputs["s"])
    v = 1 / (1 + (W**2).sum(dim=0) / s**2)  # the exact posterior: N(A (x - b), diag(v))
    A = v[:, None] * W.T / s**2

    class Encoder(torch.nn.Module):
        def forward(self, x):
            mu = (x - b) @ A.T
            return mu, v.log().expand_as(mu)

    class Decoder(torch.nn.Module):
        def log_prob(self, x, z):
            return torch.distributions.Normal(z @ W.T + b, s).log_prob(x).sum(dim=-1)

    model = torch.nn.Module()
    model.encoder, model.decoder = Encoder(), Decoder()
    with torch.no_grad():
        out["exact"] = f(model, t(inputs["x_lg"]), t(inputs["eps_lg"]))
    return out


def expect_bound(inputs: dict) -> dict:
    vae, x, eps = _vae(inputs), f64(inputs["x"]), f64(inputs["eps"])
    value = iwae_bound(vae, x, eps.shape[0], eps=eps)
    grads = torch.autograd.grad(value.sum(), list(vae.parameters()))
    out = {"random": value.detach(), "grad": torch.cat([g.reshape(-1) for g in grads])}
    with torch.no_grad():
        vae.decoder.net[-1].weight.mul_(SHARP)
        vae.decoder.net[-1].bias.mul_(SHARP)
        out["sharp"] = iwae_bound(vae, x, eps.shape[0], eps=eps)
    out["exact"] = _log_p(inputs["W"], inputs["b"], float(inputs["s"]), inputs["x_lg"])
    return out


# Task 2: the importance-sampled log-likelihood, in chunks -------------------------------------

K_EXACT = 23


def draw_estimate(rng: np.random.Generator) -> dict:
    D, d = int(rng.integers(5, 31)), int(rng.integers(2, 4))
    W, b, s = _orthogonal_columns(rng, D, d), rng.normal(size=D), float(rng.uniform(0.3, 1.0))
    cov = W @ W.T + s**2 * np.eye(D)
    from_model = rng.multivariate_normal(b, cov, size=37)
    x_exact = from_model[:7] + 3.0 * rng.normal(size=(7, D))  # some points far in the tails
    return {"W": W, "b": b, "s": np.asarray(s), "x_exact": x_exact, "x_rough": from_model[7:]}


def probe_estimate(ns, inputs):
    import torch

    f, t = ns["estimate_log_likelihood"], lambda a: torch.tensor(a, dtype=torch.float64)
    W, b, s = t(inputs["W"]), t(inputs["b"]), float(inputs["s"])
    v = 1 / (1 + (W**2).sum(dim=0) / s**2)
    A = v[:, None] * W.T / s**2
    calls = []

    class Encoder(torch.nn.Module):
        def __init__(self, shift, inflate):  # the mean shifted by `shift` posterior s.d., the variance inflated
            super().__init__()
            self.shift, self.inflate = shift, inflate

        def forward(self, x):
            mu = (x - b) @ A.T + self.shift * v.sqrt()
            return mu, (self.inflate * v).log().expand_as(mu)

    class Decoder(torch.nn.Module):
        def log_prob(self, x, z):
            calls.append(len(z))
            return torch.distributions.Normal(z @ W.T + b, s).log_prob(x).sum(dim=-1)

    def model(encoder):
        m = torch.nn.Module()
        m.encoder, m.decoder = encoder, Decoder()
        return m

    x_exact, x_rough = t(inputs["x_exact"]), t(inputs["x_rough"])
    exact = f(model(Encoder(0.0, 1.0)), x_exact, 23, 5)
    within = torch.tensor([float(max(calls) <= 5 * len(x_exact))])
    total = torch.tensor([sum(calls) / len(x_exact)])
    rough = f(model(Encoder(1.2, 1.5)), x_rough, 3000, 7)
    return {"exact": exact, "within_chunks": within, "total": total, "rough_mean": rough.mean().reshape(1)}


def expect_estimate(inputs: dict) -> dict:
    W, b, s = inputs["W"], inputs["b"], float(inputs["s"])
    return {"exact": _log_p(W, b, s, inputs["x_exact"]), "within_chunks": f64([1.0]), "total": f64([K_EXACT]),
            "rough_mean": _log_p(W, b, s, inputs["x_rough"]).mean().reshape(1)}


REFERENCES = ("dgm_course.objectives.iwae_bound", "dgm_course.objectives.log_weights",
              "dgm_course.objectives.log_likelihood", "dgm_course.objectives.log_mean_exp")

SPEC = AssignmentSpec(
    assignment_id="08_iwae",
    tasks=(
        Task("iwae_bound", ("iwae_bound",), ("test_iwae_bound",), draw_bound, probe_bound, expect_bound,
             (Check("the bound of a random VAE on drawn noise vs the reference", "random", "random", 2, TOL, RTOL),
              Check("its gradient with respect to every weight vs autograd of the reference", "grad", "grad", 1,
                    1e-9, 1e-9),
              Check("log-weights in the thousands (no underflow)", "sharp", "sharp", 1, TOL, RTOL),
              Check("the exact posterior of a linear-Gaussian model gives the closed-form log p(x)", "exact", "exact",
                    1, 1e-8, RTOL)),
             forbidden=REFERENCES),
        Task("estimate_log_likelihood", ("estimate_log_likelihood",), ("test_estimate_log_likelihood",),
             draw_estimate, probe_estimate, expect_estimate,
             (Check("exact posterior, K = 23 in chunks of 5: the closed-form log p(x)", "exact", "exact", 2, 1e-8, 1e-10),
              Check("rough encoder, K = 3000: mean within 0.1 nats of the closed form", "rough_mean", "rough_mean", 1.5,
                    0.1),
              Check("no decoder call evaluates more than chunk_size * B pairs", "within_chunks", "within_chunks", 1, 0.0),
              Check("all calls together evaluate K * B pairs", "total", "total", 0.5, 0.0)),
             forbidden=REFERENCES),
    ),
    hidden=REFERENCES,
)
