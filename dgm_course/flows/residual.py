r"""Residual flows (lecture: "Residual flows"): the generator is the identity plus a small correction.

.. math:: x = g(z) = z + u\, h(w^\top z + b) \quad\text{(planar)}, \qquad
          x = g(z) = z + Q R_1\, h(R_2 Q^\top z + b) \quad\text{(Sylvester)}

with :math:`h = \tanh`. The correction has low rank, so the determinant lemma (planar) and
Sylvester's identity :math:`\det(I_D + AB) = \det(I_M + BA)` turn the D x D log-det into O(D)
or O(M) work. The generative direction ``inverse(z)`` (:math:`g`) is the closed form. The
normalizing direction ``forward(x)`` (:math:`f = g^{-1}`) has no closed form, but it reduces to
scalar equations that are monotone in the unknown, and these are solved to float64 round-off by
a bracketed Newton method (:func:`_solve_increasing`), never approximately: a failure raises
``RuntimeError``.

Gradients through ``forward``: the solve runs without autograd, then the converged solution
``a`` gets the gradient of one Newton step, ``a - (s - s.detach())`` with
:math:`s = J^{-1}\varphi(a)` the Newton step of the equations :math:`\varphi(a) = 0`. Its value is
``a`` unchanged (so results do not depend on whether grad is enabled), and its derivative is the
implicit-function theorem's :math:`-J^{-1}\,\partial\varphi/\partial\theta`, because
:math:`\varphi(a)` vanishes at the solution.

References: Rezende & Mohamed, *Variational inference with normalizing flows* (2015), appendix
A.1 (planar); van den Berg, Hasenclever, Tomczak & Welling, *Sylvester normalizing flows for
variational inference* (UAI 2018).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Flow

__all__ = ["Planar", "OrthogonalSylvester", "HouseholderSylvester", "TriangularSylvester"]

_MAX_NEWTON_ITER = 200  # bisection alone needs about 60 halvings from a bracket of width 2|p| to round-off
_MAX_BJORCK_ITER = 100


def _dtanh(th: Tensor) -> Tensor:
    """tanh'(t) = 1 - tanh(t)^2 from th = tanh(t): exactly 0 (never NaN) once tanh saturates."""
    return 1 - th * th


def _solve_increasing(y: Tensor, p, q, c, max_iter: int = _MAX_NEWTON_ITER) -> Tensor:
    r"""Solve :math:`a + p \tanh(q a + c) = y` for :math:`a`, elementwise (all arguments broadcast).

    Needs :math:`pq \ge -1`: then the slope :math:`1 + pq \tanh'(qa + c)` is positive except at
    most at one point, so the left side is strictly increasing and the root is unique. As
    :math:`|\tanh| \le 1`, the root lies in the bracket :math:`[y - |p|, y + |p|]`. Newton steps
    are taken while they stay inside the bracket and are at most half the step before last;
    otherwise the bracket is bisected (the safeguard of ``rtsafe``, *Numerical Recipes* 9.4).
    Stops when the Newton step or the bracket is at round-off, :math:`4\varepsilon(|y| + |p|)`.

    Raises ``RuntimeError`` on non-finite data or if ``max_iter`` iterations do not converge.
    Runs without autograd; call it in float64.
    """
    y, p, q, c = torch.broadcast_tensors(y, *(torch.as_tensor(v, dtype=y.dtype, device=y.device) for v in (p, q, c)))
    if not (y.isfinite() & p.isfinite() & q.isfinite() & c.isfinite()).all():
        raise RuntimeError("residual flow inversion: the equations have non-finite inputs or parameters")
    lo, hi = y - p.abs(), y + p.abs()
    tol = 4 * torch.finfo(y.dtype).eps * (y.abs() + p.abs())
    a = y.clone()  # the middle of the bracket
    last_step = step_before = torch.full_like(y, math.inf)
    active = hi - lo > tol
    for _ in range(max_iter):
        if not active.any():
            return a
        th = torch.tanh(q * a + c)
        phi = a + p * th - y
        lo = torch.where(phi < 0, a, lo)
        hi = torch.where(phi > 0, a, hi)
        newton = torch.where(phi == 0, 0.0, -phi / (1 + p * q * _dtanh(th)))  # the slope may be 0 where pq = -1
        done = newton.abs() <= tol
        trust = done | ((a + newton >= lo - tol) & (a + newton <= hi + tol) & (newton.abs() <= 0.5 * step_before))
        step = torch.where(trust, newton, 0.5 * (lo + hi) - a)
        a = torch.where(active, a + step, a)
        last_step, step_before = step.abs(), last_step
        active = active & ~done & ~(hi - lo <= tol)  # written so that NaN keeps a sample active
    if active.any():
        raise RuntimeError(
            f"residual flow inversion: bracketed Newton did not converge in {max_iter} iterations "
            f"for {int(active.sum())} of {active.numel()} equations"
        )
    return a


