"""Cases for the residual flows: random unconstrained parameters, including planar parameters that
violate the raw constraint (w^T u < -1, so u_hat's reparametrization matters), Sylvester diagonals
whose products come close to -1, and inputs spread over several orders of magnitude so that tanh
saturates on some samples and stays linear on others."""

import torch

from dgm_course.flows import HouseholderSylvester, OrthogonalSylvester, Planar, TriangularSylvester

from ._cases import Case

D64 = torch.float64


def _inputs(g, D, n=8):
    # scales from 0.1 to ~30: the largest give pre-activations far into tanh's saturation
    scale = torch.logspace(-1, 1.5, n, dtype=D64)[:, None]
    return torch.randn(n, D, generator=g, dtype=D64) * scale


def _planar(seed, D, wu=None, w_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    f = Planar(D).double()
    w = w_scale * torch.randn(D, generator=g, dtype=D64)
    u = 2 * torch.randn(D, generator=g, dtype=D64)
    if wu is not None:  # set w^T u exactly, keeping u's component orthogonal to w
        u = u + (wu - w @ u) * w / (w @ w)
    with torch.no_grad():
        f.w.copy_(w)
        f.u.copy_(u)
        f.b.copy_(torch.randn((), generator=g, dtype=D64))
    return f, _inputs(g, D)


def _sylvester(flow, seed):
    g = torch.Generator().manual_seed(seed)
    f = flow.double()
    with torch.no_grad():
        for p in f.parameters():
            # raw diagonals ~ N(0, 2^2): tanh of them reaches +-0.99, so R1_ii R2_ii gets close to -1
            p.copy_(2 * torch.randn(p.shape, generator=g, dtype=D64))
    return f, _inputs(g, f.event_shape[0])


CASES = [
    Case("Planar-D1", Planar, lambda s: _planar(s, 1)),
    Case("Planar-D2-raw-violates", Planar, lambda s: _planar(s, 2, wu=-3.0 - s)),
    Case("Planar-D5-near-boundary", Planar, lambda s: _planar(s, 5, wu=-8.0)),
    Case("Planar-D4-large-w", Planar, lambda s: _planar(s, 4, wu=1.5, w_scale=4.0)),
    Case("OrthogonalSylvester-D4-M2", OrthogonalSylvester, lambda s: _sylvester(OrthogonalSylvester(4, 2), s)),
    Case("OrthogonalSylvester-D3-M1", OrthogonalSylvester, lambda s: _sylvester(OrthogonalSylvester(3, 1), s)),
    Case("OrthogonalSylvester-D5-M5", OrthogonalSylvester, lambda s: _sylvester(OrthogonalSylvester(5, 5), s)),
    Case("HouseholderSylvester-D4", HouseholderSylvester, lambda s: _sylvester(HouseholderSylvester(4), s)),
    Case("HouseholderSylvester-D3-K1", HouseholderSylvester, lambda s: _sylvester(HouseholderSylvester(3, 1), s)),
    Case("TriangularSylvester-D3", TriangularSylvester, lambda s: _sylvester(TriangularSylvester(3), s)),
    Case("TriangularSylvester-D4-reverse", TriangularSylvester,
         lambda s: _sylvester(TriangularSylvester(4, reverse=True), s)),
]
