r"""2D targets with a known truth: data sets, normalized densities, and the energies U1-U4.

Three kinds of target, for three kinds of experiment:

- **Sample-only data sets** (``make_dataset``, ``sample_*``): two moons, circles, spirals, a
  checkerboard, eight Gaussians, a ring. Forward KL (maximum likelihood) needs only samples.
- **Known densities** (:class:`KnownDensity`: ``EightGaussians``, ``Ring``, ``Checkerboard``,
  ``TwoMoons``): a normalized ``log_prob`` and an exact ``sample``, so a fitted model's
  :math:`KL(\pi \| p_\theta) = E_\pi[\log\pi - \log p_\theta]` is measured in nats
  (:func:`kl_to_truth`), not only its negative log-likelihood.
- **Energies** (:class:`Energy`: U1-U4 of Rezende and Mohamed, *Variational Inference with
  Normalizing Flows*, 2015, Table 1): an unnormalized :math:`\log\tilde\pi = -U` and its
  :math:`\log Z` by quadrature, so a reverse-KL fit is measured as :math:`KL(q \| \pi)` in nats
  (:func:`reverse_kl_to_truth`).

Points are rows ``x`` of shape ``(batch, 2)``. A ``bounds`` is ``((x_lo, x_hi), (y_lo, y_hi))``.

Example:
    >>> train, test = make_dataset("moons", n_train=100, n_test=20, seed=0)
    >>> train.shape, test.shape, train.dtype
    (torch.Size([100, 2]), torch.Size([20, 2]), torch.float32)
    >>> target = get_density("checkerboard")
    >>> H, stderr = entropy_estimate(target, n=1000, seed=0)
    >>> round(H, 6), round(stderr, 12)  # the uniform density on 8 unit squares: H = log 8 exactly
    (2.079442, 0.0)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ._common import LOG_2PI, Bounds, check_count, check_input, check_seed, generator

__all__ = [
    "Bounds",
    "DATASETS",
    "DENSITIES",
    "ENERGIES",
    "make_dataset",
    "sample_moons",
    "sample_circles",
    "sample_spirals",
    "sample_checkerboard",
    "sample_eight_gaussians",
    "sample_ring",
    "KnownDensity",
    "EightGaussians",
    "Ring",
    "Checkerboard",
    "TwoMoons",
    "get_density",
    "entropy_estimate",
    "kl_to_truth",
    "grid_log_integral",
    "U1",
    "U2",
    "U3",
    "U4",
    "Energy",
    "get_energy",
    "reverse_kl_to_truth",
]



# ---------------------------------------------------------------------------------------------
# argument checks


def _check_points(x: Tensor) -> None:
    check_input(x, (2,))


def _generator(seed: int) -> torch.Generator:
    return generator(check_seed(seed))  # never the global generator: a seed is required here


# ---------------------------------------------------------------------------------------------
# known densities


class KnownDensity(ABC):
    r"""A 2D density with a normalized ``log_prob`` and an exact sampler.

    - ``log_prob(x)``: :math:`\log\pi(x)`, shape ``(batch,)``, in ``x``'s dtype (use float64
      for checks); ``-inf`` outside the support.
    - ``sample(n, generator=None, dtype=None)``: ``n`` exact draws, shape ``(n, 2)``, computed in
      float64 and returned in ``dtype`` (default: torch's default dtype).
    - ``bounds``: a box holding all but a negligible part (< 1e-5) of the mass, for plots and
      grid checks.
    """

    name: str
    bounds: Bounds

    @abstractmethod
    def log_prob(self, x: Tensor) -> Tensor: ...

    @abstractmethod
    def _sample64(self, n: int, generator: torch.Generator | None) -> Tensor: ...

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> Tensor:
        n = check_count(n, "n")
        return self._sample64(n, generator).to(dtype or torch.get_default_dtype())

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_") and k != "bounds")
        return f"{type(self).__name__}({params})"


class _AroundACircle(KnownDensity):
    """A density around the circle of ``radius`` blurred by Gaussian noise of ``std``; bounds at 5 std."""

    def __init__(self, radius: float, std: float) -> None:
        if radius <= 0 or std <= 0:
            raise ValueError(f"radius and std must be positive, got radius={radius}, std={std}")
        self.radius, self.std = float(radius), float(std)
        b = self.radius + 5 * self.std
        self.bounds = ((-b, b), (-b, b))


class EightGaussians(_AroundACircle):
    r"""An equal mixture of 8 isotropic Gaussians on a circle.

    .. math:: \pi(x) = \frac18 \sum_{k=0}^{7} \mathcal N\!\left(x;\ r(\cos\tfrac{2\pi k}{8},
              \sin\tfrac{2\pi k}{8}),\ \sigma^2 I\right)

    With the defaults (r = 2, sigma = 0.25) neighbouring modes are 6 sigma apart: the density
    that separates forward KL (mass covering) from reverse KL (mode seeking).
    """

    name = "8gaussians"

    def __init__(self, radius: float = 2.0, std: float = 0.25) -> None:
        super().__init__(radius, std)

    def _means(self, like: Tensor) -> Tensor:
        angle = torch.arange(8, dtype=like.dtype, device=like.device) * (2 * math.pi / 8)
        return self.radius * torch.stack([angle.cos(), angle.sin()], dim=1)

    def log_prob(self, x: Tensor) -> Tensor:
        _check_points(x)
        d2 = (x[:, None, :] - self._means(x)[None]).pow(2).sum(-1)  # (B, 8)
        log_n = -d2 / (2 * self.std**2) - LOG_2PI - 2 * math.log(self.std)
        return torch.logsumexp(log_n, dim=1) - math.log(8)

    def _sample64(self, n, generator):
        k = torch.randint(0, 8, (n,), generator=generator)
        means = self._means(torch.empty(0, dtype=torch.float64))
        return means[k] + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)


class Ring(_AroundACircle):
    r"""A circle of radius r blurred by Gaussian noise: :math:`x = r(\cos t, \sin t) + \sigma
    \varepsilon`, :math:`t \sim U[0, 2\pi)`, :math:`\varepsilon \sim \mathcal N(0, I)`.

    Integrating the angle out gives the Rice density in closed form:

    .. math:: \pi(x) = \frac{1}{2\pi\sigma^2} \exp\!\left(-\frac{\rho^2 + r^2}{2\sigma^2}\right)
              I_0\!\left(\frac{r\rho}{\sigma^2}\right), \qquad \rho = \|x\|,

    computed stably as :math:`-\log 2\pi\sigma^2 - (\rho - r)^2 / 2\sigma^2 + \log
    \mathrm{i0e}(r\rho/\sigma^2)` with the exponentially scaled Bessel function.
    """

    name = "ring"

    def __init__(self, radius: float = 2.0, std: float = 0.2) -> None:
        super().__init__(radius, std)

    def log_prob(self, x: Tensor) -> Tensor:
        _check_points(x)
        rho = x.norm(dim=1)
        s2 = self.std**2
        return (
            -LOG_2PI
            - math.log(s2)
            - (rho - self.radius).pow(2) / (2 * s2)
            + torch.special.i0e(self.radius * rho / s2).log()
        )

    def _sample64(self, n, generator):
        t = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        circle = self.radius * torch.stack([t.cos(), t.sin()], dim=1)
        return circle + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)


class Checkerboard(KnownDensity):
    r"""The uniform density on the 8 "black" unit squares of a 4 x 4 board on :math:`[-2, 2)^2`.

    .. math:: \pi(x) = \tfrac18\ \mathbb 1\left[x \in [-2, 2)^2,\ \lfloor x_1\rfloor +
              \lfloor x_2 \rfloor \text{ even}\right]

    ``log_prob`` is :math:`-\log 8` on the support and ``-inf`` off it; the entropy is
    :math:`\log 8` exactly. The board of the FFJORD experiments, at unit scale.
    """

    def __init__(self) -> None:
        self.name, self.bounds = "checkerboard", ((-2.5, 2.5), (-2.5, 2.5))

    def log_prob(self, x: Tensor) -> Tensor:
        _check_points(x)
        inside = ((x >= -2) & (x < 2)).all(dim=1)
        black = torch.floor(x).sum(dim=1).remainder(2) == 0
        return torch.where(inside & black, x.new_full((), -math.log(8)), x.new_full((), -math.inf))

    def _sample64(self, n, generator):
        x1 = 4 * torch.rand(n, generator=generator, dtype=torch.float64) - 2
        # the row's parity must match the column's: rows {-2, 0} under even columns, {-1, 1} under odd
        row = 2 * torch.randint(0, 2, (n,), generator=generator) - 2 + torch.floor(x1).remainder(2)
        x2 = row + torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.stack([x1, x2], dim=1)


class TwoMoons(KnownDensity):
    r"""The continuous density behind scikit-learn's ``make_moons(noise=sigma)``.

    ``make_moons`` puts points on the upper arc :math:`c_1(t) = (\cos t, \sin t)` and the lower
    arc :math:`c_2(t) = (1 - \cos t, \tfrac12 - \sin t)`, :math:`t \in [0, \pi]`, half on each, and
    adds :math:`\mathcal N(0, \sigma^2 I)` noise. With :math:`t` uniform the density is

    .. math:: \pi(x) = \frac12 \sum_{a=1}^{2} \frac1\pi \int_0^\pi
              \mathcal N\!\left(x;\ c_a(t),\ \sigma^2 I\right) dt.

    (``make_moons`` itself spaces ``t`` evenly, a stratified draw of the same uniform: its
    samples follow this density up to that stratification.)

    Quadrature: ``n_nodes``-point Gauss-Legendre in :math:`t` per arc, summed in log space
    (``logsumexp``) so far points get a finite log-density. The integrand is entire in
    :math:`t`, so the rule converges geometrically: with the default 192 nodes the log-density
    differs from a 1024-node rule by < 1e-10 (the relative error of the density) for
    :math:`\|x\| \le 12`; tests/test_targets.py checks < 1e-6 on the plotting box. (128 nodes
    give 4e-6 at :math:`\|x\| = 10`, 96 nodes 1e-3.) Cost: 2 n_nodes exponentials per point.
    """

    def __init__(self, noise: float = 0.1, n_nodes: int = 192) -> None:
        if noise <= 0:
            raise ValueError(f"noise must be positive, got {noise}")
        self.noise = float(noise)
        self.n_nodes = check_count(n_nodes, "n_nodes", minimum=2)
        m = 5 * self.noise
        self.name, self.bounds = "moons", ((-1 - m, 2 + m), (-0.5 - m, 1 + m))
        t, w = np.polynomial.legendre.leggauss(self.n_nodes)  # on [-1, 1]
        self._t = torch.from_numpy(math.pi / 2 * (t + 1))
        # weights of (1/pi) * integral over [0, pi]: (pi/2) w / pi; then 1/2 for the choice of arc
        self._log_w = torch.from_numpy(np.log(w / 2) - math.log(2))

    @staticmethod
    def arcs(t: Tensor) -> Tensor:
        """The two arcs at parameters ``t``, shape ``(2, len(t), 2)`` (upper arc first)."""
        upper = torch.stack([t.cos(), t.sin()], dim=-1)
        lower = torch.stack([1 - t.cos(), 0.5 - t.sin()], dim=-1)
        return torch.stack([upper, lower])

    def log_prob(self, x: Tensor, chunk: int = 4096) -> Tensor:
        _check_points(x)
        c = self.arcs(self._t.to(x)).reshape(-1, 2)  # (2K, 2): both arcs' nodes
        log_w = self._log_w.to(x).repeat(2)
        s2 = self.noise**2
        out = []
        for xb in x.split(chunk):  # bounds memory at chunk x 2K numbers
            dx, dy = xb[:, :1] - c[:, 0], xb[:, 1:] - c[:, 1]
            out.append(torch.logsumexp(log_w - (dx * dx + dy * dy) / (2 * s2), dim=1))
        return torch.cat(out) - LOG_2PI - math.log(s2)

    def _sample64(self, n, generator):
        arc = torch.randint(0, 2, (n,), generator=generator)
        t = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        centers = self.arcs(t)[arc, torch.arange(n)]
        return centers + self.noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)


_DENSITIES: dict[str, Callable[[], KnownDensity]] = {
    "8gaussians": EightGaussians,
    "ring": Ring,
    "checkerboard": Checkerboard,
    "moons": TwoMoons,
}
DENSITIES = tuple(_DENSITIES)


def get_density(name: str) -> KnownDensity:
    """The known density called ``name`` (one of ``DENSITIES``) with its default parameters."""
    if name not in _DENSITIES:
        raise ValueError(f"unknown density {name!r}; choose one of {', '.join(DENSITIES)}")
    return _DENSITIES[name]()


# ---------------------------------------------------------------------------------------------
# sample-only data sets: each sampler is seeded by an integer and computes in float64, returning
# float32 unless ``dtype`` says otherwise


def _as(x, dtype: torch.dtype | None) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float64).to(dtype or torch.float32)


def sample_moons(n: int, seed: int = 0, dtype: torch.dtype | None = None) -> Tensor:
    """scikit-learn's ``make_moons(n, noise=0.1, random_state=seed)``, raw coordinates."""
    from sklearn.datasets import make_moons

    x, _ = make_moons(check_count(n, "n"), noise=0.1, random_state=check_seed(seed))
    return _as(x, dtype)


def sample_circles(n: int, seed: int = 0, dtype: torch.dtype | None = None) -> Tensor:
    """scikit-learn's ``make_circles(n, noise=0.05, factor=0.5, random_state=seed)``: radii 1 and 0.5."""
    from sklearn.datasets import make_circles

    x, _ = make_circles(check_count(n, "n"), noise=0.05, factor=0.5, random_state=check_seed(seed))
    return _as(x, dtype)


def sample_spirals(n: int, seed: int = 0, dtype: torch.dtype | None = None) -> Tensor:
    r"""Two interleaved spirals: :math:`\pm\frac13(-t\cos t,\ t\sin t) + \mathcal N(0, 0.1^2 I)`,
    :math:`t = 3\pi\sqrt u`, :math:`u \sim U[0,1]` (denser towards the outside, as in FFJORD's
    "2spirals")."""
    g = _generator(seed)
    n = check_count(n, "n")
    t = 3 * math.pi * torch.rand(n, generator=g, dtype=torch.float64).sqrt()
    arm = torch.stack([-t * t.cos(), t * t.sin()], dim=1) / 3
    sign = 2.0 * torch.randint(0, 2, (n, 1), generator=g) - 1
    return _as(sign * arm + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64), dtype)


