"""VAE objectives against independent references: torch.distributions and a linear-Gaussian model
whose log p(x) and posterior are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, MultivariateNormal, Normal, kl_divergence

from dgm_course.objectives import (
    elbo,
    free_bits_kl,
    gaussian_kl,
    iwae_bound,
    kl_annealing,
    log_likelihood,
    log_mean_exp,
    log_weights,
    vae_loss,
)
from dgm_course.vae import VAE, BernoulliDecoder, GaussianEncoder

f64 = torch.float64


class LinearGaussian(nn.Module):
    r"""p(z) = N(0, I), p(x|z) = N(Wz + b, s2 I), with W's columns orthogonal so the true posterior is diagonal.

    The encoder returns the exact posterior N(S W^T (x - b) / s2, S), S = (I + W^T W / s2)^-1,
    optionally spoiled by ``shift`` (in posterior standard deviations) and ``log_var_offset``.
    """

    def __init__(self, seed: int = 0, D: int = 3, d: int = 2, s2: float = 0.3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=f64))
        self.W = q[:, :d] * torch.tensor([1.5, 0.7], dtype=f64)[:d]
        self.b = torch.randn(D, generator=g, dtype=f64)
        self.s2, self.z_dim = s2, d
        self.post_var = 1.0 / (1.0 + (self.W**2).sum(0) / s2)  # diagonal of S
        self.shift, self.log_var_offset = 0.0, 0.0
        self.encoder, self.decoder = self._encode, self  # the objectives' protocol

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = (x - self.b) @ self.W / self.s2 * self.post_var
        std = self.post_var.sqrt()
        return mean + self.shift * std, (self.post_var.log() + self.log_var_offset).expand_as(mean)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        return Normal(z @ self.W.T + self.b, math.sqrt(self.s2)).log_prob(x).sum(-1)

    def log_marginal(self, x: Tensor) -> Tensor:
        cov = self.W @ self.W.T + self.s2 * torch.eye(len(self.b), dtype=f64)
        return MultivariateNormal(self.b, cov).log_prob(x)

    def sample_x(self, n: int, seed: int) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.z_dim, generator=g, dtype=f64)
        return z @ self.W.T + self.b + math.sqrt(self.s2) * torch.randn(n, len(self.b), generator=g, dtype=f64)


def _tiny_vae(seed: int = 0, z_dim: int = 3) -> VAE:
    torch.manual_seed(seed)
    return VAE(GaussianEncoder(z_dim, hidden=(16,)), BernoulliDecoder(z_dim, hidden=(16,))).double()


def _binary(n: int, seed: int = 0) -> Tensor:
    return torch.bernoulli(torch.full((n, 64), 0.4, dtype=f64), generator=torch.Generator().manual_seed(seed))


def test_gaussian_kl_matches_torch(seed):
    mu, log_var = torch.randn(6, 4, dtype=f64), torch.randn(6, 4, dtype=f64)
    ref = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    torch.testing.assert_close(gaussian_kl(mu, log_var), ref, rtol=0, atol=1e-12)


def test_elbo_parts_match_torch_distributions(seed):
    vae, x = _tiny_vae(seed), _binary(5, seed)
    eps = torch.randn(5, 3, dtype=f64)
    terms = elbo(vae, x, eps=eps)
    mu, log_var = vae.encoder(x)
    std = (0.5 * log_var).exp()
    z = mu + std * eps
    rec = Bernoulli(logits=vae.decoder.logits(z)).log_prob(x).sum(-1)
    kl = kl_divergence(Normal(mu, std), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    torch.testing.assert_close(terms.rec, rec, rtol=0, atol=1e-10)
    torch.testing.assert_close(terms.kl, kl, rtol=0, atol=1e-12)
    torch.testing.assert_close(terms.elbo, rec - kl.sum(-1), rtol=0, atol=1e-10)
    assert terms.elbo.dtype == f64 and terms.elbo.shape == (5,)


def test_iwae_k1_is_single_sample_elbo_on_same_noise(seed):
    vae, x = _tiny_vae(seed), _binary(4, seed)
    eps = torch.randn(1, 4, 3, dtype=f64)
    mu, log_var = vae.encoder(x)
    std = (0.5 * log_var).exp()
    z = mu + std * eps[0]
    # Single-sample ELBO with a Monte Carlo KL: log p(x|z) + log p(z) - log q(z|x), all from torch.distributions.
    ref = (
        Bernoulli(logits=vae.decoder.logits(z)).log_prob(x).sum(-1)
        + Normal(0.0, 1.0).log_prob(z).sum(-1)
        - Normal(mu, std).log_prob(z).sum(-1)
    )
    torch.testing.assert_close(iwae_bound(vae, x, K=1, eps=eps), ref, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="eps must have shape"):
        iwae_bound(vae, x, K=2, eps=eps)


def test_mc_elbo_is_unbiased_for_analytic_elbo():
    model = LinearGaussian(seed=1)
    model.shift, model.log_var_offset = 0.5, 0.4
    x = model.sample_x(1, seed=2)
    R = 20000
    mc = iwae_bound(model, x.expand(R, -1), K=1, generator=torch.Generator().manual_seed(0))
    # Analytic ELBO of a linear-Gaussian model: E_q log p(x|z) in closed form minus the closed-form KL.
    mu, log_var = model.encoder(x)
    var = log_var.exp()
    resid = x - (mu @ model.W.T + model.b)
    exp_rec = (-0.5 * (resid.pow(2).sum() + (model.W.pow(2) * var).sum()) / model.s2
               - 0.5 * len(model.b) * math.log(2 * math.pi * model.s2))
    analytic = exp_rec - gaussian_kl(mu, log_var).sum()
    se = mc.std() / math.sqrt(R)
    assert abs(mc.mean() - analytic) < 5 * se
    # And the ELBO is below log p(x) when q is not the posterior.
    assert analytic < model.log_marginal(x)[0] - 0.05


def test_log_likelihood_exact_with_true_posterior():
    model = LinearGaussian(seed=0)
    x = model.sample_x(6, seed=1)
    exact = model.log_marginal(x)
    # With q = p(z|x) every weight equals p(x): exact for any K, chunking and noise (uneven chunks 3,3,3,1).
    est = log_likelihood(model, x, K=10, chunk_size=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(est, exact, rtol=0, atol=1e-10)
    torch.testing.assert_close(iwae_bound(model, x, K=1), exact, rtol=0, atol=1e-10)


def test_log_likelihood_converges_with_imperfect_q():
    model = LinearGaussian(seed=0)
    model.shift, model.log_var_offset = 0.5, math.log(2.0)  # off-centre and too wide: bounded weights
    x = model.sample_x(20, seed=3).repeat(10, 1)  # 10 independent estimates per point
    exact = model.log_marginal(x)
    g = torch.Generator().manual_seed(0)
    gaps, ses = {}, {}
    for K in (1, 10, 1000):
        gap = exact - log_likelihood(model, x, K=K, chunk_size=250, generator=g)
        gaps[K], ses[K] = gap.mean().item(), gap.std().item() / math.sqrt(len(gap))
    # The gap E[log p - log p_hat_K] >= 0 shrinks like O(1/K). Measured over generator seeds 0-2 with
    # 25 repeats: 0.52-0.59 (se 0.06), 0.03-0.045 (se 0.011), -0.0002-0.0018 (se 0.001).
    assert gaps[1] > 0.2, gaps
    assert gaps[10] < 0.1, gaps
    assert -5 * ses[1000] < gaps[1000] < 0.01, (gaps, ses)


def test_iwae_non_decreasing_in_K():
    model = LinearGaussian(seed=2)
    model.shift, model.log_var_offset = 0.8, -0.5  # off-centre and too narrow: a clear gap at K = 1
    x = model.sample_x(1, seed=4)
    R = 1000
    g = torch.Generator().manual_seed(0)
    means, ses = [], []
    for K in (1, 2, 5, 20, 100):
        b = iwae_bound(model, x.expand(R, -1), K=K, generator=g)
        means.append(b.mean().item())
        ses.append(b.std().item() / math.sqrt(R))
    for k in range(len(means) - 1):
        # Non-decreasing in expectation: a drop larger than 4 standard errors of the difference fails.
        assert means[k + 1] > means[k] - 4 * math.hypot(ses[k], ses[k + 1]), (means, ses)
    assert means[-1] > means[0] + 4 * math.hypot(ses[0], ses[-1])
    assert means[-1] < model.log_marginal(x)[0].item() + 4 * ses[-1]


def test_logsumexp_stability():
    a = torch.tensor([-1e4, -1e4 - 1.0], dtype=f64)
    assert torch.isinf(torch.log(torch.exp(a).mean()))  # the naive formula underflows
    torch.testing.assert_close(log_mean_exp(a), torch.tensor(-1e4 + math.log((1 + math.exp(-1)) / 2), dtype=f64))
    # Data far from the model: log-weights near -1e6, yet the bound stays finite and exact.
    model = LinearGaussian(seed=0)
    x = torch.full((2, 3), 300.0, dtype=f64)
    lw = log_weights(model, x, K=5)
    assert bool((lw < -1e5).all())
    torch.testing.assert_close(iwae_bound(model, x, K=5), model.log_marginal(x), rtol=1e-12, atol=0)


def test_free_bits_total_value_and_gradient():
    lam = 2.0
    kl = torch.tensor([[0.5, 0.3], [0.4, 0.6]], dtype=f64, requires_grad=True)  # mean total KL 0.9 < lambda
    out = free_bits_kl(kl, lam)
    out.backward()
    assert out.item() == lam
    assert torch.equal(kl.grad, torch.zeros_like(kl))  # no gradient pushes the KL below lambda
    kl2 = (kl.detach() * 5).requires_grad_()  # mean total KL 4.5 > lambda
    out2 = free_bits_kl(kl2, lam)
    out2.backward()
    assert out2.item() == pytest.approx(4.5, abs=1e-12)
    torch.testing.assert_close(kl2.grad, torch.full_like(kl2, 0.5))  # d mean_b sum_j / d KL_bj = 1/B


def test_free_bits_per_dim_value_and_gradient():
    lam = 0.5
    kl = torch.tensor([[0.1, 2.0, 0.4], [0.3, 1.0, 0.8]], dtype=f64, requires_grad=True)  # means 0.2, 1.5, 0.6
    out = free_bits_kl(kl, lam, per_dim=True)
    out.backward()
    assert out.item() == pytest.approx(0.5 + 1.5 + 0.6, abs=1e-12)
    torch.testing.assert_close(kl.grad, torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]], dtype=f64))
    # The total variant on the same KL (mean total 2.3 > 0.5) passes gradient to every dimension.
    kl.grad = None
    free_bits_kl(kl, lam).backward()
    torch.testing.assert_close(kl.grad, torch.full_like(kl, 0.5))
    with pytest.raises(ValueError, match="batch, z_dim"):
        free_bits_kl(kl.sum(1), lam)


def test_kl_annealing_schedule():
    assert [kl_annealing(t, 4) for t in range(7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [kl_annealing(t, 2, period=3) for t in range(7)] == [0.0, 0.5, 1.0, 0.0, 0.5, 1.0, 0.0]
    assert kl_annealing(100, 0) == 1.0
    with pytest.raises(ValueError, match="period"):
        kl_annealing(0, 5, period=3)
    with pytest.raises(ValueError, match="non-negative"):
        kl_annealing(-1, 5)


def test_vae_loss_combines_terms():
    vae, x = _tiny_vae(0), _binary(6, 0)
    terms = elbo(vae, x, generator=torch.Generator().manual_seed(7))

    def loss(**kw):
        return vae_loss(vae, x, generator=torch.Generator().manual_seed(7), **kw)

    kl_mean = terms.kl.sum(1).mean()
    torch.testing.assert_close(loss().loss, -terms.elbo.mean())
    torch.testing.assert_close(loss(beta=0.0).loss, -terms.rec.mean())
    torch.testing.assert_close(loss(beta=0.3).loss, -terms.rec.mean() + 0.3 * kl_mean)
    big = kl_mean.item() + 1.0
    torch.testing.assert_close(loss(free_bits=big).loss, -terms.rec.mean() + big)
    out = loss(beta=0.3, free_bits=big)
    torch.testing.assert_close(out.elbo, terms.elbo.mean())  # the logged ELBO ignores beta and free bits
    torch.testing.assert_close(out.kl_per_dim, terms.kl.mean(0))
    assert set(out.metrics()) == {"loss", "elbo", "rec", "kl"}


def test_float32_stays_float32():
    torch.manual_seed(0)
    vae = VAE(GaussianEncoder(2, hidden=(8,)), BernoulliDecoder(2, hidden=(8,)))
    x = torch.bernoulli(torch.full((3, 64), 0.5))
    for value in (elbo(vae, x).elbo, iwae_bound(vae, x, K=4), log_likelihood(vae, x, K=8)):
        assert value.dtype == torch.float32 and value.shape == (3,)
