"""The flow API itself: input validation, the flow model's formulas, dtype and device."""

import math

import pytest
import torch

from dgm_course.flows import Affine, Compose, Flow, FlowModel, Logit, Sigmoid, StandardNormal, check_input
from dgm_course.jacobian import assert_close, jacobian_log_det

D64 = torch.float64


def _affine(seed=0, d=2):
    g = torch.Generator().manual_seed(seed)
    f = Affine(d).double()
    with torch.no_grad():
        f.log_scale.copy_(torch.randn(d, generator=g, dtype=D64))
        f.shift.copy_(torch.randn(d, generator=g, dtype=D64))
    return f


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.zeros(4, 3), r"shape \(batch, 2\), got \(4, 3\)"),
        (torch.zeros(2), r"shape \(batch, 2\), got \(2,\) \(rank 1\)"),
        (torch.zeros(4, 2, 1), r"rank 3"),
        (torch.zeros(4, 2, dtype=torch.long), "floating"),
        (torch.zeros(4, 2, dtype=torch.bool), "floating"),
        ([[0.0, 0.0]], "torch.Tensor"),
    ],
)
def test_bad_input_raises_value_error_naming_the_shape(x, message):
    f = Affine(2)
    for call in (f.forward, f.inverse, Compose([f]).forward, FlowModel(StandardNormal((2,)), f).log_prob):
        with pytest.raises(ValueError, match=message):
            call(x)


def test_free_axes_accept_any_size():
    check_input(torch.zeros(3, 1, 5, 7), (1, None, None))
    with pytest.raises(ValueError, match=r"\(batch, 1, \*, \*\)"):
        check_input(torch.zeros(3, 2, 5, 7), (1, None, None))


def test_log_prob_is_the_change_of_variables_formula():
    flow = Compose([_affine(0), Sigmoid(), Logit(0.1)]).double()
    model = FlowModel(StandardNormal((2,)), flow).double()
    x = torch.randn(7, 2, dtype=D64)
    z = flow(x)[0]
    expected = (-0.5 * z.pow(2).sum(1) - math.log(2 * math.pi)) + jacobian_log_det(lambda v: flow(v)[0], x)
    assert_close(model.log_prob(x), expected, atol=1e-10, what="log p(x)")


def test_standard_normal_matches_torch_distributions():
    base = StandardNormal((3,)).double()
    z = torch.randn(5, 3, dtype=D64)
    ref = torch.distributions.Normal(torch.zeros(3, dtype=D64), 1.0).log_prob(z).sum(1)
    assert_close(base.log_prob(z), ref, atol=1e-12, what="log N(z; 0, I)")
    assert base.sample(4).dtype == D64 and base.sample(4).shape == (4, 3)


def test_sample_with_log_prob_agrees_with_log_prob():
    model = FlowModel(StandardNormal((2,)), Compose([_affine(1), _affine(2)])).double()
    x, log_q = model.sample_with_log_prob(6, torch.Generator().manual_seed(0))
    assert_close(log_q, model.log_prob(x), atol=1e-10, what="log q of samples")


def test_forward_and_reverse_kl_against_closed_form():
    # q = N(shift, diag(e^{2s})) through an affine g; target N(0, I): KL(q||p) in closed form.
    f = _affine(3)
    model = FlowModel(StandardNormal((2,)), f).double()
    x = torch.randn(5, 2, dtype=D64)
    assert_close(model.forward_kl(x), -model.log_prob(x).mean(), atol=0, what="forward KL is the NLL")
    log_target = lambda v: -0.5 * v.pow(2).sum(1) - math.log(2 * math.pi)  # noqa: E731
    # g = f^-1: x = (z - shift) e^{-s}, so q has mean -shift e^{-s} and std e^{-s}
    mean, std = -f.shift.detach() * torch.exp(-f.log_scale.detach()), torch.exp(-f.log_scale.detach())
    exact = (0.5 * (std**2 + mean**2 - 1) - torch.log(std)).sum()
    est = model.reverse_kl(log_target, 200_000, torch.Generator().manual_seed(0))
    # Monte Carlo: stderr of the per-sample KL terms is < 0.01 for these parameters at n = 2e5
    assert abs(est.item() - exact.item()) < 0.02


def test_abstract_flow_directions_say_what_is_missing():
    class OnlyForward(Flow):
        def forward(self, x):
            return x, x.new_zeros(x.shape[0])

    with pytest.raises(NotImplementedError, match="inverse"):
        OnlyForward().inverse(torch.zeros(1, 1))


def test_logit_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        Logit(0.5)


def test_float32_stays_finite_for_large_inputs():
    x = torch.tensor([[-80.0, 80.0], [1e4, -1e4]])
    z, ld = Sigmoid()(x)
    assert torch.isfinite(ld).all()
    y = torch.tensor([[0.0, 1.0]])
    z, ld = Logit(0.05)(y)
    assert torch.isfinite(z).all() and torch.isfinite(ld).all()