def sample_checkerboard(n: int, seed: int = 0, dtype: torch.dtype | None = None) -> Tensor:
    """Exact draws of :class:`Checkerboard`."""
    return Checkerboard().sample(check_count(n, "n"), _generator(seed), dtype or torch.float32)


def sample_eight_gaussians(n: int, seed: int = 0, dtype: torch.dtype | None = None) -> Tensor:
    """Exact draws of :class:`EightGaussians` (radius 2, std 0.25)."""
    return EightGaussians().sample(check_count(n, "n"), _generator(seed), dtype or torch.float32)


def sample_ring(n: int, seed: int = 0, dtype: torch.dtype | None = None) -> Tensor:
    """Exact draws of :class:`Ring` (radius 2, std 0.2)."""
    return Ring().sample(check_count(n, "n"), _generator(seed), dtype or torch.float32)


_SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "moons": sample_moons,
    "circles": sample_circles,
    "spirals": sample_spirals,
    "checkerboard": sample_checkerboard,
    "8gaussians": sample_eight_gaussians,
    "ring": sample_ring,
}
DATASETS = tuple(_SAMPLERS)


def make_dataset(
    name: str, n_train: int, n_test: int, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """A train and a test set of the 2D data set ``name`` (one of ``DATASETS``).

    Both come from one draw of ``n_train + n_test`` i.i.d. points under ``seed`` (the sklearn
    samplers shuffle), split into the first ``n_train`` and the rest, so the two are disjoint and
    the same seed gives the same split. Shapes ``(n_train, 2)`` and ``(n_test, 2)``.
    """
    if name not in _SAMPLERS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    n_train = check_count(n_train, "n_train")
    n_test = check_count(n_test, "n_test", minimum=0)
    x = _SAMPLERS[name](n_train + n_test, seed, dtype)
    return x[:n_train].clone(), x[n_train:].clone()


# ---------------------------------------------------------------------------------------------
# measurements against the truth


def _mean_and_stderr(d: Tensor) -> tuple[float, float]:
    d = d.double()
    stderr = d.std(unbiased=True).item() / math.sqrt(d.numel()) if d.numel() > 1 else math.nan
    return d.mean().item(), stderr


def entropy_estimate(target: KnownDensity, n: int = 100_000, seed: int = 0) -> tuple[float, float]:
    r"""Monte Carlo entropy :math:`H(\pi) = -E_\pi[\log\pi(x)]` in nats, and its standard error.

    Draws ``n`` float64 samples of ``target`` under ``seed``; the standard error is
    :math:`\mathrm{std}(\log\pi(x_i)) / \sqrt n` (0 for a density that is constant on its support).
    """
    x = target.sample(check_count(n, "n", minimum=2), _generator(seed), torch.float64)
    with torch.no_grad():
        mean, stderr = _mean_and_stderr(target.log_prob(x))
    return -mean, stderr


def kl_to_truth(
    model_log_prob: Callable[[Tensor], Tensor], target: KnownDensity, test_x: Tensor
) -> tuple[float, float]:
    r""":math:`KL(\pi \| p) = E_\pi[\log\pi(x) - \log p(x)] = \mathrm{NLL}(p) - H(\pi)` in nats.

    ``test_x`` are samples of ``target`` (a held-out test set). Both log-densities are evaluated
    on the same points, so the estimate is the mean of the paired differences
    :math:`d_i = \log\pi(x_i) - \log p(x_i)` and the returned standard error is that of the
    paired difference, :math:`\mathrm{std}(d)/\sqrt n`: much smaller than the standard errors of
    NLL and entropy added, since most of the spread of :math:`\log\pi` cancels.
    ``model_log_prob`` is evaluated on ``test_x`` as given (its dtype); the truth in float64.
    """
    check_input(test_x, (2,), "test_x")
    check_count(test_x.shape[0], "the number of test points", minimum=2)
    with torch.no_grad():
        log_pi = target.log_prob(test_x.double())
        if not torch.isfinite(log_pi).all():
            raise ValueError(f"test_x has points outside the support of {target!r}: pass samples of the target")
        log_p = model_log_prob(test_x).double()
    return _mean_and_stderr(log_pi - log_p)


def grid_log_integral(
    log_fn: Callable[[Tensor], Tensor], bounds: Bounds, step: float, max_points: int = 1 << 20
) -> float:
    r""":math:`\log \int_{\text{box}} e^{\log f(x)}\, dx` by the midpoint rule on a square grid, in float64.

    The box is split into cells of side close to ``step`` (exactly ``step`` when it divides the
    sides); ``log f`` is evaluated at the cell centres and summed with ``logsumexp``. For a
    smooth integrand that is negligible on the box's edge the rule converges geometrically in
    ``1/step``; for a piecewise-constant one whose jumps lie on cell edges it is exact. Rows are
    evaluated in chunks of at most ``max_points`` points.
    """
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    if not (x_lo < x_hi and y_lo < y_hi) or step <= 0:
        raise ValueError(f"need a non-empty box and step > 0, got bounds={bounds}, step={step}")
    nx, ny = max(1, round((x_hi - x_lo) / step)), max(1, round((y_hi - y_lo) / step))
    hx, hy = (x_hi - x_lo) / nx, (y_hi - y_lo) / ny
    xs = x_lo + hx * (torch.arange(nx, dtype=torch.float64) + 0.5)
    ys = y_lo + hy * (torch.arange(ny, dtype=torch.float64) + 0.5)
    rows = max(1, max_points // ny)
    parts = []
    with torch.no_grad():
        for xb in xs.split(rows):
            grid = torch.stack(torch.meshgrid(xb, ys, indexing="ij"), dim=-1).reshape(-1, 2)
            parts.append(torch.logsumexp(log_fn(grid).double(), dim=0))
    return (torch.logsumexp(torch.stack(parts), dim=0) + math.log(hx * hy)).item()


# ---------------------------------------------------------------------------------------------
# the energies of Rezende and Mohamed (2015), Table 1


def _w1(z: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z[:, 0] / 4)


def _w2(z: Tensor) -> Tensor:
    return 3 * torch.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)


def _w3(z: Tensor) -> Tensor:
    return 3 * torch.sigmoid((z[:, 0] - 1) / 0.3)


def U1(z: Tensor) -> Tensor:
    r""":math:`U_1(z) = \frac12\left(\frac{\|z\| - 2}{0.4}\right)^2 - \log\left(e^{-\frac12
    (\frac{z_1 - 2}{0.6})^2} + e^{-\frac12(\frac{z_1 + 2}{0.6})^2}\right)`, exactly as printed."""
    check_input(z, (2,), "z")
    a = -0.5 * ((z[:, 0] - 2) / 0.6) ** 2
    b = -0.5 * ((z[:, 0] + 2) / 0.6) ** 2
    return 0.5 * ((z.norm(dim=1) - 2) / 0.4) ** 2 - torch.logaddexp(a, b)


def U2(z: Tensor) -> Tensor:
    r""":math:`U_2(z) = \frac12\left(\frac{z_2 - w_1(z)}{0.4}\right)^2`, :math:`w_1(z) = \sin(2\pi z_1/4)`,
    exactly as printed (not normalizable on its own: see :class:`Energy`)."""
    check_input(z, (2,), "z")
    return 0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2


def U3(z: Tensor) -> Tensor:
    r""":math:`U_3(z) = -\log\left(e^{-\frac12(\frac{z_2 - w_1}{0.35})^2} +
    e^{-\frac12(\frac{z_2 - w_1 + w_2}{0.35})^2}\right)`, :math:`w_2(z) = 3e^{-\frac12(\frac{z_1 -
    1}{0.6})^2}`, exactly as printed."""
    check_input(z, (2,), "z")
    u = z[:, 1] - _w1(z)
    return -torch.logaddexp(-0.5 * (u / 0.35) ** 2, -0.5 * ((u + _w2(z)) / 0.35) ** 2)


def U4(z: Tensor) -> Tensor:
    r""":math:`U_4(z) = -\log\left(e^{-\frac12(\frac{z_2 - w_1}{0.4})^2} +
    e^{-\frac12(\frac{z_2 - w_1 + w_3}{0.35})^2}\right)`, :math:`w_3(z) = 3\sigma(\frac{z_1 -
    1}{0.3})`, exactly as printed."""
    check_input(z, (2,), "z")
    u = z[:, 1] - _w1(z)
    return -torch.logaddexp(-0.5 * (u / 0.4) ** 2, -0.5 * ((u + _w3(z)) / 0.35) ** 2)


_ENERGIES = {"U1": U1, "U2": U2, "U3": U3, "U4": U4}
ENERGIES = tuple(_ENERGIES)
_WALL_AT, _WALL_POWER = 4.0, 12
# log Z quadrature: midpoint rule, this box and step (see Energy.log_Z)
_LOG_Z_BOUNDS: Bounds = ((-7.0, 7.0), (-8.0, 8.0))
_LOG_Z_STEP = 0.05
_LOG_Z_CACHE: dict[str, float] = {}


class Energy:
    r"""A target known up to its normalizer: :math:`\log\tilde\pi(z) = -U(z)`, with :math:`\log Z`.

    ``name`` is one of ``ENERGIES`` (U1-U4 of Rezende and Mohamed, 2015, Table 1).

    **The wall.** U2-U4 as printed are not normalizable: for every :math:`z_1` the integral of
    :math:`e^{-U}` over :math:`z_2` is a positive constant (a Gaussian integral), so
    :math:`Z = \infty`. The paper draws them on the window :math:`[-4, 4]^2`; here they are
    confined to it by a soft wall in :math:`z_1`,

    .. math:: U(z) = U_k(z) + \tfrac12 (z_1 / 4)^{12} \quad (k = 2, 3, 4),

    which is < 0.02 for :math:`|z_1| \le 3`, 0.5 at the window's edge and 65 at
    :math:`|z_1| = 6`. U1 confines itself (the ring) and is used as printed. ``log_unnormalized``
    includes the wall; the plain functions ``U1``-``U4`` do not.

    **log Z.** :math:`\log Z = \log\int e^{-U}` by :func:`grid_log_integral` on the box
    :math:`[-7, 7] \times [-8, 8]` with step 0.05 (89,600 points), in float64, computed once and
    cached. The narrowest feature is a Gaussian of std 0.14 (U4's step along :math:`z_1`), so the
    midpoint rule's error, about :math:`2e^{-2\pi^2 (0.14/0.05)^2}`, is negligible, and the box
    leaves out less than :math:`e^{-30}` of the mass. tests/test_targets.py recomputes it with half
    the step on a box widened by 1 on every side and finds the same value to < 1e-3 (in fact
    < 1e-9); it also checks U2-U4
    against their closed form (the :math:`z_2`-integral is a Gaussian integral and the wall's
    :math:`\int e^{-\frac12(z_1/4)^{12}}dz_1 = 8 \cdot 2^{1/12}\Gamma(1/12)/12`) and U1 against
    a quadrature in polar coordinates.

    Example:
        >>> import torch
        >>> u2 = Energy("U2")
        >>> z = torch.zeros(3, 2, dtype=torch.float64)
        >>> u2.log_unnormalized(z).tolist()
        [-0.0, -0.0, -0.0]
        >>> round(u2.log_Z, 4)  # log(0.4 sqrt(2 pi)) + log(8 * 2**(1/12) Gamma(1/12) / 12)
        2.0972
    """

    bounds: Bounds = ((-4.0, 4.0), (-4.0, 4.0))  # the paper's window

    def __init__(self, name: str) -> None:
        if name not in _ENERGIES:
            raise ValueError(f"unknown energy {name!r}; choose one of {', '.join(ENERGIES)}")
        self.name = name
        self._U = _ENERGIES[name]

    def energy(self, z: Tensor) -> Tensor:
        """:math:`U(z)`, wall included, shape ``(batch,)``."""
        u = self._U(z)
        if self.name != "U1":
            u = u + 0.5 * (z[:, 0] / _WALL_AT) ** _WALL_POWER
        return u

    def log_unnormalized(self, z: Tensor) -> Tensor:
        r""":math:`\log\tilde\pi(z) = -U(z)`: the ``log_target`` of a reverse-KL fit."""
        return -self.energy(z)

    @property
    def log_Z(self) -> float:
        r""":math:`\log Z = \log\int e^{-U(z)} dz` (float64 quadrature, computed once per name)."""
        if self.name not in _LOG_Z_CACHE:
            _LOG_Z_CACHE[self.name] = grid_log_integral(self.log_unnormalized, _LOG_Z_BOUNDS, _LOG_Z_STEP)
        return _LOG_Z_CACHE[self.name]

    def log_prob(self, z: Tensor) -> Tensor:
        r"""The normalized :math:`\log\pi(z) = -U(z) - \log Z`."""
        return self.log_unnormalized(z) - self.log_Z

    def __repr__(self) -> str:
        return f"Energy({self.name!r})"


def get_energy(name: str) -> Energy:
    """``Energy(name)``, for symmetry with :func:`get_density`."""
    return Energy(name)


def reverse_kl_to_truth(model, energy: Energy, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    r""":math:`KL(q \| \pi) = E_q[\log q(x) - \log\tilde\pi(x)] + \log Z` in nats, and its standard error.

    ``model`` has ``sample_with_log_prob(n, generator)`` (a ``FlowModel``): ``n`` samples
    :math:`x = g(z)` under ``seed`` and their :math:`\log q(x)`. The standard error is
    :math:`\mathrm{std}(\log q - \log\tilde\pi) / \sqrt n`; it is 0 exactly when :math:`q = \pi`.
    """
    n = check_count(n, "n", minimum=2)
    with torch.no_grad():
        x, log_q = model.sample_with_log_prob(n, _generator(seed))
        d = log_q.double() - energy.log_unnormalized(x.double())
    kl, stderr = _mean_and_stderr(d)
    return kl + energy.log_Z, stderr
