r"""The 8x8 digits of scikit-learn: binarized for the VAEs, dequantized for the flows.

The data set has 1797 images of 8x8 pixels, each pixel an integer grey level :math:`v \in \{0, \dots, 16\}`
(17 levels). It ships with scikit-learn, so nothing is downloaded.

- VAEs (Bernoulli likelihood): :func:`binarized_digits`, :math:`x = [v > 8]` (a fixed threshold).
- Flows (continuous density): :func:`dequantize`, :math:`y = (v + u) / 17` with :math:`u \sim U[0, 1)^D`,
  so :math:`y \in [v/17, (v+1)/17)`. Report results with :func:`bits_per_dim`, which undoes the
  change of scale.
- A baseline every flow must beat: :class:`GaussianBaseline`, the maximum-likelihood full-covariance
  Gaussian (closed form).

Every split is a seeded random permutation, so train and test are disjoint and the same on every
machine. Images come flat ``(B, 64)`` or, with ``image=True``, as ``(B, 1, 8, 8)``.

References: Theis et al., *A note on the evaluation of generative models* (2016) and Uria et al.,
*RNADE* (2013) for dequantization; Dinh et al., *Real NVP* (2017), for bits/dim on rescaled data.

Example:
    >>> data = binarized_digits(seed=0)
    >>> data.x_train.shape, data.x_test.shape
    (torch.Size([1438, 64]), torch.Size([359, 64]))
    >>> sorted(data.x_train.unique().tolist())
    [0.0, 1.0]
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "N_LEVELS",
    "BINARIZE_THRESHOLD",
    "IMAGE_SHAPE",
    "DigitsSplit",
    "digit_levels",
    "split_indices",
    "digit_levels_split",
    "binarize",
    "binarized_digits",
    "dequantize",
    "dequantized_digits",
    "bits_per_dim",
    "GaussianBaseline",
]

N_LEVELS = 17
"""Grey levels of the digits: integers 0..16."""
BINARIZE_THRESHOLD = 8
"""A pixel is on when its level exceeds 8, i.e. when its intensity v/16 exceeds 1/2."""
IMAGE_SHAPE = (1, 8, 8)


class DigitsSplit(NamedTuple):
    """A seeded train/test split: images ``x_*`` and their digit labels ``y_*`` (int64, 0..9)."""

    x_train: Tensor
    x_test: Tensor
    y_train: Tensor
    y_test: Tensor


def digit_levels() -> tuple[Tensor, Tensor]:
    """All 1797 digits as integer grey levels, shape ``(1797, 64)`` int64 in 0..16, and their labels."""
    from sklearn.datasets import load_digits  # imported here: only this function needs scikit-learn

    bunch = load_digits()
    levels = torch.as_tensor(bunch.data, dtype=torch.int64)
    return levels, torch.as_tensor(bunch.target, dtype=torch.int64)


def split_indices(n: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Disjoint train and test indices of ``range(n)`` from a permutation seeded by ``seed``.

    The test set has ``round(test_fraction * n)`` items; both index sets are sorted.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * n)
    return perm[n_test:].sort().values, perm[:n_test].sort().values


def _shape(x: Tensor, image: bool) -> Tensor:
    return x.reshape(-1, *IMAGE_SHAPE) if image else x


def digit_levels_split(test_fraction: float = 0.2, seed: int = 0, image: bool = False) -> DigitsSplit:
    """The integer grey levels (int64, 0..16), split by :func:`split_indices`.

    Dequantize a batch with :func:`dequantize` at every training step to draw fresh noise.
    """
    levels, labels = digit_levels()
    train, test = split_indices(len(levels), test_fraction, seed)
    return DigitsSplit(_shape(levels[train], image), _shape(levels[test], image), labels[train], labels[test])


def binarize(levels: Tensor, threshold: int = BINARIZE_THRESHOLD, dtype: torch.dtype = torch.float32) -> Tensor:
    r"""Binary pixels :math:`x = [v > \text{threshold}]` as 0./1. floats of ``dtype``."""
    return (levels > threshold).to(dtype)


def binarized_digits(
    threshold: int = BINARIZE_THRESHOLD,
    test_fraction: float = 0.2,
    seed: int = 0,
    image: bool = False,
    dtype: torch.dtype = torch.float32,
) -> DigitsSplit:
    """The binarized digits (0./1. floats) for the VAEs, with a seeded train/test split."""
    s = digit_levels_split(test_fraction, seed, image)
    return DigitsSplit(binarize(s.x_train, threshold, dtype), binarize(s.x_test, threshold, dtype), s.y_train, s.y_test)


def dequantize(
    levels: Tensor,
    generator: torch.Generator | None = None,
    n_levels: int = N_LEVELS,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Uniform dequantization to the unit cube: :math:`y = (v + u) / n_{levels}`, :math:`u \sim U[0,1)^D`.

    Each value lands in :math:`[v/n_{levels}, (v+1)/n_{levels})`. A continuous density on ``y``
    then lower-bounds the discrete model's log-probability (Theis et al., 2016), once rescaled by
    :func:`bits_per_dim`. Fresh noise on every call (pass ``generator`` to fix it).

    Example:
        >>> y = dequantize(torch.tensor([[0, 16]]), torch.Generator().manual_seed(0))
        >>> bool((y[0, 0] < 1 / 17) & (y[0, 1] >= 16 / 17))
        True
    """
    u = torch.rand(levels.shape, generator=generator, dtype=dtype, device=levels.device)
    return (levels.to(dtype) + u) / n_levels


