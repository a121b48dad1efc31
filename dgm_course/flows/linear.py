r"""Linear flows :math:`z = f(x) = W x + b` (lecture: "Linear flows").

A linear map has the constant Jacobian :math:`W`, so :math:`\log|\det J_f| = \log|\det W|`
for every sample. For a general :math:`W` that costs O(D^3) (an LU factorization), and so
does the inverse. The trick of the lecture is to *parametrize* :math:`W` through a
factorization whose determinant can be read off the diagonal:

- :class:`Permutation`: :math:`W = P`, log-det 0.
- :class:`LULinear`: :math:`W = P L U`, log-det :math:`\sum_i \log|u_{ii}|`, O(D).
- :class:`QRLinear`: :math:`W = Q R` with Householder :math:`Q`, log-det :math:`\sum_i \log r_{ii}`, O(D).
- :class:`DenseLinear`: a plain :math:`W`, log-det by ``slogdet``, O(D^3): the baseline.

Inverses use triangular solves (O(D^2) per sample), never a matrix inverse.

References: Kingma & Dhariwal, *Glow* (2018), section 3.2 for the LU parametrization;
Tomczak & Welling, *Improving VAEs using Householder flow* (2016) and Hoogeboom et al.,
*Emerging convolutions* (2019) for the QR parametrization.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._common import generator
from .base import Flow, zeros_log_det

__all__ = ["Permutation", "LULinear", "QRLinear", "DenseLinear", "random_orthogonal"]


def random_orthogonal(D: int, seed: int | None = None) -> Tensor:
    """A Haar-random orthogonal ``(D, D)`` matrix (QR of a Gaussian matrix, signs fixed by R's diagonal)."""
    A = torch.randn(D, D, generator=generator(seed))
    Q, R = torch.linalg.qr(A)
    return Q * torch.sign(torch.diagonal(R))  # without the sign fix Q is not uniformly distributed


class Permutation(Flow):
    r"""A fixed permutation of the features: :math:`z_i = x_{\pi(i)}`.

    log-det: 0 (a permutation matrix has :math:`|\det| = 1`), O(1). Inverse: the inverse
    permutation. Between coupling layers it lets every feature be transformed eventually.

    ``perm`` is ``"random"`` (default, also ``None``; seeded by ``seed``), ``"reverse"``, or an
    explicit sequence of the indices ``0..D-1``.

    Example:
        >>> import torch
        >>> f = Permutation(3, "reverse")
        >>> z, log_det = f(torch.tensor([[1.0, 2.0, 3.0]]))
        >>> z.tolist(), log_det.tolist()
        ([[3.0, 2.0, 1.0]], [0.0])
    """

    def __init__(self, D: int, perm: Sequence[int] | Tensor | str | None = None, seed: int | None = None) -> None:
        super().__init__()
        self.event_shape = (D,)
        if perm is None:
            perm = "random"
        if isinstance(perm, str):
            if perm not in ("random", "reverse"):
                raise ValueError(f"perm must be 'random', 'reverse' or a sequence of indices, got {perm!r}")
            perm = torch.randperm(D, generator=generator(seed)) if perm == "random" else torch.arange(D - 1, -1, -1)
        perm = torch.as_tensor(perm, dtype=torch.long)
        if perm.shape != (D,) or not torch.equal(perm.sort().values, torch.arange(D)):
            raise ValueError(f"perm must be a permutation of 0..{D - 1}, got {perm.tolist()}")
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        return x[:, self.perm], zeros_log_det(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        return z[:, self.inv_perm], zeros_log_det(z)


class _LinearFlow(Flow):
    r"""The shared frame of :math:`z = W x + b`: subclasses say how to multiply and solve with :math:`W`.

    ``matvec``, ``solve`` and ``log_abs_det`` act without the bias on rows ``(N, D)``, so
    :class:`~dgm_course.flows.glow.InvConv1x1` reuses them at every pixel.
    """

    def __init__(self, D: int, bias: bool) -> None:
        super().__init__()
        self.event_shape = (D,)
        self.bias = nn.Parameter(torch.zeros(D)) if bias else None

    def weight(self) -> Tensor:
        """The assembled ``(D, D)`` matrix :math:`W` (for tests and plots; the flow never needs it)."""
        raise NotImplementedError

    def log_abs_det(self) -> Tensor:
        r""":math:`\log|\det W|` as a scalar."""
        raise NotImplementedError

    def matvec(self, x: Tensor) -> Tensor:
        """``W x`` for every row of ``x`` (shape ``(N, D)``)."""
        raise NotImplementedError

    def solve(self, y: Tensor) -> Tensor:
        r""":math:`W^{-1} y` for every row of ``y`` (shape ``(N, D)``)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        z = self.matvec(x)
        if self.bias is not None:
            z = z + self.bias
        return z, zeros_log_det(x) + self.log_abs_det()

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        if self.bias is not None:
            z = z - self.bias
        return self.solve(z), zeros_log_det(z) - self.log_abs_det()


class LULinear(_LinearFlow):
    r"""A linear flow with an LU-parametrized weight (Glow, section 3.2):

    .. math:: z = W x + b, \qquad W = P L U, \qquad
              U = \text{strict upper} + \operatorname{diag}(\sigma \odot e^{\log|s|})

    :math:`P` is a fixed permutation (buffer ``P``), :math:`L` unit lower triangular, :math:`U`
    upper triangular with diagonal :math:`s = \sigma \odot e^{\log|s|}`: the signs
    :math:`\sigma` are a fixed buffer, ``log_abs_s`` is learned, so :math:`W` stays invertible.

    log-det: :math:`\sum_i \log|s_i|`, O(D) (versus O(D^3) for a general :math:`W`).
    Inverse: :math:`x = U^{-1} L^{-1} P^\top (z - b)` by two triangular solves, O(D^2) per sample.

    Initialized from ``torch.linalg.lu`` of a random orthogonal matrix (as Glow does), so
    :math:`W` starts orthogonal: well conditioned, log-det 0.

    Example:
        >>> import torch
        >>> f = LULinear(4, seed=0)
        >>> x = torch.randn(2, 4)
        >>> z, log_det = f(x)
        >>> torch.allclose(f.inverse(z)[0], x, atol=1e-5), torch.allclose(log_det, torch.zeros(2), atol=1e-5)
        (True, True)
    """

    def __init__(self, D: int, bias: bool = True, seed: int | None = None) -> None:
        super().__init__(D, bias)
        P, L, U = torch.linalg.lu(random_orthogonal(D, seed))
        s = torch.diagonal(U)
        self.register_buffer("P", P)
        self.register_buffer("sign", torch.sign(s))
        self.lower = nn.Parameter(torch.tril(L, -1))
        self.upper = nn.Parameter(torch.triu(U, 1))
        self.log_abs_s = nn.Parameter(s.abs().log())

    def factors(self) -> tuple[Tensor, Tensor]:
        """The triangular factors ``(L, U)``; only their triangles of the parameters are used."""
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        L = torch.tril(self.lower, -1) + eye
        U = torch.triu(self.upper, 1) + torch.diag(self.sign * self.log_abs_s.exp())
        return L, U

    def weight(self) -> Tensor:
        L, U = self.factors()
        return self.P @ L @ U

    def log_abs_det(self) -> Tensor:
        return self.log_abs_s.sum()

    def matvec(self, x: Tensor) -> Tensor:
        L, U = self.factors()
        return x @ U.mT @ L.mT @ self.P.mT  # rows: (P L U x^T)^T

    def solve(self, y: Tensor) -> Tensor:
        L, U = self.factors()
        v = torch.linalg.solve_triangular(L, self.P.mT @ y.mT, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(U, v, upper=True).mT


class QRLinear(_LinearFlow):
    r"""A linear flow with a QR-parametrized weight:

    .. math:: z = W x + b, \qquad W = Q R, \qquad Q = H_1 \cdots H_K, \quad
              H_k = I - 2\,\hat v_k \hat v_k^\top, \quad \hat v_k = v_k / \|v_k\|

    :math:`Q` is a product of ``n_householder`` Householder reflections, hence orthogonal with
    :math:`|\det Q| = 1`; :math:`R` is upper triangular with a *positive* diagonal
    :math:`e^{\log r}`. Since :math:`\det H_k = -1`, :math:`\operatorname{sign}\det W = (-1)^K`
    is fixed; with :math:`K = D` (default) every orthogonal matrix of that sign is reachable.

    log-det: :math:`\sum_i \log r_i`, O(D). Inverse: :math:`x = R^{-1} Q^\top (z - b)`, the
    reflections in reverse order and one triangular solve, O(K D + D^2) per sample.

    Initialized with random reflections and :math:`R = I`, so :math:`W` starts orthogonal.

    Example:
        >>> import torch
        >>> f = QRLinear(3, seed=0)
        >>> Q, R = f.factors()
        >>> torch.allclose(Q @ Q.T, torch.eye(3), atol=1e-6)
        True
    """

    def __init__(self, D: int, n_householder: int | None = None, bias: bool = True, seed: int | None = None) -> None:
        super().__init__(D, bias)
        K = D if n_householder is None else n_householder
        if K < 1:
            raise ValueError(f"n_householder must be at least 1, got {K}")
        self.householder = nn.Parameter(torch.randn(K, D, generator=generator(seed)))
        self.upper = nn.Parameter(torch.zeros(D, D))
        self.log_r = nn.Parameter(torch.zeros(D))

    def _reflect(self, y: Tensor, transpose: bool) -> Tensor:
        r"""Rows :math:`Q y` (or :math:`Q^\top y`): the reflections from the right (or the left)."""
        v = F.normalize(self.householder, dim=-1)
        order = range(len(v)) if transpose else reversed(range(len(v)))
        for k in order:
            y = y - 2 * (y @ v[k]).unsqueeze(-1) * v[k]
        return y

    def _R(self) -> Tensor:
        return torch.triu(self.upper, 1) + torch.diag(self.log_r.exp())

    def factors(self) -> tuple[Tensor, Tensor]:
        """The assembled ``(Q, R)``."""
        eye = torch.eye(self.log_r.shape[0], dtype=self.log_r.dtype, device=self.log_r.device)
        return self._reflect(eye, transpose=False).mT, self._R()  # rows of Q I^T are the columns of Q

    def weight(self) -> Tensor:
        Q, R = self.factors()
        return Q @ R

    def log_abs_det(self) -> Tensor:
        return self.log_r.sum()

    def matvec(self, x: Tensor) -> Tensor:
        return self._reflect(x @ self._R().mT, transpose=False)

    def solve(self, y: Tensor) -> Tensor:
        return torch.linalg.solve_triangular(self._R(), self._reflect(y, transpose=True).mT, upper=True).mT


class DenseLinear(_LinearFlow):
    r"""The baseline linear flow with an unconstrained weight: :math:`z = W x + b`.

    log-det: ``torch.linalg.slogdet(W)``, O(D^3) per evaluation. Inverse: ``torch.linalg.solve``,
    O(D^3) + O(D^2) per sample. Nothing keeps :math:`W` invertible during training; the
    structured :class:`LULinear` and :class:`QRLinear` cost O(D) for the log-det instead.

    Initialized at a random orthogonal matrix (parameter ``w``).

    Example:
        >>> import torch
        >>> f = DenseLinear(3, seed=0)
        >>> z, log_det = f(torch.randn(2, 3))
        >>> log_det.abs().max().item() < 1e-5
        True
    """

    def __init__(self, D: int, bias: bool = True, seed: int | None = None) -> None:
        super().__init__(D, bias)
        self.w = nn.Parameter(random_orthogonal(D, seed))

    def weight(self) -> Tensor:
        return self.w

    def log_abs_det(self) -> Tensor:
        return torch.linalg.slogdet(self.w).logabsdet

    def matvec(self, x: Tensor) -> Tensor:
        return x @ self.w.mT

    def solve(self, y: Tensor) -> Tensor:
        return torch.linalg.solve(self.w, y.mT).mT
