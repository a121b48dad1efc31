"""Targets: data sets, known densities (normalized, consistent with their samplers), U1-U4 and log Z."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import chi2
from sklearn.datasets import make_moons

from dgm_course.flows import Affine, FlowModel, StandardNormal
from dgm_course.targets import (
    DATASETS,
    DENSITIES,
    ENERGIES,
    U1,
    U2,
    U3,
    U4,
    Checkerboard,
    Energy,
    KnownDensity,
    Ring,
    TwoMoons,
    entropy_estimate,
    get_density,
    get_energy,
    grid_log_integral,
    kl_to_truth,
    make_dataset,
    reverse_kl_to_truth,
    sample_moons,
)

D64 = torch.float64
SMOOTH = ["8gaussians", "ring", "moons"]


def _grid(bounds, step):
    """Midpoint-rule cell centres of a box, shape (nx * ny, 2), and the cell area."""
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    nx, ny = round((x_hi - x_lo) / step), round((y_hi - y_lo) / step)
    hx, hy = (x_hi - x_lo) / nx, (y_hi - y_lo) / ny
    xs = x_lo + hx * (torch.arange(nx, dtype=D64) + 0.5)
    ys = y_lo + hy * (torch.arange(ny, dtype=D64) + 0.5)
    return torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2), hx * hy


# --------------------------------------------------------------------------------------------
# sample-only data sets


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_shapes_dtype_determinism_disjoint(name):
    train, test = make_dataset(name, n_train=300, n_test=100, seed=3)
    assert train.shape == (300, 2) and test.shape == (100, 2)
    assert train.dtype == test.dtype == torch.float32
    assert torch.isfinite(train).all() and torch.isfinite(test).all()
    # same seed, same split; another seed, other points
    again_train, again_test = make_dataset(name, 300, 100, seed=3)
    assert torch.equal(train, again_train) and torch.equal(test, again_test)
    other, _ = make_dataset(name, 300, 100, seed=4)
    assert not torch.equal(train, other)
    # no test point is a training point
    assert not (train[:, None, :] == test[None, :, :]).all(-1).any()
    # the test split is not a fixed region of the plane: its mean is near the training mean
    assert (train.mean(0) - test.mean(0)).abs().max() < 5 * train.std(0).max() / math.sqrt(100)
    x64, _ = make_dataset(name, 10, 0, seed=3, dtype=D64)
    assert x64.dtype == D64 and x64.shape == (10, 2)


def test_moons_are_raw_make_moons():
    x = sample_moons(500, seed=7, dtype=D64)
    expected, _ = make_moons(500, noise=0.1, random_state=7)
    assert torch.equal(x, torch.from_numpy(expected))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="swissroll", n_train=10, n_test=10), "unknown data set"),
        (dict(name="moons", n_train=0, n_test=10), "n_train"),
        (dict(name="moons", n_train=10, n_test=-1), "n_test"),
        (dict(name="moons", n_train=10.5, n_test=10), "n_train"),
        (dict(name="moons", n_train=10, n_test=10, seed=-1), "seed"),
        (dict(name="spirals", n_train=10, n_test=10, seed=True), "seed"),
    ],
)
def test_dataset_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(**kwargs)


def test_bad_names_and_points():
    with pytest.raises(ValueError, match="unknown density"):
        get_density("moon")
    with pytest.raises(ValueError, match="unknown energy"):
        Energy("U5")
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        get_density("ring").log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="floating"):
        U1(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="n must be"):
        get_density("ring").sample(0)


# --------------------------------------------------------------------------------------------
# known densities


@pytest.mark.parametrize("name", SMOOTH)
def test_smooth_density_integrates_to_one(name):
    target = get_density(name)
    # midpoint rule at step 0.02 (>= 5 grid points per noise std, 0.1 for moons); the box leaves
    # out < 1e-5 of the mass
    assert abs(grid_log_integral(target.log_prob, target.bounds, 0.02)) < 1e-3


def test_checkerboard_is_exactly_piecewise_uniform():
    target = Checkerboard()
    # grid cells aligned with the unit squares: the midpoint rule is exact
    assert abs(grid_log_integral(target.log_prob, target.bounds, 0.25)) < 1e-12
    centres = torch.tensor([[i + 0.5, j + 0.5] for i in range(-3, 3) for j in range(-3, 3)], dtype=D64)
    log_p = target.log_prob(centres)
    on_board = (centres.abs() < 2).all(1)
    black = (torch.floor(centres).sum(1) % 2) == 0
    assert torch.equal(log_p[on_board & black], torch.full((8,), -math.log(8), dtype=D64))
    assert torch.isneginf(log_p[~(on_board & black)]).all()
    # the sampler covers the 8 black squares evenly (chi-square at the 0.999 level, 7 dof)
    x = target.sample(8000, torch.Generator().manual_seed(0), D64)
    assert torch.isfinite(target.log_prob(x)).all()
    cells = (torch.floor(x[:, 0]) + 2) * 4 + (torch.floor(x[:, 1]) + 2)
    counts = torch.bincount(cells.long(), minlength=16).double()
    counts = counts[counts > 0]
    assert counts.numel() == 8
    assert ((counts - 1000) ** 2 / 1000).sum() < chi2.ppf(0.999, 7)
    H, stderr = entropy_estimate(target, n=2000, seed=0)
    assert H == pytest.approx(math.log(8), abs=1e-12) and stderr < 1e-12


@pytest.mark.parametrize("name", SMOOTH)
def test_sampler_matches_density(name):
    """The sampler and log_prob describe the same distribution.

    Two checks: (1) the Monte Carlo entropy -E_samples[log p] agrees with the quadrature entropy
    -integral p log p within 4 standard errors; (2) a 6 x 6 histogram of the samples agrees with the
    density's bin probabilities (Pearson chi-square below its 0.999 quantile).
    """
    target = get_density(name)
    grid, area = _grid(target.bounds, 0.025)
    log_p = target.log_prob(grid)
    p = log_p.exp()
    H_quad = -(p * log_p).sum().item() * area
    H_mc, stderr = entropy_estimate(target, n=10_000, seed=1)
    assert abs(H_mc - H_quad) < 4 * stderr

    x = target.sample(10_000, torch.Generator().manual_seed(2), D64)
    (x_lo, x_hi), (y_lo, y_hi) = target.bounds
    k = 6

    def bin_of(pts):
        i = ((pts[:, 0] - x_lo) / (x_hi - x_lo) * k).floor().clamp(0, k - 1)
        j = ((pts[:, 1] - y_lo) / (y_hi - y_lo) * k).floor().clamp(0, k - 1)
        return (i * k + j).long()

    expected = torch.zeros(k * k, dtype=D64).index_add_(0, bin_of(grid), p * area) * x.shape[0]
    counts = torch.bincount(bin_of(x), minlength=k * k).double()
    # bins expecting fewer than 5 points are pooled into one
    used = expected > 5
    expected = torch.cat([expected[used], expected[~used].sum()[None]])
    counts = torch.cat([counts[used], counts[~used].sum()[None]])
    stat = ((counts - expected) ** 2 / expected).sum().item()
    assert stat < chi2.ppf(0.999, len(counts) - 1)


@pytest.mark.parametrize("name", DENSITIES)
def test_density_dtypes(name):
    target = get_density(name)
    x = target.sample(200, torch.Generator().manual_seed(0), D64)
    assert target.sample(5).dtype == torch.get_default_dtype()
    lp64, lp32 = target.log_prob(x), target.log_prob(x.float())
    assert lp64.dtype == D64 and lp32.dtype == torch.float32 and lp64.shape == (200,)
    # float32 inputs agree with float64 to float32 precision (|log p| <~ 30 on samples)
    torch.testing.assert_close(lp32.double(), lp64, rtol=0, atol=1e-4)


def test_ring_matches_angular_quadrature():
    """The closed form (Bessel I0) against integrating the blurred circle over the angle directly."""
    ring = Ring(radius=2.0, std=0.2)
    x = 3 * torch.rand(50, 2, generator=torch.Generator().manual_seed(0), dtype=D64) - 1.5
    t = torch.arange(2000, dtype=D64) * (2 * math.pi / 2000)  # trapezoid: spectral for periodic f
    c = 2.0 * torch.stack([t.cos(), t.sin()], 1)
    log_n = -((x[:, None] - c[None]) ** 2).sum(-1) / (2 * 0.04) - math.log(2 * math.pi * 0.04)
    reference = torch.logsumexp(log_n, 1) - math.log(2000)
    torch.testing.assert_close(ring.log_prob(x), reference, rtol=0, atol=1e-10)


def test_moons_quadrature_error():
    """192 Gauss-Legendre nodes against 768, on the plotting box and out to |x| = 12."""
    target, fine = TwoMoons(), TwoMoons(n_nodes=768)
    near, _ = _grid(target.bounds, 0.1)
    far = 24 * torch.rand(600, 2, generator=torch.Generator().manual_seed(0), dtype=D64) - 12
    x = torch.cat([near, far[far.norm(dim=1) <= 12]])
    # log-density error = relative error of the density
    assert (target.log_prob(x) - fine.log_prob(x)).abs().max() < 1e-6


def test_moons_density_describes_make_moons():
    """Mean log-density of fresh make_moons points vs of the density's own samples."""
    target = TwoMoons()
    a = target.log_prob(sample_moons(10_000, seed=11, dtype=D64))
    b = target.log_prob(target.sample(10_000, torch.Generator().manual_seed(12), D64))
    se = math.sqrt(a.var() / a.numel() + b.var() / b.numel())
    assert abs(a.mean() - b.mean()) < 4 * se
    # the check has power: a sampler with noise 0.11 instead of 0.1 is 8 se away
    wrong = target.log_prob(TwoMoons(noise=0.11).sample(10_000, torch.Generator().manual_seed(12), D64))
    assert abs(a.mean() - wrong.mean()) > 6 * se


