import torch

from dgm_course.flows import Affine, Logit, Sigmoid

from ._cases import Case

D64 = torch.float64


def _affine(seed, shape=(3,)):
    g = torch.Generator().manual_seed(seed)
    f = Affine(shape).double()
    with torch.no_grad():
        f.log_scale.copy_(torch.randn(shape, generator=g, dtype=D64))
        f.shift.copy_(torch.randn(shape, generator=g, dtype=D64))
    return f, torch.randn((5, *shape), generator=g, dtype=D64)


def _unit_interval(seed, shape):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=D64) * 0.98 + 0.01


CASES = [
    Case("Affine-D3", Affine, _affine),
    Case("Affine-image", Affine, lambda s: _affine(s, (2, 3, 3))),
    Case("Logit-alpha0.05", Logit, lambda s: (Logit(0.05), _unit_interval(s, (4, 6)))),
    Case("Logit-alpha0-image", Logit, lambda s: (Logit(0.0), _unit_interval(s, (3, 1, 2, 2)))),
    Case("Sigmoid", Sigmoid, lambda s: (Sigmoid(), 3 * torch.randn(4, 5, dtype=D64, generator=torch.Generator().manual_seed(s)))),
]
