"""Cases for the linear flows: float64, every parameter redrawn from the seed (bias included)."""

import torch

from dgm_course.flows import DenseLinear, LULinear, Permutation, QRLinear

from ._cases import Case
from .cases_coupling import randomize

D64 = torch.float64


def make_linear(cls, D: int, case_seed: int, batch: int = 4, **kwargs):
    """A float64 ``cls(D, **kwargs)`` with redrawn parameters and a standard normal batch."""
    g = torch.Generator().manual_seed(case_seed)
    f = randomize(cls(D, **kwargs).double(), g)
    return f, torch.randn(batch, D, generator=g, dtype=D64)


CASES = [
    Case("Permutation-random-D5", Permutation, lambda s: make_linear(Permutation, 5, s, seed=s)),
    Case("Permutation-reverse-D4", Permutation, lambda s: make_linear(Permutation, 4, s, perm="reverse")),
    Case("Permutation-explicit-D3", Permutation, lambda s: make_linear(Permutation, 3, s, perm=[2, 0, 1])),
    Case("LULinear-D6", LULinear, lambda s: make_linear(LULinear, 6, s, seed=s)),
    Case("LULinear-D8-nobias", LULinear, lambda s: make_linear(LULinear, 8, s, bias=False, seed=s)),
    Case("QRLinear-D5", QRLinear, lambda s: make_linear(QRLinear, 5, s, seed=s)),
    Case("QRLinear-D6-K2", QRLinear, lambda s: make_linear(QRLinear, 6, s, n_householder=2, seed=s)),
    Case("DenseLinear-D5", DenseLinear, lambda s: make_linear(DenseLinear, 5, s, seed=s)),
]