# --------------------------------------------------------------------------------------------
# KL to the truth


class _Gaussian(KnownDensity):
    """N(mean, std^2 I) in 2D, a known density with closed-form KLs."""

    def __init__(self, mean=(0.0, 0.0), std=1.0):
        self.mean, self.std = torch.tensor(mean, dtype=D64), float(std)
        self.name, self.bounds = "gaussian", ((-5.0, 5.0), (-5.0, 5.0))

    def log_prob(self, x):
        m = self.mean.to(x)
        return (-((x - m) ** 2).sum(1) / (2 * self.std**2) - math.log(2 * math.pi * self.std**2)).to(x.dtype)

    def _sample64(self, n, generator):
        return self.mean + self.std * torch.randn(n, 2, generator=generator, dtype=D64)


def test_kl_of_the_truth_is_zero():
    for name in DENSITIES:
        target = get_density(name)
        x = target.sample(1000, torch.Generator().manual_seed(0), D64)
        kl, stderr = kl_to_truth(target.log_prob, target, x)
        assert kl == 0.0 and stderr == 0.0  # paired differences are identically 0
        kl32, stderr32 = kl_to_truth(target.log_prob, target, x.float())
        assert abs(kl32) <= 4 * stderr32 + 1e-6


@pytest.mark.parametrize("mean, std", [((0.5, -0.3), 1.0), ((1.0, 0.0), 1.5)])
def test_kl_to_truth_matches_closed_form(mean, std):
    """KL(N(0, I) || N(mu, s^2 I)) = 2 log s + (2 + |mu|^2) / (2 s^2) - 1 in 2D."""
    target, model = _Gaussian(), _Gaussian(mean, std)
    x = target.sample(20_000, torch.Generator().manual_seed(0), D64)
    kl, stderr = kl_to_truth(model.log_prob, target, x)
    exact = 2 * math.log(std) + (2 + sum(m * m for m in mean)) / (2 * std**2) - 1
    assert abs(kl - exact) < 4 * stderr
    # KL = NLL - H on the same samples
    nll, H = -model.log_prob(x).mean().item(), -target.log_prob(x).mean().item()
    assert kl == pytest.approx(nll - H, abs=1e-12)


