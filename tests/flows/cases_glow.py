"""Cases for the Glow flows: float64, ActNorm initialized on a random batch, then every parameter redrawn.

Redrawing after the initialization keeps the ``initialized`` flag set while making every part
non-trivial (the couplings' zero-initialized last layers included). Sizes stay small (C <= 4,
4x4 images, hidden 4) so the autograd Jacobians (at most 64 x 64) are quick.
"""

import torch

from dgm_course.flows import ActNorm, GlowStep, InvConv1x1, MultiScaleGlow, Squeeze

from ._cases import Case
from .cases_coupling import randomize

D64 = torch.float64
# Stacks of steps multiply their conditioning: with the default gain 2 the Jacobian of a
# two-level Glow reaches condition numbers ~1e9 and its autograd slogdet loses ~1e-1 nats; gain
# 0.5 keeps them below ~1e3 while the couplings' log-scales stay far from zero.
GAIN = 0.5


def make_glow(build, shape: tuple[int, ...], case_seed: int, batch: int = 3):
    """A float64 flow from ``build()``, initialized on one random batch, redrawn, and a fresh batch."""
    g = torch.Generator().manual_seed(case_seed)
    with torch.random.fork_rng():  # fixed permutations and signs drawn inside build() are seeded too
        torch.manual_seed(case_seed)
        f = build().double()
    f(2 + 3 * torch.randn((8, *shape), generator=g, dtype=D64))  # data-dependent initialization
    randomize(f, g, gain=GAIN)
    return f, torch.randn((batch, *shape), generator=g, dtype=D64)


CASES = [
    Case("ActNorm-image-C3", ActNorm, lambda s: make_glow(lambda: ActNorm(3), (3, 4, 4), s)),
    Case("ActNorm-vector-D4", ActNorm, lambda s: make_glow(lambda: ActNorm(4), (4,), s)),
    *[
        Case(f"InvConv1x1-{p}-C4", InvConv1x1, lambda s, p=p: make_glow(lambda: InvConv1x1(4, p, seed=s), (4, 4, 4), s))
        for p in ("plain", "lu", "qr")
    ],
    Case("Squeeze-C2-4x6", Squeeze, lambda s: make_glow(Squeeze, (2, 4, 6), s)),
    Case("GlowStep-C2-4x4", GlowStep, lambda s: make_glow(lambda: GlowStep(2, 4, (4, 4), parity=s % 2), (2, 4, 4), s)),
    Case(
        "GlowStep-C3-qr",
        GlowStep,
        lambda s: make_glow(lambda: GlowStep(3, 4, (2, 4), parametrization="qr"), (3, 2, 4), s),
    ),
    Case(
        "MultiScaleGlow-1x4x4-L2-K1",
        MultiScaleGlow,
        lambda s: make_glow(lambda: MultiScaleGlow(1, 2, 1, hidden=4, size=(4, 4)), (1, 4, 4), s),
    ),
    Case(
        "MultiScaleGlow-2x4x4-L1-K2-plain",
        MultiScaleGlow,
        lambda s: make_glow(lambda: MultiScaleGlow(2, 1, 2, 4, (4, 4), parametrization="plain"), (2, 4, 4), s),
    ),
]
