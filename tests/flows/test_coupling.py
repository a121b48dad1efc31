"""Coupling-specific checks: masks, the triangular Jacobian, an independent log-det reference,
the identity at initialization, both clamps, and the realnvp builder.

The generic log-det / inverse / Compose checks run from ``cases_coupling.py`` in ``test_all_flows.py``.
"""

import math

import pytest
import torch

from dgm_course.flows import (
    CLAMPS,
    AffineCoupling,
    ConvNet,
    FlowModel,
    MLP,
    StandardNormal,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    half_mask,
    realnvp,
)
from dgm_course.jacobian import assert_close, batch_jacobian

from .cases_coupling import CASES, SCALE_BOUND, randomize

D64 = torch.float64
params = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])


# --- masks -----------------------------------------------------------------------------------


def test_vector_masks_have_the_claimed_pattern():
    assert half_mask(5).tolist() == [1, 1, 0, 0, 0]
    assert half_mask(4, parity=1).tolist() == [0, 0, 1, 1]
    assert alternating_mask(5).tolist() == [1, 0, 1, 0, 1]
    assert alternating_mask(4, parity=1).tolist() == [0, 1, 0, 1]


def test_image_masks_have_the_claimed_pattern():
    cb = checkerboard_mask(3, 4, 5)
    i, j = torch.meshgrid(torch.arange(4), torch.arange(5), indexing="ij")
    assert cb.shape == (3, 4, 5)
    for c in range(3):  # the same board in every channel, 1 where i + j is even
        assert torch.equal(cb[c], ((i + j) % 2 == 0).float())
    assert int(cb.sum()) == 3 * 10
    ch = channel_mask(5, 2, 3)
    assert ch.shape == (5, 2, 3)
    assert [int(ch[c].sum()) for c in range(5)] == [6, 6, 0, 0, 0]


@pytest.mark.parametrize(
    "make",
    [
        lambda p: half_mask(7, p),
        lambda p: alternating_mask(7, p),
        lambda p: checkerboard_mask(2, 3, 5, p),
        lambda p: channel_mask(3, 2, 2, p),
    ],
    ids=["half", "alternating", "checkerboard", "channel"],
)
def test_masks_are_binary_float_and_parities_are_complements(make):
    m0, m1 = make(0), make(1)
    assert m0.dtype == torch.float32 and m0.shape == m1.shape
    assert ((m0 == 0) | (m0 == 1)).all()
    assert 0 < m0.sum() < m0.numel()  # each side is non-empty
    assert torch.equal(m0 + m1, torch.ones_like(m0))  # together they cover every entry exactly once


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: half_mask(1), "D >= 2"),
        (lambda: alternating_mask(0), "D >= 2"),
        (lambda: alternating_mask(4, parity=2), "parity"),
        (lambda: channel_mask(1, 4, 4), "C >= 2"),
        (lambda: checkerboard_mask(2, 1, 1), "H \\* W >= 2"),
        (lambda: checkerboard_mask(0, 2, 2), "C, H, W >= 1"),
    ],
)
def test_bad_mask_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- the Jacobian is triangular, with an independent reference for the log-det ----------------


# the two clamps written again from their formulas, independently of the library's functions
CLAMP_FORMULAS = {"soft": lambda s, a: s / (1 + s.abs() / a), "tanh": lambda s, a: a * torch.tanh(s / a)}


def _reference(f: AffineCoupling, x: torch.Tensor):
    """z and log-det written straight from the paper's formula, with the layer's conditioner."""
    m = f.mask
    s_raw, t = f.conditioner(m * x).chunk(2, dim=1)
    s = CLAMP_FORMULAS[f.clamp](s_raw, f.scale_bound)
    z = m * x + (1 - m) * (x * torch.exp(s) + t)
    return z, ((1 - m) * s).flatten(1).sum(1), s_raw


@params
def test_jacobian_is_triangular_in_the_permuted_order(case):
    f, x = case.make(0)
    J = batch_jacobian(lambda v: f(v)[0], x)  # (B, D, D) over flattened entries
    m = f.mask.flatten().bool()
    P, T = m.nonzero().flatten(), (~m).nonzero().flatten()
    J_pp, J_pt = J[:, P][:, :, P], J[:, P][:, :, T]
    J_tp, J_tt = J[:, T][:, :, P], J[:, T][:, :, T]
    # pass-through rows are identity rows: exact, since s = t = 0 there by multiplication with 0
    assert torch.equal(J_pp, torch.eye(len(P), dtype=D64).expand_as(J_pp))
    assert torch.equal(J_pt, torch.zeros_like(J_pt))
    # a transformed entry depends on itself only through its diagonal: exact zeros off it
    off = ~torch.eye(len(T), dtype=torch.bool)
    assert torch.equal(J_tt[:, off], torch.zeros_like(J_tt[:, off]))
    # the conditioner matters: the lower-left block is not zero (else the test would be trivial)
    assert (J_tp.abs() > 1e-3).any()
    # diagonal = exp(s) of the independent reference, so log-det = sum of log of the diagonal
    _, ref_log_det, s_raw = _reference(f, x)
    s_t = CLAMP_FORMULAS[f.clamp](s_raw, f.scale_bound).flatten(1)[:, T]
    # 1e-12: a few float64 roundings of exp(s) with |s| <= 1
    assert_close(torch.diagonal(J_tt, dim1=1, dim2=2), torch.exp(s_t), atol=1e-12, what="diag of J")