def test_kl_to_truth_rejects_points_off_the_support():
    x = torch.tensor([[0.5, 0.5], [0.5, 1.5]], dtype=D64)  # the second is on a white square
    with pytest.raises(ValueError, match="outside the support"):
        kl_to_truth(lambda x: torch.zeros(len(x)), Checkerboard(), x)


# --------------------------------------------------------------------------------------------
# U1-U4


def test_energies_at_hand_computed_points():
    """Values derived by hand from Table 1 of Rezende and Mohamed (2015)."""
    z = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0], [3.0, -1.0]], dtype=D64)
    tiny = lambda a: math.log1p(math.exp(-0.5 * a * a))  # noqa: E731 - log(1 + e^{-a^2/2})
    # U1 at (2, 0): on the ring, the z1 = +2 mode; at (0, 0): 12.5 - log(2 e^{-(2/0.6)^2/2})
    assert U1(z[:1]).item() == pytest.approx(-tiny(4 / 0.6), abs=1e-12)
    assert U1(z[2:3]).item() == pytest.approx(12.5 + 0.5 * (2 / 0.6) ** 2 - math.log(2), abs=1e-12)
    # w1(1, .) = sin(pi/2) = 1; w1(3, .) = sin(3 pi / 2) = -1; w2(1) = 3; w3(1) = 1.5
    assert U2(z[1:2]).item() == pytest.approx(0.0, abs=1e-12)
    assert U2(z[3:4]).item() == pytest.approx(0.0, abs=1e-12)
    assert U3(z[1:2]).item() == pytest.approx(-tiny(3 / 0.35), abs=1e-12)
    assert U4(z[1:2]).item() == pytest.approx(-tiny(1.5 / 0.35), abs=1e-12)
    # the wall: U2-U4 get + (z1 / 4)^12 / 2, U1 does not
    assert Energy("U2").energy(z[3:4]).item() == pytest.approx(0.5 * 0.75**12, abs=1e-12)
    assert Energy("U1").energy(z[:1]).item() == U1(z[:1]).item()