def dequantized_digits(
    test_fraction: float = 0.2, seed: int = 0, image: bool = False, dtype: torch.dtype = torch.float32
) -> DigitsSplit:
    """The digits dequantized once, with noise seeded by ``seed`` (a fixed, reproducible draw).

    For training prefer :func:`digit_levels_split` and :func:`dequantize` per batch (fresh noise);
    this fixed draw suits evaluation and quick plots.
    """
    s = digit_levels_split(test_fraction, seed, image)
    g = torch.Generator().manual_seed(seed)
    return DigitsSplit(dequantize(s.x_train, g, dtype=dtype), dequantize(s.x_test, g, dtype=dtype), s.y_train, s.y_test)


def bits_per_dim(log_prob: Tensor | float, dim: int = 64, n_levels: int = N_LEVELS) -> Tensor | float:
    r"""Bits per dimension of integer data, from a log-density in nats on the rescaled data.

    A model gives the density :math:`p(y)` of :math:`y = (v + u)/n` in :math:`[0, 1)^D`, with
    :math:`n` = ``n_levels``. On the scale of the levels, :math:`w = v + u \in [0, n)^D` has
    density :math:`p(w) = p(y)\, n^{-D}` (change of variables), and a bin of unit width has
    :math:`\log P(v) \ge E_u[\log p(v + u)]`. Hence

    .. math:: \text{bits/dim} = \frac{-\log p(y) + D \log n}{D \log 2}
              = -\frac{\log p(y)}{D \log 2} + \log_2 n,

    which upper-bounds the discrete model's code length. Check: the uniform density on the cube
    (:math:`\log p(y) = 0`) gives :math:`\log_2 17 \approx 4.09` bits, the uniform code of 17 levels.

    ``log_prob`` is per sample (any shape) or a mean; the result has the same shape.

    Example:
        >>> round(bits_per_dim(0.0), 4)
        4.0875
    """
    return (-log_prob + dim * math.log(n_levels)) / (dim * math.log(2))


class GaussianBaseline:
    r"""The maximum-likelihood full-covariance Gaussian, :math:`\mathcal N(\hat\mu, \hat\Sigma + r I)`.

    Closed form: :math:`\hat\mu = \frac1N\sum_i x_i`,
    :math:`\hat\Sigma = \frac1N\sum_i (x_i - \hat\mu)(x_i - \hat\mu)^\top` (the ML, biased
    estimate), plus a ridge :math:`r` (default ``1e-5``). Dequantization alone gives every pixel a
    variance of at least :math:`1/(12 \cdot 17^2) \approx 2.9\cdot10^{-4}`, so the ridge only
    guards the Cholesky factorization (few samples, float32); it moves the test bits/dim of the
    digits by less than 0.001.

    ``log_prob`` uses the Cholesky factor :math:`\hat\Sigma + rI = LL^\top` and a triangular solve:
    :math:`\log p(x) = -\tfrac12\|L^{-1}(x - \hat\mu)\|^2 - \sum_i \log L_{ii} - \tfrac D2 \log 2\pi`.
    Cost: O(D^3) once, then O(D^2) per sample. Images are flattened.

    Example:
        >>> data = dequantized_digits(seed=0)
        >>> baseline = GaussianBaseline.fit(data.x_train)
        >>> baseline.log_prob(data.x_test).shape
        torch.Size([359])
        >>> round(baseline.bits_per_dim(data.x_test), 1)  # the figure a flow must beat
        2.9
    """

    def __init__(self, mean: Tensor, cov: Tensor) -> None:
        self.mean = mean
        self.cov = cov
        self.scale_tril = torch.linalg.cholesky(cov)

    @classmethod
    def fit(cls, x: Tensor, ridge: float = 1e-5) -> GaussianBaseline:
        x = x.reshape(x.shape[0], -1)
        if not torch.is_floating_point(x):
            raise ValueError(f"x must be floating (dequantize integer levels first), got {x.dtype}")
        mean = x.mean(dim=0)
        centred = x - mean
        cov = centred.T @ centred / x.shape[0] + ridge * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        return cls(mean, cov)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density in nats of every sample, shape ``(batch,)``."""
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.dim:
            raise ValueError(f"x must have {self.dim} features per sample, got shape {tuple(x.shape)}")
        white = torch.linalg.solve_triangular(self.scale_tril, (x - self.mean).T, upper=False)
        half_log_det = self.scale_tril.diagonal().log().sum()
        return -0.5 * white.pow(2).sum(dim=0) - half_log_det - 0.5 * self.dim * math.log(2 * math.pi)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(n, self.dim, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + eps @ self.scale_tril.T

    def bits_per_dim(self, x: Tensor, n_levels: int = N_LEVELS) -> float:
        """Mean bits/dim on ``x`` (dequantized data in [0, 1)), see :func:`bits_per_dim`."""
        return float(bits_per_dim(self.log_prob(x).mean(), self.dim, n_levels))
