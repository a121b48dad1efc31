r"""VAE objectives: the ELBO and its fixes for posterior collapse, the IWAE bound, and log p(x).

The model: prior :math:`p(z) = \mathcal N(0, I)`, a decoder :math:`p_\theta(x \mid z)` and a Gaussian
encoder :math:`q_\phi(z \mid x) = \mathcal N(\mu(x), \operatorname{diag} \sigma^2(x))`.

- ELBO: :math:`\mathcal L(x) = E_{q}[\log p(x \mid z)] - KL(q(z \mid x) \| p(z)) \le \log p(x)`, the
  reconstruction by one reparameterized sample :math:`z = \mu + \sigma \odot \varepsilon`, the KL
  in closed form per latent dimension.
- Against posterior collapse (a decoder strong enough to ignore :math:`z` drives the KL to 0):
  the :math:`\beta`-weighted ELBO with a KL-annealing schedule :math:`\beta: 0 \to 1`
  (Bowman et al., 2016; cyclical: Fu et al., 2019), and free bits :math:`\max(\lambda, KL)`
  (Kingma et al., 2016).
- The IWAE bound (Burda et al., 2015) with :math:`K` samples,
  :math:`\mathcal L_K(x) = E\left[\log \frac1K \sum_k w_k\right]`,
  :math:`w_k = p(x, z_k) / q(z_k \mid x)`: :math:`\mathcal L_1` is the ELBO,
  :math:`\mathcal L_K \le \mathcal L_{K+1} \le \log p(x)`, and :math:`\mathcal L_K \to \log p(x)`.
  With large :math:`K` (e.g. 1000) the same estimator is the usual estimate of :math:`\log p(x)`.

A model is anything with ``model.encoder(x) -> (mu, log_var)``, each ``(B, d)``, and
``model.decoder.log_prob(x, z) -> (N,)`` for ``N`` pairs of data and latents (see
:mod:`dgm_course.vae`). Every value is per sample, shape ``(B,)``, on the input's device and dtype.

Example:
    >>> import torch
    >>> from dgm_course.vae import VAE, GaussianEncoder, BernoulliDecoder
    >>> vae = VAE(GaussianEncoder(z_dim=2), BernoulliDecoder(z_dim=2))
    >>> x = torch.bernoulli(torch.full((5, 64), 0.3))
    >>> terms = elbo(vae, x)
    >>> terms.elbo.shape, terms.kl.shape
    (torch.Size([5]), torch.Size([5, 2]))
    >>> iwae_bound(vae, x, K=10).shape
    torch.Size([5])
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from ._common import LOG_2PI

__all__ = [
    "LatentVariableModel",
    "gaussian_kl",
    "reparameterize",
    "log_mean_exp",
    "ELBO",
    "elbo",
    "kl_annealing",
    "free_bits_kl",
    "VAELoss",
    "vae_loss",
    "log_weights",
    "iwae_bound",
    "log_likelihood",
]



class LatentVariableModel(Protocol):
    """What the objectives need: an ``encoder`` giving ``(mu, log_var)`` and a ``decoder`` with ``log_prob(x, z)``."""

    encoder: torch.nn.Module
    decoder: torch.nn.Module


def gaussian_kl(mu: Tensor, log_var: Tensor) -> Tensor:
    r"""Closed-form :math:`KL(\mathcal N(\mu, \sigma^2) \| \mathcal N(0, 1))` per dimension, shape of ``mu``.

    .. math:: KL_j = \tfrac12 \left(\mu_j^2 + \sigma_j^2 - 1 - \log \sigma_j^2\right)
    """
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var)


def reparameterize(mu: Tensor, log_var: Tensor, eps: Tensor) -> Tensor:
    r"""The reparameterization trick :math:`z = \mu + \sigma \odot \varepsilon`, broadcasting over leading axes of ``eps``."""
    return mu + torch.exp(0.5 * log_var) * eps


def _noise(mu: Tensor, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)


def log_mean_exp(a: Tensor, dim: int = 0) -> Tensor:
    r""":math:`\log \frac1K \sum_k e^{a_k}` along ``dim`` by logsumexp, stable for very negative ``a``.

    Example:
        >>> log_mean_exp(torch.tensor([-1000.0, -1000.0])).tolist()
        -1000.0
    """
    return torch.logsumexp(a, dim=dim) - math.log(a.shape[dim])


class ELBO(NamedTuple):
    """One-sample ELBO and its parts, per sample: ``elbo = rec - kl.sum(-1)``."""

    elbo: Tensor  # (B,)
    rec: Tensor  # (B,)  log p(x | z), z ~ q(z | x)
    kl: Tensor  # (B, d) closed-form KL per latent dimension


def elbo(
    model: LatentVariableModel, x: Tensor, eps: Tensor | None = None, generator: torch.Generator | None = None
) -> ELBO:
    r"""The ELBO :math:`\log p(x \mid z) - \sum_j KL_j`, :math:`z = \mu + \sigma\odot\varepsilon`, one sample.

    ``eps`` (shape ``(B, d)``) fixes the noise; otherwise it is drawn with ``generator``.
    Cost: one encoder and one decoder pass.
    """
    mu, log_var = model.encoder(x)
    if eps is None:
        eps = _noise(mu, tuple(mu.shape), generator)
    z = reparameterize(mu, log_var, eps)
    rec = model.decoder.log_prob(x, z)
    kl = gaussian_kl(mu, log_var)
    return ELBO(rec - kl.sum(dim=-1), rec, kl)


def kl_annealing(step: int, warmup_steps: int, period: int | None = None) -> float:
    r"""The KL weight :math:`\beta` at ``step``: a linear warm-up from 0 to 1, optionally cyclical.

    .. math:: \beta(t) = \min\left(1, \frac{t}{T_{warm}}\right), \qquad
              t = \text{step} \;(\text{or step} \bmod \text{period, cyclical})

    Linear (Bowman et al., 2016): :math:`\beta` rises over the first ``warmup_steps`` and then
    stays 1. Cyclical (Fu et al., 2019): the ramp restarts every ``period`` steps, so the model
    repeatedly learns to use :math:`z` at low :math:`\beta` before the full ELBO returns.
    ``warmup_steps = 0`` is no annealing (:math:`\beta = 1`).

    Example:
        >>> [kl_annealing(t, warmup_steps=4) for t in (0, 1, 4, 9)]
        [0.0, 0.25, 1.0, 1.0]
        >>> [kl_annealing(t, warmup_steps=2, period=4) for t in (0, 1, 2, 3, 4, 5)]
        [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
    """
    if step < 0 or warmup_steps < 0:
        raise ValueError(f"step and warmup_steps must be non-negative, got {step} and {warmup_steps}")
    if period is not None:
        if period < max(warmup_steps, 1):
            raise ValueError(f"period ({period}) must be at least warmup_steps ({warmup_steps}) and positive")
        step = step % period
    if warmup_steps == 0:
        return 1.0
    return min(1.0, step / warmup_steps)


def free_bits_kl(kl: Tensor, free_bits: float, per_dim: bool = False) -> Tensor:
    r"""The KL term with free bits :math:`\lambda` (in nats), a scalar on the batch-averaged KL.

    - ``per_dim=False`` (notebook 07's form): :math:`\max(\lambda, \bar{KL})` with
      :math:`\bar{KL} = \frac1B \sum_b \sum_j KL_{bj}`, the total KL averaged over the batch.
    - ``per_dim=True``: :math:`\sum_j \max(\lambda, \bar{KL}_j)` with
      :math:`\bar{KL}_j = \frac1B \sum_b KL_{bj}`, so :math:`\lambda` is granted to each
      dimension (Kingma et al., 2016, with one latent dimension per group).

    As in Kingma et al. (2016) the max applies to the minibatch average, not per sample. Below
    :math:`\lambda` the term is constant: no gradient pushes that KL further down, so the
    encoder may spend :math:`\lambda` nats on :math:`z` for free.

    Example:
        >>> kl = torch.tensor([[0.1, 2.0], [0.3, 1.0]])   # batch averages: 0.2 and 1.5
        >>> free_bits_kl(kl, 0.5, per_dim=True).item(), free_bits_kl(kl, 2.0).item()
        (2.0, 2.0)
    """
    if kl.dim() != 2:
        raise ValueError(f"kl must have shape (batch, z_dim), got {tuple(kl.shape)}")
    if free_bits < 0:
        raise ValueError(f"free_bits must be non-negative, got {free_bits}")
    if per_dim:
        return kl.mean(dim=0).clamp(min=free_bits).sum()
    return kl.sum(dim=1).mean().clamp(min=free_bits)


class VAELoss(NamedTuple):
    """A training loss (scalar, differentiable) and detached batch averages to log."""

    loss: Tensor
    elbo: Tensor  # mean ELBO of the batch (with beta = 1 and no free bits)
    rec: Tensor  # mean log p(x | z)
    kl: Tensor  # mean total KL
    kl_per_dim: Tensor  # (d,) mean KL per latent dimension

    def metrics(self) -> dict[str, float]:
        """The scalars as floats, for a training history."""
        return {name: float(getattr(self, name).detach()) for name in ("loss", "elbo", "rec", "kl")}


def vae_loss(
    model: LatentVariableModel,
    x: Tensor,
    beta: float = 1.0,
    free_bits: float | None = None,
    per_dim: bool = False,
    generator: torch.Generator | None = None,
) -> VAELoss:
    r"""The loss to minimize: :math:`-\frac1B\sum_b \log p(x_b \mid z_b) + \beta\, \text{KL term}`.

    The KL term is the batch-averaged total KL, or :func:`free_bits_kl` when ``free_bits`` is
    given. ``beta = 1`` and no free bits is the negative ELBO; use :func:`kl_annealing` for
    ``beta``.

    Example:
        >>> from dgm_course.vae import VAE, GaussianEncoder, BernoulliDecoder
        >>> vae = VAE(GaussianEncoder(z_dim=2), BernoulliDecoder(z_dim=2))
        >>> out = vae_loss(vae, torch.zeros(4, 64), beta=0.5, free_bits=1.0)
        >>> out.loss.backward()
        >>> sorted(out.metrics())
        ['elbo', 'kl', 'loss', 'rec']
    """
    terms = elbo(model, x, generator=generator)
    kl_total = terms.kl.sum(dim=1).mean()
    kl_term = kl_total if free_bits is None else free_bits_kl(terms.kl, free_bits, per_dim)
    loss = -terms.rec.mean() + beta * kl_term
    return VAELoss(
        loss, terms.elbo.mean().detach(), terms.rec.mean().detach(), kl_total.detach(), terms.kl.mean(dim=0).detach()
    )


def log_weights(
    model: LatentVariableModel,
    x: Tensor,
    K: int,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Importance log-weights :math:`\log w_k = \log p(x \mid z_k) + \log p(z_k) - \log q(z_k \mid x)`, shape ``(K, B)``.

    :math:`z_k = \mu + \sigma \odot \varepsilon_k`; ``eps`` (shape ``(K, B, d)``) fixes the noise.
    Since :math:`z_k - \mu = \sigma\odot\varepsilon_k`,
    :math:`\log q(z_k \mid x) = -\sum_j \left[\tfrac12 \varepsilon_{kj}^2 + \log\sigma_j + \tfrac12\log 2\pi\right]`.
    Cost: one encoder pass and ``K`` decoder passes over the batch.
    """
    if K < 1:
        raise ValueError(f"K must be a positive number of samples, got {K}")
    mu, log_var = model.encoder(x)
    B, d = mu.shape
    if eps is None:
        eps = _noise(mu, (K, B, d), generator)
    elif eps.shape != (K, B, d):
        raise ValueError(f"eps must have shape (K, batch, z_dim) = {(K, B, d)}, got {tuple(eps.shape)}")
    z = reparameterize(mu, log_var, eps)
    log_q = -0.5 * (eps.pow(2) + log_var + LOG_2PI).sum(dim=-1)
    log_p_z = -0.5 * (z.pow(2) + LOG_2PI).sum(dim=-1)
    x_k = x.unsqueeze(0).expand(K, *x.shape).reshape(K * B, *x.shape[1:])
    log_p_x_given_z = model.decoder.log_prob(x_k, z.reshape(K * B, d)).reshape(K, B)
    return log_p_x_given_z + log_p_z - log_q


def iwae_bound(
    model: LatentVariableModel,
    x: Tensor,
    K: int,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The IWAE bound :math:`\log \frac1K \sum_{k=1}^K w_k` by logsumexp, per sample ``(B,)``.

    A stochastic lower bound of :math:`\log p(x)` whose expectation increases with ``K``
    (Burda et al., 2015); differentiable, so ``-iwae_bound(...).mean()`` trains an IWAE.
    ``K = 1`` is a one-sample ELBO with a Monte Carlo KL. Cost: ``K`` decoder passes.
    """
    return log_mean_exp(log_weights(model, x, K, eps, generator), dim=0)


@torch.no_grad()
def log_likelihood(
    model: LatentVariableModel,
    x: Tensor,
    K: int = 1000,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Importance-sampled estimate of :math:`\log p(x)` with ``K`` samples from :math:`q(z \mid x)`, shape ``(B,)``.

    .. math:: \log \hat p(x) = \log \frac1K \sum_{k=1}^K \frac{p(x \mid z_k)\, p(z_k)}{q(z_k \mid x)}

    The :math:`K` samples are drawn in chunks of ``chunk_size``; each chunk's logsumexp is kept
    and they are combined by one more logsumexp, so memory is that of ``chunk_size`` decoder
    passes over the batch whatever ``K``. The default keeps a chunk near 4096 (sample, datum)
    pairs, which is also faster on a CPU than one huge batch. Exact when :math:`q` is the true
    posterior; otherwise a lower bound in expectation that converges to :math:`\log p(x)` as
    :math:`K \to \infty`. No gradient.
    """
    if chunk_size is None:
        chunk_size = max(1, 4096 // x.shape[0])
    if K < 1 or chunk_size < 1:
        raise ValueError(f"K and chunk_size must be positive, got {K} and {chunk_size}")
    chunks = [
        torch.logsumexp(log_weights(model, x, min(chunk_size, K - start), generator=generator), dim=0)
        for start in range(0, K, chunk_size)
    ]
    return torch.logsumexp(torch.stack(chunks), dim=0) - math.log(K)
