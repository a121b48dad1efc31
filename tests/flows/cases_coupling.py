"""Cases for ``AffineCoupling``: every mask type and both clamps, float64, randomized conditioner weights.

The default conditioner's last layer is zero (a fresh layer is the identity), which would make
every check trivial; so every parameter is redrawn from the seed. The scale of the redraw makes
the raw log-scale exceed ``scale_bound`` on some entries (the clamp bends there), which
``test_coupling.py`` asserts.
"""

import torch

from dgm_course.flows import AffineCoupling, alternating_mask, channel_mask, checkerboard_mask, half_mask

from ._cases import Case

D64 = torch.float64
SCALE_BOUND = 1.0


def randomize(module: torch.nn.Module, generator: torch.Generator, gain: float = 2.0) -> torch.nn.Module:
    """Redraw every parameter in place: weights ``gain * N(0, 1) / sqrt(fan_in)``, biases ``N(0, 0.25)``.

    Scaling by the fan-in keeps the outputs O(1) for MLPs and convolutions alike, so the soft
    clamp bends some entries without saturating all of them.
    """
    with torch.no_grad():
        for p in module.parameters():
            std = gain / p[0].numel() ** 0.5 if p.dim() > 1 else 0.5
            p.copy_(std * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return module


def make_coupling(mask: torch.Tensor, seed: int, batch: int = 4, clamp: str = "soft") -> tuple[
        AffineCoupling, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f = AffineCoupling(mask, hidden=8, scale_bound=SCALE_BOUND, clamp=clamp).double()
    randomize(f, g)
    return f, torch.randn((batch, *mask.shape), generator=g, dtype=D64)


MASKS = {
    "half-D5": lambda: half_mask(5),
    "alternating-D6-parity1": lambda: alternating_mask(6, parity=1),
    "checkerboard-C2-4x4": lambda: checkerboard_mask(2, 4, 4),
    "channel-C4-4x4-parity1": lambda: channel_mask(4, 4, 4, parity=1),
}

CASES = [
    Case(f"AffineCoupling-{name}-{clamp}", AffineCoupling,
         lambda s, mask=mask, clamp=clamp: make_coupling(mask(), s, clamp=clamp))
    for name, mask in MASKS.items()
    for clamp in ("soft", "tanh")
]
