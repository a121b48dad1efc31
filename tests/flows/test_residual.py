"""Residual flows: the planar constraint, exact numerical inversion, Sylvester's Q and R, references.

The generic checks (log-det vs autograd slogdet in both directions, round trip, Compose, float32)
run on the cases in cases_residual.py; this file checks what is specific to residual flows against
formulas written out independently here.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import brentq

from dgm_course.flows import HouseholderSylvester, OrthogonalSylvester, Planar, TriangularSylvester
from dgm_course.flows.residual import _bjorck, _solve_increasing
from dgm_course.jacobian import assert_close, batch_jacobian

D64 = torch.float64
EPS64 = torch.finfo(D64).eps


def _planar(D, u, w, b=0.0, dtype=D64):
    f = Planar(D).to(dtype)
    with torch.no_grad():
        f.u.copy_(torch.as_tensor(u, dtype=dtype))
        f.w.copy_(torch.as_tensor(w, dtype=dtype))
        f.b.fill_(b)
    return f


def _with_wu(g, D, wu, w_scale=1.0):
    """Random (u, w) with w^T u = wu exactly (up to round-off)."""
    w = w_scale * torch.randn(D, generator=g, dtype=D64)
    u = torch.randn(D, generator=g, dtype=D64)
    return u + (wu - w @ u) * w / (w @ w), w


def _sylvester_flows(seed, raw_scale=2.0):
    g = torch.Generator().manual_seed(seed)
    flows = [OrthogonalSylvester(5, 3), OrthogonalSylvester(4, 4), HouseholderSylvester(4, 3),
             TriangularSylvester(3), TriangularSylvester(4, reverse=True)]
    for f in flows:
        f.double()
        with torch.no_grad():
            for p in f.parameters():
                p.copy_(raw_scale * torch.randn(p.shape, generator=g, dtype=D64))
    return flows


# ---------------------------------------------------------------------------------------------
# Planar: the constraint w^T u_hat >= -1 and why it is needed


def test_u_hat_satisfies_the_constraint_for_many_unconstrained_parameters():
    g = torch.Generator().manual_seed(0)
    targets = [-1e3, -100.0, -40.0, -10.0, -2.0, -1.0, -0.5, 0.0, 0.5, 3.0, 50.0]
    n = 0
    for D in [1, 2, 5, 20]:
        for w_scale in [1e-3, 1.0, 1e3]:
            for wu in targets:
                u, w = _with_wu(g, D, wu, w_scale)
                f = _planar(D, u, w)
                with torch.no_grad():
                    u_hat = f.u_hat
                wu_hat = w @ u_hat
                # round-off: u_hat = u + s w / ||w||^2 rounds each entry at the scale |u_i| + |u_hat_i|
                # (u is huge when w is tiny), and the dot product of D terms adds D roundings of each
                tol = 4 * (D + 2) * EPS64 * (float(w.abs() @ (u.abs() + u_hat.abs())) + 1)
                assert wu_hat >= -1 - tol, (D, w_scale, wu, float(wu_hat))
                # w^T u_hat = m(w^T u) = -1 + softplus(w^T u) exactly: the ||w||^2 (not ||w||) normalization
                m = -1 + F.softplus(w @ u)
                assert abs(float(wu_hat - m)) <= tol, (D, w_scale, wu)
                # the correction is along w only: the part of u orthogonal to w is unchanged
                if D > 1:
                    perp = (u_hat - u) - ((u_hat - u) @ w) * w / (w @ w)
                    assert float(perp.abs().max()) <= 1e-9 * float((u_hat - u).abs().max() + 1)
                n += 1
    assert n == 4 * 3 * len(targets)


def test_naive_planar_with_broken_constraint_is_not_invertible_and_u_hat_fixes_it():
    # raw u with w^T u = -2 < -1, used as is: x = z + u tanh(w^T z)
    w = torch.tensor([1.0, 0.0], dtype=D64)
    u = torch.tensor([-2.0, 0.0], dtype=D64)

    def naive_g(z):
        return z + torch.tanh(z @ w)[:, None] * u

    # z_1 - 2 tanh(z_1) = 0 has the roots 0 and +-1.915...: three z with the same x
    root = brentq(lambda t: t - 2 * math.tanh(t), 1.0, 3.0, xtol=1e-15)
    z = torch.tensor([[0.0, 0.3], [root, 0.3]], dtype=D64)
    x = naive_g(z)
    assert float((z[0] - z[1]).abs().max()) > 1.9
    assert_close(x[1], x[0], atol=1e-14, what="two different z map to the same x")
    # and the determinant factor 1 + w^T u tanh'(w^T z) changes sign (it is -1 at z = 0)
    assert 1 + float(w @ u) * (1 - math.tanh(0.0) ** 2) == -1.0

    # the same raw parameters in Planar: w^T u_hat = -1 + softplus(-2) > -1, an invertible map
    f = _planar(2, u, w)
    assert float(w @ f.u_hat.detach()) == pytest.approx(-1 + math.log1p(math.exp(-2.0)), abs=1e-15)
    with torch.no_grad():
        x_fixed, log_det = f.inverse(z)
    assert float((x_fixed[0] - x_fixed[1]).abs().max()) > 0.1
    z_back, _ = f(x_fixed)
    assert_close(z_back, z, atol=1e-12, what="Planar round trip with raw w^T u = -2")
    assert torch.isfinite(log_det).all()


# ---------------------------------------------------------------------------------------------
# Planar: log-det and map against formulas written out here


def test_planar_log_det_matches_an_explicit_jacobian():
    g = torch.Generator().manual_seed(1)
    for D, wu in [(1, 0.3), (3, -4.0), (6, 2.0)]:
        u, w = _with_wu(g, D, wu)
        b = float(torch.randn((), generator=g, dtype=D64))
        f = _planar(D, u, w, b)
        # u_hat from the paper's appendix A.1, independently of the library
        u_hat = u + ((-1 + math.log1p(math.exp(float(w @ u)))) - w @ u) * w / (w @ w)
        z = 2 * torch.randn(7, D, generator=g, dtype=D64)
        h_prime = 1 - torch.tanh(z @ w + b) ** 2
        jac = torch.eye(D, dtype=D64) + h_prime[:, None, None] * torch.outer(u_hat, w)  # I + u_hat h' w^T
        x, log_det_g = f.inverse(z)
        assert_close(x, z + torch.tanh(z @ w + b)[:, None] * u_hat, atol=1e-13, what="planar x")
        assert_close(log_det_g, torch.linalg.slogdet(jac).logabsdet, atol=1e-12, what="planar inverse log-det")
        z_back, log_det_f = f(x.detach())
        assert_close(log_det_f, -torch.linalg.slogdet(jac).logabsdet, atol=1e-12, what="planar forward log-det")


# ---------------------------------------------------------------------------------------------
# The numerical forward: round-off residuals, also near saturation and near w^T u_hat = -1


@pytest.mark.parametrize("wu", [-100.0, -40.0, -20.0, -8.0, -1.0, 0.0, 5.0])
def test_planar_forward_residual_is_at_round_off(wu):
    g = torch.Generator().manual_seed(2)
    D, b = 3, 0.4
    u, w = _with_wu(g, D, wu, w_scale=2.0)
    f = _planar(D, u, w, b)
    z = torch.randn(300, D, generator=g, dtype=D64) * torch.logspace(-3, 1.5, 300, dtype=D64)[:, None]
    # the flat point w^T z + b = 0, where the slope 1 + w^T u_hat tanh' is smallest (0 for wu = -100)
    z[:20] -= ((z[:20] @ w + b) / (w @ w))[:, None] * w
    with torch.no_grad():
        x = f.inverse(z)[0]
        z_back = f(x)[0]
        residual = (f.inverse(z_back)[0] - x).abs().max()
    if wu <= -40:  # the boundary itself: w^T u_hat = -1 + softplus(wu) rounds to exactly -1
        assert -1 + F.softplus(torch.tensor(wu, dtype=D64)) == -1
    # |x| <= ~100 here; the residual is the round-off of z + u_hat tanh(.) (~1e-14), with margin
    assert float(residual) < 1e-12, float(residual)


def test_sylvester_forward_residual_is_at_round_off():
    for seed in range(2):
        for f in _sylvester_flows(seed, raw_scale=3.0):  # diagonal products down to about -0.99
            D = f.event_shape[0]
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(100, D, generator=g, dtype=D64) * torch.logspace(-3, 1.5, 100, dtype=D64)[:, None]
            with torch.no_grad():
                z = f(x)[0]
                residual = (f.inverse(z)[0] - x).abs().max()
            assert float(residual) < 1e-12, (type(f).__name__, seed, float(residual))


def test_forward_value_does_not_depend_on_grad_mode():
    f = _sylvester_flows(0)[0]
    p = _planar(2, [0.5, -1.0], [2.0, 1.0], 0.3)
    for flow in [f, p]:
        x = torch.randn(5, flow.event_shape[0], dtype=D64)
        with torch.no_grad():
            z0, ld0 = flow(x)
        z1, ld1 = flow(x.requires_grad_())
        assert torch.equal(z0, z1.detach()) and torch.equal(ld0, ld1.detach())


def test_solver_raises_rather_than_returning_garbage():
    y = torch.linspace(-3, 3, 7, dtype=D64)
    a = _solve_increasing(y, -0.9, 1.0, 0.2)
    assert_close(a + -0.9 * torch.tanh(a + 0.2), y, atol=1e-14, what="scalar solve")
    with pytest.raises(RuntimeError, match="did not converge"):
        _solve_increasing(y, -0.9, 1.0, 0.2, max_iter=1)
    with pytest.raises(RuntimeError, match="non-finite"):
        _planar(2, [0.5, -1.0], [2.0, 1.0])(torch.tensor([[float("nan"), 0.0]], dtype=D64))


# ---------------------------------------------------------------------------------------------
# Gradients through the numerical forward


def _params_and_fn(flow):
    names = [n for n, _ in flow.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in flow.parameters())

    def fn(x, *ps):
        return torch.func.functional_call(flow, dict(zip(names, ps)), (x,))

    return params, fn


def _small_sylvester(flow, seed=0):
    g = torch.Generator().manual_seed(seed)
    flow.double()
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=D64))
    return flow


@pytest.mark.parametrize("make", [
    lambda: _planar(3, [0.5, -2.0, 1.0], [1.5, 1.0, -0.5], 0.3),  # w^T u = -1.75: u_hat is active
    lambda: _small_sylvester(OrthogonalSylvester(3, 2)),
    lambda: _small_sylvester(HouseholderSylvester(3, 2)),
    lambda: _small_sylvester(TriangularSylvester(3, reverse=True)),
], ids=["planar", "orthogonal", "householder", "triangular"])
def test_forward_gradients_match_finite_differences(make):
    flow = make()
    params, fn = _params_and_fn(flow)
    x = torch.randn(3, flow.event_shape[0], dtype=D64, generator=torch.Generator().manual_seed(3)).requires_grad_()
    # the solve is exact to ~1e-16, so central differences with step 1e-6 are accurate to ~1e-9;
    # fast mode compares a random projection of the Jacobian w.r.t. x and every parameter at once
    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


def test_forward_jacobian_is_the_inverse_of_the_closed_form_jacobian():
    flows = [_planar(3, [0.5, -2.0, 1.0], [1.5, 1.0, -0.5], 0.3), *_sylvester_flows(1)[1:4]]
    for f in flows:
        x = 2 * torch.randn(3, f.event_shape[0], dtype=D64, generator=torch.Generator().manual_seed(4))
        z = f(x)[0].detach()
        J_f = batch_jacobian(lambda v: f(v)[0], x)
        J_g = batch_jacobian(lambda v: f.inverse(v)[0], z)
        eye = torch.eye(x.shape[1], dtype=D64).expand_as(J_f)
        assert_close(J_f @ J_g, eye, atol=1e-10, what=f"{type(f).__name__}: J_f(x) J_g(f(x)) = I")


# ---------------------------------------------------------------------------------------------
# Sylvester: Q orthonormal, R triangular with the diagonal constraint, log-det reference


def test_q_has_orthonormal_columns():
    g = torch.Generator().manual_seed(5)
    for f in _sylvester_flows(5) + [OrthogonalSylvester(24, 24).double(), OrthogonalSylvester(24, 8).double()]:
        Q = f.Q
        M = Q.shape[1]
        # float64 round-off of Q^T Q with up to 24-term sums is ~1e-14
        assert_close(Q.T @ Q, torch.eye(M, dtype=D64), atol=1e-12, what=f"{type(f).__name__} Q^T Q")
    # Björck from an ill-conditioned start (one column 1e-6 times the others) still converges
    A = torch.randn(6, 4, generator=g, dtype=D64)
    A[:, 0] *= 1e-6
    Q = _bjorck(A)
    assert_close(Q.T @ Q, torch.eye(4, dtype=D64), atol=1e-12, what="Björck, ill-conditioned start")
    U, _, Vh = torch.linalg.svd(A, full_matrices=False)
    assert_close(Q, U @ Vh, atol=1e-10, what="Björck converges to the polar factor")
    # Rank deficient beyond round-off: a zero column stays exactly zero under every step. (Two equal
    # columns are not enough: on some CPUs round-off splits them and the iteration converges.)
    A[:, 1] = 0.0
    with pytest.raises(RuntimeError, match="rank deficient"):
        _bjorck(A)
    assert torch.equal(TriangularSylvester(3, reverse=True).Q, torch.eye(3).flip(1))


def test_sylvester_r_is_upper_triangular_with_the_diagonal_constraint():
    for f in _sylvester_flows(6, raw_scale=8.0):  # |raw| up to ~20: tanh of the diagonal near +-1
        for R in (f.R1, f.R2):
            assert torch.equal(R, torch.triu(R))
        d = torch.diagonal(f.R1) * torch.diagonal(f.R2)
        raw_d = torch.diagonal(f.r1_raw).abs().max(torch.diagonal(f.r2_raw).abs())
        assert (d >= -1).all()
        # strict where tanh has not rounded to +-1 (|raw| < 19 in float64)
        assert (d[raw_d < 19] > -1).all()
        h_prime = torch.rand(100, 1, dtype=D64, generator=torch.Generator().manual_seed(6))
        assert (1 + d[raw_d < 19] * h_prime > 0).all()


def test_sylvester_log_det_matches_an_explicit_jacobian():
    for f in _sylvester_flows(7):
        D = f.event_shape[0]
        z = 2 * torch.randn(6, D, dtype=D64, generator=torch.Generator().manual_seed(7))
        Q, R1, R2, b = f.Q, f.R1, f.R2, f.b
        t = z @ Q @ R2.T + b
        x_ref = z + torch.tanh(t) @ R1.T @ Q.T
        h_prime = 1 - torch.tanh(t) ** 2
        # dg/dz = I + Q R1 diag(h') R2 Q^T, a dense D x D matrix
        jac = torch.eye(D, dtype=D64) + Q @ (R1 * h_prime[:, None, :]) @ R2 @ Q.T
        x, log_det = f.inverse(z)
        assert_close(x, x_ref, atol=1e-13, what=f"{type(f).__name__} x")
        assert_close(log_det, torch.linalg.slogdet(jac).logabsdet, atol=1e-12, what=f"{type(f).__name__} log-det")


# ---------------------------------------------------------------------------------------------
# float32 at extreme pre-activations; input validation


def test_float32_stays_finite_for_huge_pre_activations():
    g = torch.Generator().manual_seed(8)
    w = 1e3 * torch.randn(4, generator=g)
    u = torch.randn(4, generator=g)
    f = _planar(4, u, w, 5.0, dtype=torch.float32)
    x = 10 * torch.randn(16, 4, generator=g)
    assert float((x @ w).abs().max()) > 1e4  # pre-activations well beyond 1e4
    z, ld_f = f(x)
    x_back, ld_g = f.inverse(z)
    for t in (z, ld_f, x_back, ld_g):
        assert torch.isfinite(t).all()
    # float32 round-off relative to |x| ~ 30 (and |u_hat| ~ 1): 1e-5 is ~100 ulps of margin
    assert_close(x_back, x, atol=1e-5 * float(x.abs().max()), what="float32 planar round trip")
    for flow in _sylvester_flows(8, raw_scale=30.0):  # tanh saturates everywhere
        flow = flow.float()
        x = 1e4 * torch.randn(8, flow.event_shape[0], generator=g)
        z, ld_f = flow(x)
        x_back, ld_g = flow.inverse(z)
        for t in (z, ld_f, x_back, ld_g):
            assert torch.isfinite(t).all(), type(flow).__name__


@pytest.mark.parametrize(
    "flow", [Planar(3), OrthogonalSylvester(3, 2), HouseholderSylvester(3), TriangularSylvester(3)],
    ids=lambda f: type(f).__name__,
)
def test_bad_input_raises_value_error_naming_the_shape(flow):
    for direction in (flow.forward, flow.inverse):
        for bad in (torch.zeros(2, 4), torch.zeros(3), torch.zeros(2, 3, 1)):
            with pytest.raises(ValueError, match=r"\(batch, 3\)"):
                direction(bad)
        with pytest.raises(ValueError, match="floating"):
            direction(torch.zeros(2, 3, dtype=torch.int64))


def test_bad_sizes_raise_value_error():
    with pytest.raises(ValueError, match="positive"):
        Planar(0)
    with pytest.raises(ValueError, match="M <= D"):
        OrthogonalSylvester(3, 4)
    with pytest.raises(ValueError, match="positive"):
        HouseholderSylvester(3, 0)


def test_planar_with_zero_w_is_a_shift_with_zero_log_det():
    f = _planar(3, [0.5, -2.0, 1.0], [0.0, 0.0, 0.0], 0.7)
    z = torch.randn(4, 3, dtype=D64, generator=torch.Generator().manual_seed(9))
    x, log_det_g = f.inverse(z)
    assert_close(x, z + math.tanh(0.7) * torch.tensor([0.5, -2.0, 1.0], dtype=D64), atol=1e-15, what="shift")
    assert_close(log_det_g, torch.zeros(4, dtype=D64), atol=0, what="log-det of a shift")
    z_back, log_det_f = f(x)
    assert_close(z_back, z, atol=1e-15, what="inverse shift")
    log_det_f.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in f.parameters())
