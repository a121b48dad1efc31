import pytest
import torch

from dgm_course.flows import Affine, Flow
from dgm_course.jacobian import (
    FlowCheckError,
    assert_close,
    assert_log_det_matches_jacobian,
    batch_jacobian,
    check_flow,
    jacobian_log_det,
)

D64 = torch.float64


def test_batch_jacobian_of_linear_map_is_the_matrix(seed):
    A = torch.randn(4, 4, dtype=D64)
    x = torch.randn(5, 4, dtype=D64)
    jac = batch_jacobian(lambda v: v @ A.T, x)
    assert jac.shape == (5, 4, 4)
    torch.testing.assert_close(jac, A.expand(5, 4, 4), atol=1e-12, rtol=0)
    torch.testing.assert_close(jacobian_log_det(lambda v: v @ A.T, x), torch.linalg.slogdet(A).logabsdet.expand(5))


def test_loop_fallback_equals_vmap():
    x = torch.randn(3, 3, dtype=D64)
    fn = lambda v: torch.tanh(v) * v.sum(dim=1, keepdim=True)  # noqa: E731
    torch.testing.assert_close(batch_jacobian(fn, x, vectorize=False), batch_jacobian(fn, x, vectorize=True))


def test_non_vmappable_map_falls_back_to_loop():
    def fn(v):
        if v.sum() > 1e9:  # data-dependent control flow: vmap cannot trace it
            return v
        return 2 * v

    x = torch.randn(3, 2, dtype=D64)
    torch.testing.assert_close(jacobian_log_det(fn, x), torch.full((3,), 2 * torch.log(torch.tensor(2.0, dtype=D64)).item(), dtype=D64))


class _Identity(Flow):
    """Self-consistent and wrong for any non-identity reference."""

    def forward(self, x):
        return x, x.new_zeros(x.shape[0])

    def inverse(self, z):
        return z, z.new_zeros(z.shape[0])


class _WrongLogDet(Flow):
    def forward(self, x):
        return 3 * x, x.new_zeros(x.shape[0])

    def inverse(self, z):
        return z / 3, z.new_zeros(z.shape[0])


def test_identity_passes_self_consistency_but_fails_against_reference():
    ref = Affine(2).double()
    with torch.no_grad():
        ref.log_scale.copy_(torch.tensor([0.3, -0.7]))
        ref.shift.copy_(torch.tensor([1.0, 2.0]))
    x = torch.randn(6, 2, dtype=D64)
    check_flow(_Identity(), x)  # consistent with itself: no reference, no failure
    with pytest.raises(FlowCheckError, match="reference"):
        check_flow(_Identity(), x, reference=ref)
    check_flow(ref, x, reference=ref)


def test_wrong_log_det_fails_with_sample_and_size():
    x = torch.randn(4, 2, dtype=D64)
    with pytest.raises(FlowCheckError, match=r"mismatch at sample \d+: got 0, expected 2\.19"):
        assert_log_det_matches_jacobian(_WrongLogDet(), x)


def test_scalar_log_det_is_rejected():
    class Scalar(Flow):
        def forward(self, x):
            return x, torch.zeros(())

    with pytest.raises(FlowCheckError, match=r"shape \(batch,\)"):
        assert_log_det_matches_jacobian(Scalar(), torch.randn(3, 2, dtype=D64))


def test_assert_close_reports_non_finite_and_shape():
    with pytest.raises(FlowCheckError, match="non-finite"):
        assert_close(torch.tensor([0.0, float("nan")]), torch.zeros(2), atol=1)
    with pytest.raises(FlowCheckError, match="shape"):
        assert_close(torch.zeros(3), torch.zeros(2), atol=1)


def test_log_det_of_large_jacobians_does_not_depend_on_threads():
    # the batched LU of the CPU build is wrong for large matrices with 2 threads (pytorch#142815)
    import numpy as np

    A = torch.randn(3, 200, 200, dtype=D64, generator=torch.Generator().manual_seed(0))
    ref = torch.tensor([np.linalg.slogdet(a.numpy())[1] for a in A], dtype=D64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        got = jacobian_log_det(lambda v: v @ A[0].T, torch.zeros(3, 200, dtype=D64))
    finally:
        torch.set_num_threads(threads)
    assert_close(got, ref[0].expand(3), atol=1e-9, what="log|det| of 200 x 200 Jacobians")