@params
def test_forward_and_log_det_match_the_formula(case):
    f, x = case.make(1)
    z, log_det = f(x)
    ref_z, ref_log_det, s_raw = _reference(f, x)
    # the clamp is really exercised: some raw log-scales of transformed entries exceed it
    assert (s_raw.abs() * (1 - f.mask) > SCALE_BOUND).any()
    # 1e-12: same operations in a different order, float64, values O(10)
    assert_close(z, ref_z, atol=1e-12, what="z vs formula")
    assert_close(log_det, ref_log_det, atol=1e-12, what="log_det vs sum of clamped s")
    x_rec, inv_log_det = f.inverse(z)
    assert_close(x_rec, x, atol=1e-10, what="inverse(z)")
    assert_close(inv_log_det, -ref_log_det, atol=1e-12, what="inverse log_det vs -sum of s")


# --- initialization and the clamps ------------------------------------------------------------


@pytest.mark.parametrize(
    "mask", [half_mask(4), alternating_mask(3), checkerboard_mask(3, 4, 4), channel_mask(2, 4, 4)],
    ids=["half", "alternating", "checkerboard", "channel"],
)
def test_fresh_layer_is_the_identity(mask):
    f = AffineCoupling(mask, hidden=8)
    assert isinstance(f.conditioner, MLP if mask.dim() == 1 else ConvNet)
    x = torch.randn(3, *mask.shape)
    z, log_det = f(x)
    assert torch.equal(z, x) and torch.equal(log_det, torch.zeros(3))
    x_rec, inv_log_det = f.inverse(x)
    assert torch.equal(x_rec, x) and torch.equal(inv_log_det, torch.zeros(3))
    # but it is trainable: the zero layer still receives a gradient
    f(x + 1)[1].sum().backward()
    assert f.conditioner[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("clamp", ["soft", "tanh"])
@pytest.mark.parametrize("mask", [alternating_mask(6), checkerboard_mask(2, 4, 4)], ids=["vector", "image"])
def test_log_scale_is_bounded_and_float32_finite_for_huge_conditioner_outputs(mask, clamp):
    g = torch.Generator().manual_seed(0)
    f = randomize(AffineCoupling(mask, hidden=8, scale_bound=2.0, clamp=clamp), g)
    with torch.no_grad():
        f.conditioner[-1].weight.mul_(1e6)
        f.conditioner[-1].bias.mul_(1e6)
    x = torch.randn(4, *mask.shape, generator=g)
    s_raw = f.conditioner(f.mask * x).chunk(2, dim=1)[0]
    assert s_raw.abs().max() > 1e5  # the network really outputs huge log-scales
    s, _ = f.scale_shift(x)
    assert s.abs().max() <= 2.0 and s.abs().max() > 1.9
    z, log_det = f(x)
    n_transformed = int((1 - f.mask).sum())
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    assert (log_det.abs() <= 2.0 * n_transformed + 1e-3).all()  # float32 sum of bounded terms
    x_rec, inv_log_det = f.inverse(z)
    assert torch.isfinite(x_rec).all() and torch.equal(inv_log_det, -log_det)


@pytest.mark.parametrize("clamp, expected", [("soft", 1 / 1.5), ("tanh", 2.0 * math.tanh(0.5))])
def test_clamp_allows_expansion_and_contraction(clamp, expected):
    # a sigmoid scale in (0, 1) would only contract; the clamp must allow both signs of s:
    # s_raw = 1 with a = 2 gives 1 / (1 + 1/2) (soft) or 2 tanh(1/2) (tanh)
    f = AffineCoupling(alternating_mask(2), hidden=4, scale_bound=2.0, clamp=clamp)
    with torch.no_grad():
        f.conditioner[-1].bias.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))  # s_raw = +1 on entry 1
        _, up = f(torch.zeros(1, 2))
        f.conditioner[-1].bias.copy_(torch.tensor([0.0, -1.0, 0.0, 0.0]))
        _, down = f(torch.zeros(1, 2))
    assert_close(up, torch.tensor([expected]), atol=1e-6, what="expansion")
    assert_close(down, torch.tensor([-expected]), atol=1e-6, what="contraction")


