"""Glow parts against references: batch statistics, slogdet and F.conv2d, an explicit index map,
and the multi-scale layout.

The generic registry tests (test_all_flows.py, cases in cases_glow.py) compare every log-det with
the autograd Jacobian in both directions; here each part is compared with what it claims to be.
Tolerances: float64 results against float64 references take 1e-10 (round-off ~1e-14 over at most
64 x 64 matrices, so a margin of 10^4); float32 checks are relative, 1e-3, stated where used.
"""

import pytest
import torch
import torch.nn.functional as F

from dgm_course.flows import (
    ActNorm,
    AffineCoupling,
    FlowModel,
    GlowStep,
    InvConv1x1,
    MultiScaleGlow,
    Squeeze,
    StandardNormal,
)
from dgm_course.jacobian import assert_close, check_flow

from .cases_glow import make_glow

D64 = torch.float64
ATOL = 1e-10


# --------------------------------------------------------------------------------------------- ActNorm


@pytest.mark.parametrize("shape", [(3, 4, 5), (4,)], ids=["image", "vector"])
def test_actnorm_init_gives_zero_mean_unit_variance_per_channel(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = 5 + torch.randn(1, shape[0], *([1] * (len(shape) - 1)), generator=g, dtype=D64).exp() * torch.randn(
        (64, *shape), generator=g, dtype=D64
    )
    f = ActNorm(shape[0]).double()
    assert not f.initialized
    z, log_det = f(x)
    dims = [0, *range(2, x.dim())]
    assert_close(z.mean(dims), torch.zeros(shape[0], dtype=D64), atol=ATOL, what="channel means")
    assert_close(z.var(dims, correction=0), torch.ones(shape[0], dtype=D64), atol=ATOL, what="channel variances")
    # log-det = HW * sum_c log s_c with s_c = 1 / std_c of the batch
    pixels = x[0, 0].numel()
    expected = -pixels * x.std(dims, correction=0).log().sum()
    assert_close(log_det, expected.expand(64), atol=ATOL, what="log-det vs -HW sum log std")


def test_actnorm_flag_survives_a_state_dict_round_trip():
    g = torch.Generator().manual_seed(0)
    first, second = 3 + 2 * torch.randn(16, 2, 4, 4, generator=g), -1 + 0.5 * torch.randn(16, 2, 4, 4, generator=g)
    trained = ActNorm(2)
    trained(first)
    loaded = ActNorm(2)
    loaded.load_state_dict(trained.state_dict())
    assert "initialized" in trained.state_dict() and bool(loaded.initialized)
    z_loaded, _ = loaded(second)  # training mode, but must not re-initialize on this batch
    assert torch.equal(z_loaded, trained(second)[0])
    assert torch.equal(loaded.bias, trained.bias) and torch.equal(loaded.log_scale, trained.log_scale)
    fresh = ActNorm(2)
    fresh(second)
    assert not torch.allclose(fresh.bias, loaded.bias, atol=0.5), "a fresh layer would have re-initialized"


def test_actnorm_refuses_to_run_uninitialized():
    f = ActNorm(2)
    with pytest.raises(RuntimeError, match="forward pass"):
        f.inverse(torch.randn(3, 2))
    f.eval()
    with pytest.raises(RuntimeError, match="forward pass"):
        f(torch.randn(3, 2))
    f.train()
    f(torch.randn(8, 2))
    f.eval()
    z, _ = f(torch.randn(3, 2))
    assert f.inverse(z)[0].shape == (3, 2)


# --------------------------------------------------------------------------------------------- InvConv1x1


@pytest.mark.parametrize("parametrization", ["plain", "lu", "qr"])
def test_invconv_matches_conv2d_and_slogdet(parametrization, seed):
    f, x = make_glow(lambda: InvConv1x1(4, parametrization), (4, 4, 4), seed)
    W = f.weight()
    z, log_det = f(x)
    assert_close(z, F.conv2d(x, W[:, :, None, None]), atol=ATOL, what="z vs F.conv2d")
    assert_close(log_det, (16 * torch.linalg.slogdet(W).logabsdet).expand(3), atol=ATOL, what="log-det vs HW slogdet")
    x_rec, log_det_inv = f.inverse(z)
    assert_close(x_rec, F.conv2d(z, torch.linalg.inv(W)[:, :, None, None]), atol=ATOL, what="inverse vs W^-1 conv")
    assert_close(log_det_inv, -log_det, atol=ATOL, what="inverse log-det")


@pytest.mark.parametrize("parametrization", ["lu", "qr"])
def test_structured_invconv_uses_no_dense_linear_algebra(parametrization, monkeypatch):
    f, x = make_glow(lambda: InvConv1x1(4, parametrization), (4, 4, 4), 0)

    def forbidden(*args, **kwargs):
        raise AssertionError("an LU/QR 1x1 convolution called an O(C^3) dense routine")

    for name in ("slogdet", "det", "inv", "solve"):
        monkeypatch.setattr(torch.linalg, name, forbidden)
    f.inverse(f(x)[0])


# --------------------------------------------------------------------------------------------- Squeeze


def test_squeeze_is_the_explicit_index_permutation():
    B, C, H, W = 2, 3, 4, 6
    x = torch.arange(B * C * H * W, dtype=D64).reshape(B, C, H, W)
    z, log_det = Squeeze()(x)
    assert z.shape == (B, 4 * C, H // 2, W // 2) and log_det.tolist() == [0.0, 0.0]
    for c in range(C):
        for i in range(2):
            for j in range(2):
                assert torch.equal(z[:, 4 * c + 2 * i + j], x[:, c, i::2, j::2])
    assert torch.equal(z.flatten().sort().values, x.flatten()), "every entry exactly once"
    x_rec, _ = Squeeze().inverse(z)
    assert torch.equal(x_rec, x)


@pytest.mark.parametrize("shape", [(1, 1, 3, 4), (1, 2, 4, 5)])
def test_squeeze_rejects_odd_sizes(shape):
    with pytest.raises(ValueError, match=r"even H and W.*" + ", ".join(map(str, shape))):
        Squeeze()(torch.randn(shape))


def test_squeeze_inverse_needs_a_multiple_of_four_channels():
    with pytest.raises(ValueError, match="multiple of 4"):
        Squeeze().inverse(torch.randn(1, 6, 2, 2))


# --------------------------------------------------------------------------------------------- GlowStep


def test_glow_step_is_actnorm_then_invconv_then_coupling():
    step, x = make_glow(lambda: GlowStep(4, 4, (4, 4), parity=1), (4, 4, 4), 0)
    assert [type(m) for m in step.flows] == [ActNorm, InvConv1x1, AffineCoupling]
    h1, ld1 = step.actnorm(x)
    h2, ld2 = step.invconv(h1)
    z_ref, ld3 = step.coupling(h2)
    z, log_det = step(x)
    assert_close(z, z_ref, atol=0, what="step output")
    assert_close(log_det, ld1 + ld2 + ld3, atol=ATOL, what="step log-det")
    assert step.coupling.mask[:2].sum() == 0 and step.coupling.mask[2:].all(), "parity 1: last half passes"


# --------------------------------------------------------------------------------------------- MultiScaleGlow


def test_multiscale_round_trip_and_jacobian_on_a_tiny_input():
    """Also run by the registry with LU and plain 1x1 convolutions; here with QR."""
    flow, x = make_glow(lambda: MultiScaleGlow(1, 2, 1, hidden=4, size=(4, 4), parametrization="qr"), (1, 4, 4), 3)
    z, _ = flow(x)
    assert z.shape == x.shape
    check_flow(flow, x, atol=1e-8)


def test_multiscale_with_identity_steps_is_the_identity():
    """The documented layout: z is x with the squeezes undone, so identity steps give z = x."""
    flow = MultiScaleGlow(2, levels=2, steps_per_level=2, hidden=4, size=(4, 8), parametrization="plain").double()
    with torch.no_grad():
        for m in flow.modules():
            if isinstance(m, ActNorm):
                m.initialized.fill_(True)  # log_scale = bias = 0: the identity
            if isinstance(m, InvConv1x1):
                m.linear.w.copy_(torch.eye(m.linear.w.shape[0]))
    x = torch.randn(3, 2, 4, 8, dtype=D64)
    z, log_det = flow(x)  # fresh couplings are the identity
    assert torch.equal(z, x) and log_det.abs().max() == 0


def test_multiscale_factored_half_skips_the_later_levels():
    flow, x = make_glow(lambda: MultiScaleGlow(1, levels=2, steps_per_level=1, hidden=4, size=(4, 4)), (1, 4, 4), 1)
    z = flow(x)[0].detach()
    later = [m for m in flow.modules() if isinstance(m, GlowStep) and m.event_shape == (8, 1, 1)]
    assert len(later) == 1
    with torch.no_grad():
        for p in later[0].parameters():
            p.add_(0.3)
    z_new = flow(x)[0].detach()
    factored, rest = Squeeze()(z)[0].chunk(2, dim=1), Squeeze()(z_new)[0].chunk(2, dim=1)
    assert torch.equal(factored[0], rest[0]), "the level-0 half is in z untouched by level 1"
    assert not torch.allclose(factored[1], rest[1], atol=1e-3), "the other half went through level 1"


@pytest.mark.parametrize("levels", [2, 3])
def test_multiscale_on_8x8_digits(levels):
    torch.manual_seed(levels)
    flow = MultiScaleGlow(1, levels=levels, steps_per_level=2, hidden=8)
    model = FlowModel(StandardNormal((1, 8, 8)), flow)
    x = torch.rand(32, 1, 8, 8)
    log_p = model.log_prob(x)
    assert log_p.shape == (32,) and torch.isfinite(log_p).all()
    z, log_det = flow(x)
    x_rec, log_det_inv = flow.inverse(z)
    # float32, unit-scale data: round-off ~1e-6 per layer
    assert_close(x_rec, x, atol=1e-4, what="8x8 round trip")
    assert_close(log_det_inv, -log_det, atol=1e-3, what="8x8 log-dets")
    assert model.sample(4).shape == (4, 1, 8, 8)


def test_multiscale_float32_stays_finite_for_large_scales():
    torch.manual_seed(0)
    flow = MultiScaleGlow(1, levels=2, steps_per_level=2, hidden=8, size=(4, 4))
    x = 1e3 + 1e4 * torch.randn(16, 1, 4, 4)
    flow(x)  # ActNorm initializes on data of scale 1e4
    with torch.no_grad():
        for m in flow.modules():
            if isinstance(m, AffineCoupling):
                C = m.mask.shape[0]
                m.conditioner[-1].bias[:C].fill_(1e4)  # raw log-scales far beyond any float32 exp
    z, log_det = flow(x)
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    x_rec, _ = flow.inverse(z)
    # float32 round-off (eps 6e-8) at data scale 1e4: 4 saturated steps scale some channels by up
    # to e^8 ~ 3e3 relative to others, and the 1x1 convolutions mix them, so small entries inherit
    # ~eps * 3e3 ~ 2e-4 of the scale (observed ~1e-5): the tolerance is 1e-4 of the data scale
    assert_close(x_rec, x, atol=1e-4 * 1e4, what="float32 round trip at scale 1e4")


def test_bad_input_raises_value_error_naming_the_shape():
    with pytest.raises(ValueError, match=r"\(batch, 1, 4, 4\)"):
        MultiScaleGlow(1, 2, 1, 4, size=(4, 4))(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(batch, 1, 4, 4\)"):
        MultiScaleGlow(1, 2, 1, 4, size=(4, 4)).inverse(torch.randn(2, 16))
    with pytest.raises(ValueError, match=r"\(batch, 3\) or \(batch, 3, H, W\)"):
        ActNorm(3)(torch.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match=r"\(batch, 4, \*, \*\)"):
        InvConv1x1(4)(torch.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"\(batch, 4, 2, 2\)"):
        GlowStep(4, 4, (2, 2))(torch.randn(2, 4, 4, 4))
    with pytest.raises(ValueError, match="floating"):
        Squeeze()(torch.ones(1, 1, 2, 2, dtype=torch.long))


def test_bad_configurations_raise_value_error():
    with pytest.raises(ValueError, match="divisible by 8"):
        MultiScaleGlow(1, levels=3, size=(8, 12))
    with pytest.raises(ValueError, match="parametrization"):
        InvConv1x1(3, "svd")
    with pytest.raises(ValueError, match="levels"):
        MultiScaleGlow(1, levels=0)