def _polar_log_Z_u1():
    """log Z of U1 in polar coordinates: Gauss-Legendre in r on [0, 5], trapezoid in theta."""
    r, w = np.polynomial.legendre.leggauss(200)
    r, w = torch.from_numpy(2.5 * (r + 1)), torch.from_numpy(2.5 * w)
    theta = torch.arange(400, dtype=D64) * (2 * math.pi / 400)
    rr, tt = torch.meshgrid(r, theta, indexing="ij")
    z = torch.stack([rr * tt.cos(), rr * tt.sin()], -1).reshape(-1, 2)
    log_f = (-U1(z)).reshape(200, 400) + rr.log() + w.log()[:, None] + math.log(2 * math.pi / 400)
    return torch.logsumexp(log_f.reshape(-1), 0).item()


def _closed_form_log_Z(name):
    """U2-U4: integrating over z2 gives a Gaussian integral c sqrt(2 pi) for every z1, and the wall
    integral over z1 is 2 * 4 * 2^(1/12) Gamma(1/12) / 12."""
    c = {"U2": 0.4, "U3": 0.35 + 0.35, "U4": 0.4 + 0.35}[name]
    return math.log(c * math.sqrt(2 * math.pi)) + math.log(8 * 2 ** (1 / 12) * math.gamma(1 / 12) / 12)


@pytest.mark.parametrize("name", ENERGIES)
def test_log_Z_converged_and_independently_checked(name):
    energy = Energy(name)
    # a second grid: half the step (0.025), the box widened by 1 on every side
    second = grid_log_integral(energy.log_unnormalized, ((-8.0, 8.0), (-9.0, 9.0)), 0.025)
    assert abs(energy.log_Z - second) < 1e-3
    independent = _polar_log_Z_u1() if name == "U1" else _closed_form_log_Z(name)
    assert abs(energy.log_Z - independent) < 1e-6


def test_log_Z_is_cached(monkeypatch):
    energy = get_energy("U3")
    first = energy.log_Z
    monkeypatch.setattr("dgm_course.targets.grid_log_integral", lambda *a, **k: pytest.fail("recomputed"))
    assert Energy("U3").log_Z == first
    z = torch.zeros(2, 2, dtype=D64)
    torch.testing.assert_close(energy.log_prob(z), energy.log_unnormalized(z) - first)


class _GaussianEnergy:
    """log pi~(x) = -|x - m|^2 / (2 s^2), log Z = log(2 pi s^2): duck-types Energy."""

    def __init__(self, m, s):
        self.m, self.s = torch.tensor(m, dtype=D64), s
        self.log_Z = math.log(2 * math.pi * s * s)

    def log_unnormalized(self, x):
        return -((x - self.m.to(x)) ** 2).sum(1) / (2 * self.s**2)


def _affine_model(log_scale, shift):
    f = Affine(2).double()
    with torch.no_grad():
        f.log_scale.copy_(torch.tensor(log_scale, dtype=D64))
        f.shift.copy_(torch.tensor(shift, dtype=D64))
    return FlowModel(StandardNormal((2,)).double(), f)


def test_reverse_kl_to_truth_closed_form():
    # q = N(mu_q, diag(sig_q^2)) with x = (z - t) e^{-s}: sig_q = e^{-s}, mu_q = -t e^{-s}
    s, t = [0.3, -0.2], [0.5, 1.0]
    model = _affine_model(s, t)
    energy = _GaussianEnergy([0.2, -0.4], 1.3)
    sig_q = np.exp(-np.array(s))
    mu_q = -np.array(t) * sig_q
    exact = sum(
        math.log(1.3 / sq) + (sq**2 + (mq - m) ** 2) / (2 * 1.3**2) - 0.5
        for sq, mq, m in zip(sig_q, mu_q, [0.2, -0.4])
    )
    kl, stderr = reverse_kl_to_truth(model, energy, n=20_000, seed=0)
    assert abs(kl - exact) < 4 * stderr
    # q = pi exactly: every sample gives the same log q - log pi~ = -log Z
    kl0, stderr0 = reverse_kl_to_truth(_affine_model([0.0, 0.0], [0.0, 0.0]), _GaussianEnergy([0, 0], 1.0), 500)
    assert abs(kl0) < 1e-12 and stderr0 < 1e-12


def test_reverse_kl_to_truth_on_u1_is_positive():
    kl, stderr = reverse_kl_to_truth(_affine_model([0.0, 0.0], [0.0, 0.0]), Energy("U1"), n=5000)
    assert kl > 10 * stderr > 0
