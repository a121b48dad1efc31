"""The digits: binarization, seeded splits, dequantization, bits/dim and the Gaussian baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.distributions import MultivariateNormal

from dgm_course.data import (
    BINARIZE_THRESHOLD,
    N_LEVELS,
    GaussianBaseline,
    binarize,
    binarized_digits,
    bits_per_dim,
    dequantize,
    dequantized_digits,
    digit_levels,
    digit_levels_split,
    split_indices,
)


@pytest.fixture(scope="module")
def raw():
    bunch = load_digits()
    return torch.as_tensor(bunch.data, dtype=torch.int64), torch.as_tensor(bunch.target)


def test_levels_are_sklearn_digits(raw):
    levels, labels = digit_levels()
    assert torch.equal(levels, raw[0]) and torch.equal(labels, raw[1])
    assert levels.min() == 0 and levels.max() == N_LEVELS - 1


def test_binarize_threshold_by_hand():
    levels = torch.tensor([[0, 7, 8, 9, 16]])
    assert binarize(levels).tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0]]
    assert binarize(levels, threshold=0).tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0]]
    assert binarize(levels, dtype=torch.float64).dtype == torch.float64


def test_split_deterministic_disjoint_complete():
    train, test = split_indices(1797, 0.2, seed=3)
    train2, test2 = split_indices(1797, 0.2, seed=3)
    assert torch.equal(train, train2) and torch.equal(test, test2)
    assert len(test) == round(0.2 * 1797)
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(1797))
    assert not torch.equal(test, split_indices(1797, 0.2, seed=4)[1])
    with pytest.raises(ValueError, match="test_fraction"):
        split_indices(10, 1.0)


def test_binarized_digits_match_raw_rows(raw):
    levels, labels = raw
    data = binarized_digits(seed=1)
    train, test = split_indices(len(levels), 0.2, seed=1)
    # Independent route: threshold the raw scikit-learn rows by hand.
    assert torch.equal(data.x_train, (levels[train] > BINARIZE_THRESHOLD).float())
    assert torch.equal(data.x_test, (levels[test] > BINARIZE_THRESHOLD).float())
    assert torch.equal(data.y_test, labels[test])
    again = binarized_digits(seed=1)
    assert torch.equal(data.x_train, again.x_train)
    image = binarized_digits(seed=1, image=True)
    assert image.x_train.shape == (len(train), 1, 8, 8)
    assert torch.equal(image.x_train.reshape(len(train), -1), data.x_train)


def test_dequantized_values_in_their_bins():
    levels = digit_levels_split(seed=0)
    for dtype in (torch.float32, torch.float64):
        data = dequantized_digits(seed=0, dtype=dtype)
        for v, y in [(levels.x_train, data.x_train), (levels.x_test, data.x_test)]:
            assert y.dtype == dtype
            # Compare in float64 so the bin edges themselves are not rounded.
            y64, v64 = y.double(), v.double()
            assert bool((y64 >= v64 / 17).all()) and bool((y64 < (v64 + 1) / 17).all())
    assert torch.equal(dequantized_digits(seed=0).x_test, dequantized_digits(seed=0).x_test)
    image = dequantized_digits(seed=0, image=True)
    assert image.x_test.shape == (359, 1, 8, 8)


def test_dequantization_noise_is_uniform():
    v = torch.randint(0, 17, (200, 64))
    u = (dequantize(v, torch.Generator().manual_seed(0), dtype=torch.float64) * 17 - v).flatten()
    n = u.numel()
    # U[0,1): mean 1/2 and variance 1/12; 5 standard errors of the mean.
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var().item() - 1 / 12) < 0.005
    assert bool(((u >= 0) & (u < 1)).all())


def test_bits_per_dim_by_hand():
    # The uniform density on the unit cube is the uniform code over 17 levels: log2(17) bits.
    assert bits_per_dim(0.0) == pytest.approx(math.log2(17), abs=1e-12)
    # -100 nats on [0,1)^64: 100 / (64 ln 2) = 2.2542 bits, plus log2(17) = 4.0875 bits from the scale.
    assert bits_per_dim(-100.0) == pytest.approx(2.254211 + 4.087463, abs=1e-5)
    t = bits_per_dim(torch.tensor([-100.0, 0.0]), dim=64)
    assert t.shape == (2,)


def test_bits_per_dim_equals_code_length_on_level_scale():
    # Same Gaussian written on y in [0,1)^D and on w = 17 y in [0,17)^D; on the level scale
    # bits/dim is just -log p(w) / (D log 2).
    torch.manual_seed(0)
    d = 5
    a = torch.randn(d, d, dtype=torch.float64)
    mean, cov = torch.rand(d, dtype=torch.float64), a @ a.T / 100 + 0.01 * torch.eye(d, dtype=torch.float64)
    y = MultivariateNormal(mean, cov).sample((7,))
    log_p_y = MultivariateNormal(mean, cov).log_prob(y)
    log_p_w = MultivariateNormal(17 * mean, 17**2 * cov).log_prob(17 * y)
    torch.testing.assert_close(bits_per_dim(log_p_y, dim=d), -log_p_w / (d * math.log(2)), rtol=0, atol=1e-10)


def test_gaussian_baseline_is_closed_form_ml():
    torch.manual_seed(0)
    x = torch.randn(300, 6, dtype=torch.float64) @ torch.randn(6, 6, dtype=torch.float64) + 1.0
    ridge = 1e-3
    b = GaussianBaseline.fit(x, ridge=ridge)
    cov_np = np.cov(x.numpy(), rowvar=False, bias=True) + ridge * np.eye(6)
    torch.testing.assert_close(b.mean, torch.as_tensor(x.numpy().mean(axis=0)), rtol=0, atol=1e-12)
    torch.testing.assert_close(b.cov, torch.as_tensor(cov_np), rtol=0, atol=1e-12)
    x_new = torch.randn(50, 6, dtype=torch.float64)
    ref = MultivariateNormal(b.mean, covariance_matrix=torch.as_tensor(cov_np)).log_prob(x_new)
    # Log-densities reach -5e3 here (x_new is far out in the thin directions): float64 round-off is relative.
    torch.testing.assert_close(b.log_prob(x_new), ref, rtol=1e-12, atol=1e-10)


def test_gaussian_baseline_maximizes_likelihood():
    # Without a ridge, any perturbation of the ML mean or covariance lowers the training likelihood.
    torch.manual_seed(1)
    x = torch.randn(200, 4, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    b = GaussianBaseline.fit(x, ridge=0.0)
    best = b.log_prob(x).mean()
    for _ in range(5):
        delta = 0.05 * torch.randn(4, dtype=torch.float64)
        assert GaussianBaseline(b.mean + delta, b.cov).log_prob(x).mean() < best
        e = 0.05 * torch.randn(4, 4, dtype=torch.float64)
        assert GaussianBaseline(b.mean, b.cov + e @ e.T).log_prob(x).mean() < best


def test_gaussian_baseline_sample_moments():
    cov = torch.tensor([[1.0, 0.8], [0.8, 2.0]], dtype=torch.float64)
    b = GaussianBaseline(torch.tensor([1.0, -2.0], dtype=torch.float64), cov)
    s = b.sample(20000, torch.Generator().manual_seed(0))
    # Standard errors are about 0.01 (mean) and 0.02 (covariance); tolerances are ~5 of them.
    torch.testing.assert_close(s.mean(0), b.mean, rtol=0, atol=0.05)
    torch.testing.assert_close(torch.cov(s.T), cov, rtol=0, atol=0.1)


def test_gaussian_baseline_on_digits_flat_and_image():
    flat, image = dequantized_digits(seed=0), dequantized_digits(seed=0, image=True)
    b = GaussianBaseline.fit(flat.x_train)
    torch.testing.assert_close(b.log_prob(image.x_test), b.log_prob(flat.x_test))
    bpd = b.bits_per_dim(flat.x_test)
    # Well below the 4.09 bits of the uniform code and above 0: a real, beatable baseline.
    assert 1.0 < bpd < math.log2(17)
    with pytest.raises(ValueError, match="64 features"):
        b.log_prob(torch.zeros(2, 63))
    with pytest.raises(ValueError, match="floating"):
        GaussianBaseline.fit(torch.zeros(5, 3, dtype=torch.int64))
