"""Linear flows against dense linear algebra: the assembled W, slogdet and torch.linalg.solve.

The generic registry tests (test_all_flows.py) already compare every log-det with the autograd
Jacobian; here each structured parametrization is compared with the plain matrix it claims to be.
Tolerances: float64 with D <= 8 and condition numbers of a few hundred, so 1e-10 leaves a margin
of ~10^4 over round-off.
"""

import pytest
import torch

from dgm_course.flows import DenseLinear, LULinear, Permutation, QRLinear, random_orthogonal
from dgm_course.jacobian import assert_close, assert_matches_reference

from .cases_linear import make_linear

ATOL = 1e-10
STRUCTURED = [(LULinear, {}), (QRLinear, {}), (QRLinear, {"n_householder": 3}), (LULinear, {"bias": False})]
IDS = ["LU", "QR", "QR-K3", "LU-nobias"]


def _affine_reference(f, x):
    """z = x W^T + b with the assembled W (no structure used)."""
    z = x @ f.weight().mT
    return z if f.bias is None else z + f.bias


@pytest.mark.parametrize(("cls", "kw"), STRUCTURED, ids=IDS)
def test_log_det_equals_slogdet_of_assembled_weight(cls, kw, seed):
    f, x = make_linear(cls, 6, seed, **kw)
    W = f.weight()
    _, log_det = f(x)
    assert_close(log_det, torch.linalg.slogdet(W).logabsdet.expand(4), atol=ATOL, what="log-det vs slogdet(W)")


@pytest.mark.parametrize(("cls", "kw"), STRUCTURED + [(DenseLinear, {})], ids=IDS + ["Dense"])
def test_forward_and_inverse_match_dense_algebra(cls, kw, seed):
    f, x = make_linear(cls, 6, seed, **kw)
    W = f.weight()
    z, _ = f(x)
    assert_close(z, _affine_reference(f, x), atol=ATOL, what="z vs x W^T + b")
    b = 0 if f.bias is None else f.bias
    x_rec, _ = f.inverse(z)
    assert_close(x_rec, torch.linalg.solve(W, (z - b).mT).mT, atol=ATOL, what="inverse vs linalg.solve")
    assert_close(x_rec, x, atol=1e-9, what="round trip")


@pytest.mark.parametrize("K", [1, 2, 5])
def test_qr_factors_are_orthogonal_and_upper_triangular(K, seed):
    f, _ = make_linear(QRLinear, 5, seed, n_householder=K)
    Q, R = f.factors()
    eye = torch.eye(5, dtype=torch.float64)
    assert_close(Q @ Q.mT, eye, atol=ATOL, what="Q Q^T")
    assert_close(torch.linalg.det(Q), torch.tensor((-1.0) ** K, dtype=torch.float64), atol=ATOL, what="det Q")
    assert torch.equal(R, torch.triu(R)) and (torch.diagonal(R) > 0).all()
    assert_close(Q @ R, f.weight(), atol=ATOL, what="W = QR")


def test_lu_factors_have_the_claimed_structure(seed):
    f, _ = make_linear(LULinear, 6, seed)
    L, U = f.factors()
    assert torch.equal(L, torch.tril(L)) and torch.equal(torch.diagonal(L), torch.ones(6, dtype=torch.float64))
    assert torch.equal(U, torch.triu(U))
    P = f.P
    assert torch.equal(P.sum(0), torch.ones(6, dtype=P.dtype)) and torch.equal(P.sum(1), torch.ones(6, dtype=P.dtype))
    assert_close(P @ L @ U, f.weight(), atol=0, what="W = P L U")


def test_lu_init_reproduces_a_random_orthogonal_matrix(seed):
    Q = random_orthogonal(7, seed).double()
    f = LULinear(7, seed=seed).double()
    # the factors were computed in float32, so W equals Q up to float32 round-off
    assert_close(f.weight(), Q, atol=1e-5, what="LU init vs the random orthogonal matrix")
    assert_close(Q @ Q.mT, torch.eye(7, dtype=torch.float64), atol=1e-5, what="Q Q^T")
    assert abs(f.log_abs_det().item()) < 1e-5
    assert not torch.allclose(Q, random_orthogonal(7, seed + 1).double(), atol=0.1), "the seed must matter"


def test_dense_and_lu_agree_for_the_same_weight(seed):
    lu, x = make_linear(LULinear, 6, seed)
    dense = DenseLinear(6).double()
    with torch.no_grad():
        dense.w.copy_(lu.weight())
        dense.bias.copy_(lu.bias)
    for direction in ("forward", "inverse"):
        inp = x if direction == "forward" else lu(x)[0].detach()
        assert_matches_reference(lu, dense, inp, direction, atol=ATOL, rtol=0)


@pytest.mark.parametrize(("cls", "kw"), STRUCTURED, ids=IDS)
def test_structured_flows_never_use_dense_linear_algebra(cls, kw, monkeypatch):
    """The O(D) log-det and triangular-solve inverse: no slogdet, det, inverse or dense solve is called."""
    f, x = make_linear(cls, 5, 0, **kw)

    def forbidden(*args, **kwargs):
        raise AssertionError("a structured linear flow called an O(D^3) dense routine")

    for name in ("slogdet", "det", "inv", "solve", "lu", "lu_factor"):
        monkeypatch.setattr(torch.linalg, name, forbidden)
    z, _ = f(x)
    f.inverse(z)


def test_permutation_matches_an_explicit_index_map():
    f = Permutation(4, [2, 0, 3, 1])
    x = torch.tensor([[10.0, 11.0, 12.0, 13.0]])
    z, log_det = f(x)
    assert z.tolist() == [[12.0, 10.0, 13.0, 11.0]] and log_det.tolist() == [0.0]
    assert f.inverse(z)[0].tolist() == x.tolist()
    assert Permutation(3, "reverse")(torch.tensor([[1.0, 2.0, 3.0]]))[0].tolist() == [[3.0, 2.0, 1.0]]
    assert torch.equal(Permutation(6, seed=3).perm, Permutation(6, "random", seed=3).perm)
    assert sorted(Permutation(6).perm.tolist()) == list(range(6))


@pytest.mark.parametrize("perm", [[0, 0, 1], [0, 1], [0, 1, 3], "shuffle"])
def test_permutation_rejects_non_permutations(perm):
    with pytest.raises(ValueError, match="perm must be"):
        Permutation(3, perm)


@pytest.mark.parametrize("cls", [Permutation, LULinear, QRLinear, DenseLinear])
def test_bad_input_raises_value_error_naming_the_shape(cls):
    f = cls(4)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        f(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        f.inverse(torch.randn(2, 4, 1))
    with pytest.raises(ValueError, match="floating"):
        f(torch.ones(2, 4, dtype=torch.long))


def test_qr_needs_at_least_one_reflection():
    with pytest.raises(ValueError, match="n_householder"):
        QRLinear(3, n_householder=0)