def _with_implicit_grad(a: Tensor, newton_step: Tensor) -> Tensor:
    """``a`` in value, with the gradient of the Newton iterate ``a - newton_step`` (see the module doc)."""
    return a - (newton_step - newton_step.detach())


def _planar_u_hat(u: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`\hat u = u + (m(w^\top u) - w^\top u)\, w / \|w\|^2` and :math:`w^\top\hat u = m(w^\top u)`.

    :math:`m(a) = -1 + \operatorname{softplus}(a) > -1`. The scalar :math:`w^\top\hat u` is
    returned from the formula rather than a dot product, so it is :math:`\ge -1` in floating
    point too. At ``w = 0`` there is nothing to fix (:math:`g` is a shift): :math:`\hat u = u`
    and :math:`w^\top\hat u = 0`, so a zero-initialized ``w`` gives log-det 0.
    """
    wu = w @ u
    norm2 = w @ w
    # tiny (the smallest normal float) also keeps the division finite, so gradients stay finite at w = 0
    fixable = norm2 >= torch.finfo(w.dtype).tiny
    m = torch.where(fixable, -1 + F.softplus(wu), wu)
    return u + (m - wu) / norm2.clamp_min(torch.finfo(w.dtype).tiny) * w, m


class Planar(Flow):
    r"""Planar flow (Rezende & Mohamed 2015): :math:`x = g(z) = z + \hat u \tanh(w^\top z + b)`.

    Parameters ``u``, ``w`` (shape ``(D,)``) and ``b`` (scalar) are unconstrained. :math:`g` is
    invertible iff :math:`w^\top\hat u \ge -1`, which :attr:`u_hat` enforces (appendix A.1):

    .. math:: \hat u = u + \big(m(w^\top u) - w^\top u\big)\frac{w}{\|w\|^2}, \qquad
              m(a) = -1 + \operatorname{softplus}(a),

    so that :math:`w^\top\hat u = m(w^\top u) > -1`. (Dividing by :math:`\|w\|` instead of
    :math:`\|w\|^2`, as some public code does, breaks the constraint.) In floating point
    :math:`m` rounds to exactly -1 below :math:`w^\top u \approx -37` (float64): :math:`g` stays
    invertible, but its log-det is -inf where :math:`w^\top z + b = 0`.

    log-det (matrix determinant lemma), O(D):

    .. math:: \log|\det \partial g/\partial z| = \log|1 + w^\top\hat u\, \tanh'(w^\top z + b)|

    ``forward(x)`` (:math:`f = g^{-1}`) has no closed form. With :math:`\alpha = w^\top z`,
    :math:`w^\top x = \alpha + w^\top\hat u \tanh(\alpha + b)` is strictly increasing in
    :math:`\alpha` and :math:`|\alpha - w^\top x| \le |w^\top\hat u|`: one scalar equation per
    sample, solved to float64 round-off by bracketed Newton. Then
    :math:`z = x - \hat u \tanh(\alpha + b)` and :math:`\log|\det \partial f/\partial x| =
    -\log|1 + w^\top\hat u \tanh'(\alpha + b)|`. Differentiable in ``x`` and the parameters
    (implicit-function gradient, see the module doc).

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> g = Planar(2).double()
        >>> z = torch.randn(4, 2, dtype=torch.float64)
        >>> x, log_det_g = g.inverse(z)           # closed form
        >>> z_back, log_det_f = g(x)              # bracketed Newton
        >>> torch.allclose(z_back, z, atol=1e-12), torch.allclose(log_det_f, -log_det_g, atol=1e-12)
        (True, True)
        >>> bool(g.w @ g.u_hat >= -1)
        True
    """

    def __init__(self, D: int) -> None:
        super().__init__()
        if D < 1:
            raise ValueError(f"D must be a positive integer, got {D}")
        self.event_shape = (D,)
        # small: the flow starts close to the identity, so deep stacks start well conditioned
        self.u = nn.Parameter(0.1 * torch.randn(D))
        self.w = nn.Parameter(0.1 * torch.randn(D))
        self.b = nn.Parameter(torch.zeros(()))

    @property
    def u_hat(self) -> Tensor:
        r"""The constrained :math:`\hat u`, with :math:`w^\top\hat u = -1 + \operatorname{softplus}(w^\top u) > -1`."""
        return _planar_u_hat(self.u, self.w)[0]

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        u_hat, wu_hat = _planar_u_hat(self.u, self.w)
        th = torch.tanh(z @ self.w + self.b)
        x = z + th[:, None] * u_hat
        return x, torch.log1p(wu_hat * _dtanh(th))  # 1 + w^T u_hat tanh' > 0: no abs needed

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        u_hat, wu_hat = _planar_u_hat(self.u, self.w)
        wx = x @ self.w
        with torch.no_grad():
            alpha = _solve_increasing(wx.double(), wu_hat.double(), 1.0, self.b.double()).to(x.dtype)
        if torch.is_grad_enabled():
            th = torch.tanh(alpha + self.b)
            phi = alpha + wu_hat * th - wx
            alpha = _with_implicit_grad(alpha, phi / (1 + wu_hat * _dtanh(th)))
        th = torch.tanh(alpha + self.b)
        z = x - th[:, None] * u_hat
        return z, -torch.log1p(wu_hat * _dtanh(th))


def _upper_triangular(raw: Tensor) -> Tensor:
    """The strict upper triangle of ``raw`` with ``tanh`` of its diagonal on the diagonal."""
    return torch.triu(raw, 1) + torch.diag_embed(torch.tanh(torch.diagonal(raw)))


def _bjorck(A: Tensor, max_iter: int = _MAX_BJORCK_ITER) -> Tensor:
    r"""Orthonormal columns from ``A`` (D x M, M <= D): :math:`Q_{k+1} = Q_k (I + (I - Q_k^\top Q_k)/2)`.

    Starts from :math:`Q_0 = A / \|A\|_F`: the Frobenius norm bounds the spectral norm, so all
    singular values lie in (0, 1], inside the iteration's basin (0, sqrt(3)). Small singular values
    grow by about 1.5x per step, then convergence is quadratic. Iterates until
    :math:`\|Q^\top Q - I\|_F` is at round-off; raises ``RuntimeError`` if ``A`` is (numerically)
    rank deficient. Differentiable (autograd runs through the iterations).
    """
    Q = A / torch.linalg.matrix_norm(A)
    eye = torch.eye(A.shape[1], dtype=A.dtype, device=A.device)
    round_off = 4 * A.shape[1] * math.sqrt(A.shape[0]) * torch.finfo(A.dtype).eps
    err_before = math.inf
    for _ in range(max_iter):
        E = Q.T @ Q - eye
        err = float(torch.linalg.matrix_norm(E.detach()))
        # in the quadratic phase each step squares the error; when it stops halving, round-off rules
        if err <= round_off or (err < 1e-6 and err > 0.5 * err_before):
            return Q
        Q = Q - 0.5 * Q @ E
        err_before = err
    raise RuntimeError(
        f"Björck orthogonalization did not converge in {max_iter} iterations (||Q^T Q - I|| = {err:.3g}); "
        "the raw matrix is numerically rank deficient"
    )


def _back_substitute(y: Tensor, R1: Tensor, R2: Tensor, b: Tensor) -> Tensor:
    r"""Solve :math:`y = a + R_1 \tanh(R_2 a + b)` for ``a`` (batch, M), last coordinate first.

    Row i reads :math:`y_i - \sum_{j>i} R_{1,ij} h_j = a_i + R_{1,ii} \tanh(R_{2,ii} a_i + c_i)`
    with :math:`c_i = \sum_{k>i} R_{2,ik} a_k + b_i` and :math:`h_j = \tanh((R_2 a + b)_j)`, which
    involve only the coordinates already solved: a scalar monotone equation. O(M^2) plus M solves.
    """
    a, h = torch.zeros_like(y), torch.zeros_like(y)
    for i in reversed(range(y.shape[1])):
        c = a[:, i + 1:] @ R2[i, i + 1:] + b[i]
        rhs = y[:, i] - h[:, i + 1:] @ R1[i, i + 1:]
        a[:, i] = _solve_increasing(rhs, R1[i, i], R2[i, i], c)
        h[:, i] = torch.tanh(R2[i, i] * a[:, i] + c)
    return a


class _Sylvester(Flow):
    r"""Sylvester flow :math:`x = g(z) = z + Q R_1 \tanh(R_2 Q^\top z + b)` (van den Berg et al. 2018).

    :math:`Q` (D x M) has orthonormal columns (how it is built is the subclass's business),
    :math:`R_1, R_2` are M x M upper triangular, :math:`b \in R^M`.

    Invertibility: the diagonals are :math:`R_{1,ii} = \tanh(\cdot)`, :math:`R_{2,ii} = \tanh(\cdot)`,
    so :math:`|R_{1,ii} R_{2,ii}| < 1`, and :math:`0 < \tanh' \le 1`; hence
    :math:`1 + R_{1,ii} R_{2,ii} \tanh'(\cdot) > 0` everywhere. The paper's condition is
    :math:`R_{1,ii} R_{2,ii} > -1/\|h'\|_\infty = -1`. Writing :math:`z = Q a + z_\perp`,
    :math:`g` keeps :math:`z_\perp` and maps :math:`a \mapsto a + R_1 \tanh(R_2 a + b)`, whose
    Jacobian :math:`I + R_1 \operatorname{diag}(\tanh') R_2` is upper triangular with that positive
    diagonal: every row of the back-substitution below is strictly increasing, so :math:`g` is a
    bijection. (In floating point ``tanh`` rounds to exactly +-1 beyond about 19 in float64, 10 in
    float32: a product of exactly -1 keeps :math:`g` monotone but makes the log-det -inf where
    :math:`\tanh' = 1`.)

    log-det (Sylvester's identity, :math:`Q^\top Q = I`), O(M) after the matrix products:

    .. math:: \log|\det \partial g/\partial z| = \sum_i \log|1 + R_{1,ii} R_{2,ii}
              \tanh'((R_2 Q^\top z + b)_i)|

    ``forward(x)``: :math:`x_\perp = z_\perp`, and :math:`y = Q^\top x = a + R_1 \tanh(R_2 a + b)`
    is solved for :math:`a` by back-substitution from the last coordinate to the first, each row a
    scalar monotone equation solved to round-off by the planar flow's bracketed Newton; then
    :math:`z = x - Q R_1 \tanh(R_2 a + b)`. Differentiable (implicit-function gradient of the full
    triangular system, see the module doc). Cost: M scalar solves, O(M^2) per sample.

    The authors' code (riannevdberg/sylvester-flows) targets pytorch 0.3 and python 2.7 and does
    not run on current torch; pyro ships only the Householder variant.
    """

    def __init__(self, D: int, M: int) -> None:
        super().__init__()
        if not 1 <= M <= D:
            raise ValueError(f"need 1 <= M <= D, got D={D}, M={M}")
        self.event_shape = (D,)
        self.r1_raw = nn.Parameter(0.1 * torch.randn(M, M))
        self.r2_raw = nn.Parameter(0.1 * torch.randn(M, M))
        self.b = nn.Parameter(torch.zeros(M))

    @property
    def Q(self) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def R1(self) -> Tensor:
        return _upper_triangular(self.r1_raw)

    @property
    def R2(self) -> Tensor:
        return _upper_triangular(self.r2_raw)

    def _log_det_g(self, th: Tensor, R1: Tensor, R2: Tensor) -> Tensor:
        diag = torch.diagonal(R1) * torch.diagonal(R2)
        return torch.log1p(diag * _dtanh(th)).sum(dim=1)  # each factor is > 0: no abs needed

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        Q, R1, R2 = self.Q, self.R1, self.R2
        th = torch.tanh((z @ Q) @ R2.T + self.b)
        x = z + (th @ R1.T) @ Q.T
        return x, self._log_det_g(th, R1, R2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        Q, R1, R2 = self.Q, self.R1, self.R2
        y = x @ Q
        with torch.no_grad():
            a = _back_substitute(y.double(), R1.double(), R2.double(), self.b.double()).to(x.dtype)
        if torch.is_grad_enabled():
            th = torch.tanh(a @ R2.T + self.b)
            phi = a + th @ R1.T - y
            jac = torch.eye(R1.shape[0], dtype=x.dtype, device=x.device) + (R1 * _dtanh(th)[:, None, :]) @ R2
            step = torch.linalg.solve_triangular(jac, phi[:, :, None], upper=True)[:, :, 0]
            a = _with_implicit_grad(a, step)
        th = torch.tanh(a @ R2.T + self.b)
        z = x - (th @ R1.T) @ Q.T
        return z, -self._log_det_g(th, R1, R2)


def _common_sylvester_doc(cls: type) -> type:
    """Put the formulas shared by every Sylvester flow before the class's example (for ``help``)."""
    common = "    " + _Sylvester.__doc__.strip() + "\n\n"
    cls.__doc__ = cls.__doc__.replace("    Example:", common + "    Example:")
    return cls


@_common_sylvester_doc
class OrthogonalSylvester(_Sylvester):
    r"""O-SNF: a Sylvester flow with a D x M matrix Q of orthonormal columns, M <= D (a bottleneck).

    Q comes from an unconstrained D x M parameter by the paper's iterative (Björck)
    orthogonalization, run to round-off (the paper stops at 1e-5 to 1e-6).

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> g = OrthogonalSylvester(4, 2).double()
        >>> torch.allclose(g.Q.T @ g.Q, torch.eye(2, dtype=torch.float64), atol=1e-12)
        True
        >>> z = torch.randn(3, 4, dtype=torch.float64)
        >>> x, log_det_g = g.inverse(z)
        >>> z_back, log_det_f = g(x)
        >>> torch.allclose(z_back, z, atol=1e-12), torch.allclose(log_det_f, -log_det_g, atol=1e-12)
        (True, True)
    """

    def __init__(self, D: int, M: int) -> None:
        super().__init__(D, M)
        self.q_raw = nn.Parameter(torch.randn(D, M))

    @property
    def Q(self) -> Tensor:
        return _bjorck(self.q_raw)


@_common_sylvester_doc
class HouseholderSylvester(_Sylvester):
    r"""H-SNF: a Sylvester flow with M = D and Q a product of Householder reflections.

    :math:`Q = H_1 \cdots H_K`, :math:`H_k = I - 2 v_k v_k^\top / \|v_k\|^2`: orthogonal by
    construction. ``num_reflections`` defaults to D.

    Example:
        >>> import torch
        >>> g = HouseholderSylvester(3, num_reflections=2)
        >>> z = torch.randn(5, 3)
        >>> x, log_det = g.inverse(z)
        >>> x.shape, log_det.shape
        (torch.Size([5, 3]), torch.Size([5]))
    """

    def __init__(self, D: int, num_reflections: int | None = None) -> None:
        super().__init__(D, D)
        K = D if num_reflections is None else num_reflections
        if K < 1:
            raise ValueError(f"num_reflections must be positive, got {K}")
        self.v = nn.Parameter(torch.randn(K, D))

    @property
    def Q(self) -> Tensor:
        Q = torch.eye(self.v.shape[1], dtype=self.v.dtype, device=self.v.device)
        for v in self.v:
            Q = Q - (2 / (v @ v)) * torch.outer(Q @ v, v)  # Q H_k without forming H_k
        return Q


@_common_sylvester_doc
class TriangularSylvester(_Sylvester):
    r"""T-SNF: a Sylvester flow with M = D and Q a fixed permutation: the identity or the reversal.

    Alternate ``reverse=False`` and ``reverse=True`` in a stack so that the triangular
    dependencies run both ways, as in the paper.

    Example:
        >>> import torch
        >>> g = TriangularSylvester(3, reverse=True)
        >>> g.Q.tolist()
        [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """

    def __init__(self, D: int, reverse: bool = False) -> None:
        super().__init__(D, D)
        self.reverse = reverse
        eye = torch.eye(D)
        self.register_buffer("_perm", eye.flip(1) if reverse else eye)

    @property
    def Q(self) -> Tensor:
        return self._perm
