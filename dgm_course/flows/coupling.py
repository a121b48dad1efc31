r"""RealNVP affine coupling: a triangular Jacobian by construction, so the log-det costs O(D).

A binary mask :math:`m` splits the input. Entries with :math:`m = 1` pass through unchanged and
are the only thing the conditioner sees; the others are scaled and shifted by functions of them:

.. math:: z = f(x) = m \odot x + (1 - m) \odot \big(x \odot e^{s(m \odot x)} + t(m \odot x)\big)

Both directions are closed form, and :math:`s, t` may be any network (they are never inverted).
Because one layer leaves half of the input alone, layers must alternate (permute) their masks
so that every coordinate gets transformed: :func:`realnvp` does that.

Reference: Dinh, Sohl-Dickstein, Bengio, *Density estimation using Real NVP*, ICLR 2017
(section 3.3 for coupling layers, 3.4 for checkerboard and channel masks).

Example:
    >>> import torch
    >>> from dgm_course.flows import FlowModel, StandardNormal
    >>> flow = realnvp(2, n_layers=4, hidden=16)
    >>> model = FlowModel(StandardNormal((2,)), flow)
    >>> model.log_prob(torch.randn(5, 2)).shape
    torch.Size([5])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Compose, Flow

__all__ = [
    "AffineCoupling",
    "CLAMPS",
    "soft_clamp",
    "tanh_clamp",
    "MLP",
    "ConvNet",
    "half_mask",
    "alternating_mask",
    "checkerboard_mask",
    "channel_mask",
    "realnvp",
]


# ---------------------------------------------------------------------------------------------
# Masks: 1 = passes through (and conditions the rest), 0 = transformed.
# ---------------------------------------------------------------------------------------------


def _check_parity(parity: int) -> None:
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1, got {parity!r}")


def _check_vector(D: int, parity: int) -> None:
    if D < 2:
        raise ValueError(f"a coupling mask needs D >= 2 features (one to pass, one to transform), got D={D}")
    _check_parity(parity)


def _check_image(C: int, H: int, W: int) -> None:
    if min(C, H, W) < 1:
        raise ValueError(f"an image mask needs C, H, W >= 1, got (C, H, W) = ({C}, {H}, {W})")


def half_mask(D: int, parity: int = 0) -> Tensor:
    """The first ``D // 2`` entries are 1 (pass through); ``parity=1`` gives the complement.

    Example:
        >>> half_mask(5).tolist(), half_mask(5, parity=1).tolist()
        ([1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0, 1.0])
    """
    _check_vector(D, parity)
    m = (torch.arange(D) < D // 2).float()
    return 1 - m if parity else m


def alternating_mask(D: int, parity: int = 0) -> Tensor:
    """Entries ``i`` with ``(i + parity)`` even are 1 (pass through).

    Example:
        >>> alternating_mask(5).tolist(), alternating_mask(5, parity=1).tolist()
        ([1.0, 0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0, 0.0])
    """
    _check_vector(D, parity)
    return ((torch.arange(D) + parity) % 2 == 0).float()


def checkerboard_mask(C: int, H: int, W: int, parity: int = 0) -> Tensor:
    """Pixels ``(i, j)`` with ``(i + j + parity)`` even are 1, the same in every channel; shape (C, H, W).

    Example:
        >>> checkerboard_mask(1, 2, 3)[0].tolist()
        [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    _check_image(C, H, W)
    if H * W < 2:
        raise ValueError(f"a checkerboard mask needs H * W >= 2 pixels, got H={H}, W={W}")
    _check_parity(parity)
    ij = torch.arange(H)[:, None] + torch.arange(W)[None, :]
    return ((ij + parity) % 2 == 0).float().expand(C, H, W).clone()


def channel_mask(C: int, H: int, W: int, parity: int = 0) -> Tensor:
    """The first ``C // 2`` channels are 1 (pass through); ``parity=1`` gives the complement.

    Example:
        >>> channel_mask(4, 1, 1, parity=1).flatten().tolist()
        [0.0, 0.0, 1.0, 1.0]
    """
    _check_image(C, H, W)
    if C < 2:
        raise ValueError(f"a channel mask needs C >= 2 channels, got C={C}")
    _check_parity(parity)
    m = (torch.arange(C) < C // 2).float()[:, None, None].expand(C, H, W).clone()
    return 1 - m if parity else m


# ---------------------------------------------------------------------------------------------
# Conditioners: any network works; these are the defaults.
# ---------------------------------------------------------------------------------------------


def _zero_last(net: nn.Sequential) -> nn.Sequential:
    # s = t = 0 makes a fresh coupling the identity with log-det 0: a deep stack starts at the
    # base density, with no random scales multiplying through the layers (a stable start).
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class MLP(nn.Sequential):
    """``depth`` hidden layers of width ``hidden``: Linear-activation stacks, then a Linear output.

    With ``zero_init`` (default) the last layer starts at zero, so the output is 0.

    Example:
        >>> MLP(2, 4, hidden=8)(torch.randn(3, 2)).tolist()
        [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: int = 64,
        depth: int = 2,
        activation: type[nn.Module] = nn.ReLU,
        zero_init: bool = True,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        widths = [in_features] + [hidden] * depth
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), activation()]
        super().__init__(*layers, nn.Linear(hidden, out_features))
        if zero_init:
            _zero_last(self)


class ConvNet(nn.Sequential):
    """A small image conditioner: conv3x3-ReLU-conv1x1-ReLU-conv3x3 (padding 1 keeps H, W).

    With ``zero_init`` (default) the last convolution starts at zero, so the output is 0.

    Example:
        >>> ConvNet(2, 4, hidden=8)(torch.randn(3, 2, 5, 5)).shape
        torch.Size([3, 4, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64, zero_init: bool = True) -> None:
        super().__init__(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, out_channels, 3, padding=1),
        )
        if zero_init:
            _zero_last(self)


# ---------------------------------------------------------------------------------------------
# Log-scale clamps: s~ -> s in (-a, a), slope 1 at 0, so a zero network output is the identity
# ---------------------------------------------------------------------------------------------


def tanh_clamp(s: Tensor, a: float) -> Tensor:
    r""":math:`a \tanh(s / a)`: the RealNVP paper's clamp (Dinh et al. 2017, section 4.1).

    Example:
        >>> tanh_clamp(torch.tensor([0.0, 1.0, 100.0]), 2.0)
        tensor([0.0000, 0.9242, 2.0000])
    """
    return a * torch.tanh(s / a)


def soft_clamp(s: Tensor, a: float) -> Tensor:
    r""":math:`s / (1 + |s| / a)`: the same bound :math:`a` and slope 1 at 0, approached as
    :math:`1/|s|` instead of :math:`e^{-2|s|/a}` (zuko's ``MonotonicAffineTransform``).

    The library's default: over the same training seeds it fits better than :func:`tanh_clamp`
    (reverse KL on U1: lower KL on 13 of 15 seeds, and no seed left far behind; see
    ``benchmarks/ABLATION.md`` and notebook 05).

    Example:
        >>> soft_clamp(torch.tensor([0.0, 1.0, 100.0]), 2.0)
        tensor([0.0000, 0.6667, 1.9608])
    """
    return s / (1 + s.abs() / a)


CLAMPS = {"soft": soft_clamp, "tanh": tanh_clamp}

# ---------------------------------------------------------------------------------------------
# The coupling layer
# ---------------------------------------------------------------------------------------------


class AffineCoupling(Flow):
    r"""RealNVP affine coupling layer on vectors (B, D) or images (B, C, H, W).

    With mask :math:`m` (1 = pass through) and :math:`(\tilde s, t) = \mathrm{NN}(m \odot x)`:

    .. math::
        s = c_a(\tilde s) \odot (1 - m), \qquad
        z = f(x) = m \odot x + (1 - m) \odot (x \odot e^{s} + t)

    The conditioner sees only the masked input :math:`m \odot x`, so :math:`\partial z_i /
    \partial x_j = 0` for every transformed :math:`i` and transformed :math:`j \ne i`, and the
    pass-through rows are identity rows: in the order (pass-through, transformed) the Jacobian
    is lower triangular with diagonal :math:`(1, e^{s})`. Hence

    - log-det: :math:`\log|\det J_f| = \sum_{i: m_i = 0} s_i`, O(D);
    - inverse, closed form: :math:`x = m \odot z + (1 - m) \odot (z - t) \odot e^{-s}`, with the
      same :math:`s, t`, since :math:`m \odot z = m \odot x`; its log-det is :math:`-\sum s_i`.

    The clamp :math:`c_a`, :math:`a` = ``scale_bound``, keeps the log-scale in :math:`(-a, a)`:
    it can expand or contract (a scale that can only contract caps the model density) and cannot
    overflow, whatever the network outputs. ``clamp="soft"`` (default) is :func:`soft_clamp`,
    :math:`\tilde s / (1 + |\tilde s| / a)`; ``clamp="tanh"`` is the paper's :func:`tanh_clamp`,
    :math:`a \tanh(\tilde s / a)`. Both have slope 1 at 0; the soft one fits better (measured,
    see :func:`soft_clamp`).

    The default conditioner (``conditioner=None``) is :class:`MLP` for vector masks and
    :class:`ConvNet` for image masks, returning 2x the features (channels), first :math:`\tilde s`
    then :math:`t`. Its last layer is zero, so a fresh layer is the identity. A custom
    conditioner must map ``(B, *mask.shape)`` to ``(B, 2 * mask.shape[0], *mask.shape[1:])``.

    Example:
        >>> import torch
        >>> f = AffineCoupling(alternating_mask(4), hidden=8)
        >>> x = torch.randn(3, 4)
        >>> z, log_det = f(x)
        >>> torch.equal(z, x), log_det.tolist()  # a fresh layer is the identity
        (True, [0.0, 0.0, 0.0])
        >>> f = AffineCoupling(checkerboard_mask(2, 4, 4), hidden=8)
        >>> f(torch.randn(3, 2, 4, 4))[0].shape
        torch.Size([3, 2, 4, 4])
    """

    def __init__(
        self,
        mask: Tensor,
        conditioner: nn.Module | None = None,
        hidden: int = 64,
        scale_bound: float = 2.0,
        clamp: str = "soft",
    ) -> None:
        super().__init__()
        if not isinstance(mask, Tensor) or mask.dim() not in (1, 3):
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a tensor of shape (D,) or (C, H, W), got {got}")
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError("mask entries must be 0 (transformed) or 1 (pass through)")
        if mask.all() or not mask.any():
            raise ValueError("mask must have both 1 (pass through) and 0 (transformed) entries")
        if not (0 < scale_bound < math.inf):
            raise ValueError(f"scale_bound must be positive and finite, got {scale_bound}")
        if clamp not in CLAMPS:
            raise ValueError(f"clamp must be one of {sorted(CLAMPS)}, got {clamp!r}")
        self.register_buffer("mask", mask.detach().to(torch.get_default_dtype()).clone())
        self.event_shape = tuple(mask.shape)
        self.scale_bound = float(scale_bound)
        self.clamp = clamp
        if conditioner is None:
            n = mask.shape[0]
            conditioner = MLP(n, 2 * n, hidden) if mask.dim() == 1 else ConvNet(n, 2 * n, hidden)
        self.conditioner = conditioner

    def scale_shift(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The clamped log-scale ``s`` and shift ``t``, zero on the pass-through entries.

        Depends on ``x`` through ``m * x`` only, so ``x`` and ``z = f(x)`` give the same result.
        """
        m = self.mask
        out = self.conditioner(m * x)
        expected = (x.shape[0], 2 * x.shape[1], *x.shape[2:])
        if out.shape != expected:
            raise ValueError(f"the conditioner must return shape {expected}, got {tuple(out.shape)}")
        s_raw, t = out.chunk(2, dim=1)
        s = CLAMPS[self.clamp](s_raw, self.scale_bound)
        # masking s and t (rather than selecting entries) leaves pass-through entries exactly x
        return s * (1 - m), t * (1 - m)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        s, t = self.scale_shift(x)
        z = x * torch.exp(s) + t
        return z, s.reshape(x.shape[0], -1).sum(dim=1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        s, t = self.scale_shift(z)
        x = (z - t) * torch.exp(-s)
        return x, -s.reshape(z.shape[0], -1).sum(dim=1)


def realnvp(
    dim: int,
    n_layers: int = 6,
    hidden: int = 64,
    mask: str = "alternating",
    scale_bound: float = 2.0,
    clamp: str = "soft",
) -> Compose:
    """A RealNVP flow on vectors: ``n_layers`` couplings whose masks alternate parity.

    Alternating parity is the permutation between layers: a coordinate that passes through one
    layer is transformed by the next, so with ``n_layers >= 2`` every coordinate is transformed.
    """
    masks = {"alternating": alternating_mask, "half": half_mask}
    if mask not in masks:
        raise ValueError(f"mask must be one of {sorted(masks)}, got {mask!r}")
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return Compose(
        [
            AffineCoupling(masks[mask](dim, k % 2), hidden=hidden, scale_bound=scale_bound, clamp=clamp)
            for k in range(n_layers)
        ]
    )