# --- realnvp -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", ["alternating", "half"])
def test_realnvp_alternates_parity_and_transforms_every_coordinate(mask):
    g = torch.Generator().manual_seed(0)
    flow = randomize(realnvp(5, n_layers=4, hidden=8, mask=mask).double(), g)
    masks = [layer.mask for layer in flow.flows]
    for a, b in zip(masks[:-1], masks[1:]):
        assert torch.equal(a + b, torch.ones(5, dtype=D64))
    x = torch.randn(6, 5, generator=g, dtype=D64)
    J = batch_jacobian(lambda v: flow(v)[0], x)
    identity_rows = (J - torch.eye(5, dtype=D64)).abs().amax(dim=2) < 1e-6  # (B, D)
    assert not identity_rows.any()


def test_realnvp_one_step_lowers_nll():
    torch.manual_seed(0)
    x = torch.randn(64, 2) * torch.tensor([0.5, 2.0]) + torch.tensor([1.0, -1.0])
    model = FlowModel(StandardNormal((2,)), realnvp(2, n_layers=4, hidden=16))
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    before = model.forward_kl(x)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = model.forward_kl(x)
    assert after < before - 1e-4


# --- bad input ---------------------------------------------------------------------------------


def test_bad_input_raises_value_error_naming_the_expected_shape():
    f = AffineCoupling(alternating_mask(4), hidden=4)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        f(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        f.inverse(torch.randn(4))
    with pytest.raises(ValueError, match="floating"):
        f(torch.ones(3, 4, dtype=torch.long))
    img = AffineCoupling(checkerboard_mask(2, 4, 4), hidden=4)
    with pytest.raises(ValueError, match=r"\(batch, 2, 4, 4\)"):
        img(torch.randn(3, 2, 4, 5))
    with pytest.raises(ValueError, match=r"\(batch, 2, 4, 4\)"):
        img(torch.randn(3, 32))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mask=torch.ones(2, 2)), r"\(D,\) or \(C, H, W\)"),
        (dict(mask=torch.tensor([0.0, 0.5])), "0 .* or 1"),
        (dict(mask=torch.ones(3)), "both"),
        (dict(mask=alternating_mask(3), scale_bound=0.0), "scale_bound"),
        (dict(mask=alternating_mask(3), scale_bound=math.inf), "scale_bound"),
        (dict(mask=alternating_mask(3), clamp="sigmoid"), "clamp must be one of"),
    ],
)
def test_bad_layer_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AffineCoupling(**kwargs)


def test_bad_conditioner_output_and_builder_arguments_raise():
    f = AffineCoupling(alternating_mask(4), conditioner=MLP(4, 4, hidden=4))  # needs 2 * 4 outputs
    with pytest.raises(ValueError, match=r"\(3, 8\)"):
        f(torch.randn(3, 4))
    with pytest.raises(ValueError, match="mask must be one of"):
        realnvp(2, mask="checkerboard")
    with pytest.raises(ValueError, match="n_layers"):
        realnvp(2, n_layers=0)
    with pytest.raises(ValueError, match="clamp must be one of"):
        realnvp(2, clamp="hard")


@pytest.mark.parametrize("name", sorted(CLAMPS))
def test_clamps_are_odd_increasing_bounded_with_slope_one_at_zero(name):
    clamp, a = CLAMPS[name], 1.5
    s = torch.linspace(-12, 12, 4801, dtype=D64, requires_grad=True)  # tanh(12 / a) < 1 still, in float64
    c = clamp(s, a)
    assert_close(c, CLAMP_FORMULAS[name](s, a), atol=1e-15, what=f"{name} clamp vs its formula")
    assert torch.equal(clamp(-s, a), -c)  # odd, so s~ = 0 is the identity's log-scale 0
    (slope,) = torch.autograd.grad(c.sum(), s)
    assert (slope > 0).all() and (c.abs() < a).all()  # increasing, inside (-a, a)
    assert abs(slope[2400].item() - 1.0) < 1e-12  # slope 1 at 0: the raw output is the log-scale near 0
    assert c[-1].item() > 0.85 * a  # and it comes close to the bound (soft: 12 / (1 + 8) = 0.89 a)


def test_default_clamp_is_soft_and_realnvp_passes_the_choice_on():
    assert AffineCoupling(alternating_mask(2)).clamp == "soft"
    assert {layer.clamp for layer in realnvp(2, n_layers=3).flows} == {"soft"}
    assert {layer.clamp for layer in realnvp(2, n_layers=3, clamp="tanh").flows} == {"tanh"}
