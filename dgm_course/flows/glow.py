r"""Glow: activation normalization, invertible 1x1 convolution, squeeze, multi-scale.

A Glow step is ActNorm -> invertible 1x1 convolution -> affine coupling; a multi-scale Glow
squeezes space into channels, runs K steps, and factors half of the channels out to
:math:`z` at every level, so later (coarser) levels work on fewer dimensions.

Reference: Kingma & Dhariwal, *Glow: Generative flow with invertible 1x1 convolutions*,
NeurIPS 2018 (section 3, table 1); the multi-scale architecture is from Dinh et al.,
*Density estimation using Real NVP*, ICLR 2017 (section 3.6).

Example:
    >>> import torch
    >>> from dgm_course.flows import FlowModel, StandardNormal
    >>> flow = MultiScaleGlow(1, levels=2, steps_per_level=2, hidden=8, size=(8, 8))
    >>> model = FlowModel(StandardNormal((1, 8, 8)), flow)
    >>> model.log_prob(torch.rand(16, 1, 8, 8)).shape  # the first call initializes ActNorm
    torch.Size([16])
    >>> model.sample(2).shape
    torch.Size([2, 1, 8, 8])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Compose, Flow, Inverse, check_input, zeros_log_det
from .coupling import AffineCoupling, channel_mask
from .linear import DenseLinear, LULinear, QRLinear

__all__ = ["ActNorm", "InvConv1x1", "Squeeze", "GlowStep", "MultiScaleGlow"]


class ActNorm(Flow):
    r"""Activation normalization: a per-channel affine map with data-dependent initialization.

    .. math:: z = f(x) = e^{\log s} \odot (x + b)

    with one :math:`(\log s_c, b_c)` per channel, shared over all pixels, for inputs
    ``(B, C, H, W)`` or ``(B, C)``. log-det: :math:`H W \sum_c \log s_c` (:math:`H W = 1` for
    vectors), O(C). Inverse: :math:`x = z e^{-\log s} - b`.

    The first forward call in training mode sets :math:`b = -\text{mean}` and
    :math:`\log s = -\log\text{std}` of that batch per channel (population std, floored at 1e-6),
    so the output has zero mean and unit variance per channel (Glow, section 3.1). The
    ``initialized`` flag is a buffer: a loaded checkpoint is not re-initialized. Before the
    initialization the parameters are meaningless, so the inverse (and forward in eval mode)
    raises ``RuntimeError``.

    Example:
        >>> import torch
        >>> f = ActNorm(2)
        >>> z, log_det = f(3 + 2 * torch.randn(1000, 2, 4, 4))
        >>> z.mean(dim=(0, 2, 3)).abs().max().item() < 1e-5, bool(f.initialized)
        (True, True)
    """

    def __init__(self, C: int) -> None:
        super().__init__()
        self.C = C
        self.log_scale = nn.Parameter(torch.zeros(C))
        self.bias = nn.Parameter(torch.zeros(C))
        self.register_buffer("initialized", torch.tensor(False))

    def check(self, x: Tensor, name: str = "x") -> None:
        check_input(x, None, name)
        if x.dim() not in (2, 4) or x.shape[1] != self.C:
            raise ValueError(
                f"{name} must have shape (batch, {self.C}) or (batch, {self.C}, H, W), got {tuple(x.shape)}"
            )

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set bias and scale so that this batch comes out with zero mean and unit variance per channel."""
        dims = [0, *range(2, x.dim())]
        self.bias.copy_(-x.mean(dims))
        self.log_scale.copy_(-x.std(dims, correction=0).clamp_min(1e-6).log())
        self.initialized.fill_(True)

    def _require_initialized(self, what: str) -> None:
        if not self.initialized:
            raise RuntimeError(
                f"ActNorm {what} before its data-dependent initialization: run a forward pass on a batch "
                "of data in training mode first (or load a trained state_dict)"
            )

    def _per_channel(self, p: Tensor, x: Tensor) -> Tensor:
        return p.view(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        if not self.initialized:
            if not self.training:
                self._require_initialized("forward in eval mode")
            self.initialize(x)
        z = (x + self._per_channel(self.bias, x)) * self._per_channel(self.log_scale, x).exp()
        return z, zeros_log_det(x) + math.prod(x.shape[2:]) * self.log_scale.sum()

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        self._require_initialized("inverse")
        x = z * torch.exp(-self._per_channel(self.log_scale, z)) - self._per_channel(self.bias, z)
        return x, zeros_log_det(z) - math.prod(z.shape[2:]) * self.log_scale.sum()


class InvConv1x1(Flow):
    r"""Invertible 1x1 convolution: the linear flow :math:`z_{:,i,j} = W x_{:,i,j}` at every pixel.

    It generalizes the fixed channel permutation between coupling layers to a learned one
    (Glow, section 3.2). The weight is one of the linear flows of :mod:`~dgm_course.flows.linear`
    without bias, so the algebra lives there:

    - ``"plain"``: :class:`DenseLinear`, log-det :math:`HW \log|\det W|` by ``slogdet``, O(C^3);
      inverse by ``torch.linalg.solve``.
    - ``"lu"`` (default): :class:`LULinear`, :math:`W = PLU`, log-det :math:`HW\sum_c \log|s_c|`,
      O(C); inverse by two triangular solves.
    - ``"qr"``: :class:`QRLinear`, :math:`W = QR`, log-det :math:`HW \sum_c \log r_c`, O(C);
      inverse by :math:`Q^\top` and one triangular solve.

    All start at a random orthogonal :math:`W` (log-det 0).

    Example:
        >>> import torch
        >>> f = InvConv1x1(4, "lu", seed=0)
        >>> x = torch.randn(2, 4, 3, 3)
        >>> z, log_det = f(x)
        >>> torch.allclose(f.inverse(z)[0], x, atol=1e-5), z.shape
        (True, torch.Size([2, 4, 3, 3]))
    """

    PARAMETRIZATIONS = {"plain": DenseLinear, "lu": LULinear, "qr": QRLinear}

    def __init__(self, C: int, parametrization: str = "lu", seed: int | None = None) -> None:
        super().__init__()
        if parametrization not in self.PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {sorted(self.PARAMETRIZATIONS)}, got {parametrization!r}")
        self.event_shape = (C, None, None)
        self.parametrization = parametrization
        self.linear = self.PARAMETRIZATIONS[parametrization](C, bias=False, seed=seed)

    def weight(self) -> Tensor:
        """The ``(C, C)`` matrix; ``F.conv2d(x, weight()[:, :, None, None])`` is the forward map."""
        return self.linear.weight()

    def _per_pixel(self, fn, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        pixels = x.movedim(1, -1).reshape(-1, C)  # one row per pixel
        return fn(pixels).reshape(B, H, W, C).movedim(-1, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        log_det = x.shape[2] * x.shape[3] * self.linear.log_abs_det()
        return self._per_pixel(self.linear.matvec, x), zeros_log_det(x) + log_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        log_det = z.shape[2] * z.shape[3] * self.linear.log_abs_det()
        return self._per_pixel(self.linear.solve, z), zeros_log_det(z) - log_det


class Squeeze(Flow):
    r"""Trade space for channels: ``(B, C, H, W) -> (B, 4C, H/2, W/2)``.

    Each 2x2 patch becomes 4 channels: :math:`z_{4c + 2i + j,\,u,\,v} = x_{c,\,2u+i,\,2v+j}`
    (Real NVP, section 3.6). A permutation, so log-det 0, O(1). ``H`` and ``W`` must be even.

    Example:
        >>> import torch
        >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
        >>> Squeeze()(x)[0].flatten().tolist()
        [0.0, 1.0, 2.0, 3.0]
    """

    event_shape = (None, None, None)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        B, C, H, W = x.shape
        if H % 2 or W % 2:
            raise ValueError(f"Squeeze needs even H and W, got x of shape {tuple(x.shape)}")
        z = x.reshape(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return z.reshape(B, 4 * C, H // 2, W // 2), zeros_log_det(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        B, C4, H, W = z.shape
        if C4 % 4:
            raise ValueError(f"the inverse of Squeeze needs a multiple of 4 channels, got z of shape {tuple(z.shape)}")
        x = z.reshape(B, C4 // 4, 2, 2, H, W).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(B, C4 // 4, 2 * H, 2 * W), zeros_log_det(z)


class GlowStep(Compose):
    r"""One step of flow: ActNorm -> InvConv1x1 -> AffineCoupling with a channel mask (Glow, fig. 2a).

    log-det: the sum of the three, O(C) + the coupling network's cost (O(C^3) with
    ``parametrization="plain"``). The coupling's mask is a channel mask of shape
    ``(C, *size)`` (``parity`` chooses which half passes through), so a step is built for one
    spatial ``size``. At initialization the coupling is the identity and ActNorm waits for data.

    Example:
        >>> import torch
        >>> step = GlowStep(4, hidden=8, size=(3, 3))
        >>> step(torch.randn(5, 4, 3, 3))[1].shape
        torch.Size([5])
    """

    def __init__(
        self,
        C: int,
        hidden: int,
        size: tuple[int, int],
        parity: int = 0,
        parametrization: str = "lu",
        scale_bound: float = 2.0,
    ) -> None:
        H, W = size
        mask = channel_mask(C, H, W, parity)
        super().__init__(
            [ActNorm(C), InvConv1x1(C, parametrization), AffineCoupling(mask, hidden=hidden, scale_bound=scale_bound)]
        )
        self.event_shape = (C, H, W)

    @property
    def actnorm(self) -> ActNorm:
        return self.flows[0]

    @property
    def invconv(self) -> InvConv1x1:
        return self.flows[1]

    @property
    def coupling(self) -> AffineCoupling:
        return self.flows[2]


class _FactorOut(Flow):
    """The first half of the channels goes straight to z; ``flow`` continues on the second half."""

    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z_out, h = x.chunk(2, dim=1)
        h, log_det = self.flow(h)
        return torch.cat([z_out, h], dim=1), log_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z_out, h = z.chunk(2, dim=1)
        h, log_det = self.flow.inverse(h)
        return torch.cat([z_out, h], dim=1), log_det


class MultiScaleGlow(Flow):
    r"""Multi-scale Glow on images ``(B, C, H, W)`` with a fixed ``size = (H, W)``.

    Level :math:`l = 0, \dots, L-1`: squeeze (:math:`4C_l` channels at
    :math:`H/2^{l+1} \times W/2^{l+1}`), ``steps_per_level`` :class:`GlowStep`\ s (channel masks of
    alternating parity), then, except at the last level, split: the first half of the channels
    goes straight to :math:`z` and the second half (:math:`C_{l+1} = 2 C_l`) enters level
    :math:`l+1`. log-det: the sum over all steps (squeezes and splits are permutations).

    Layout of ``z``: the same shape ``(B, C, H, W)`` as ``x``. Each level ends by un-squeezing, so
    :math:`z` is what you would get by undoing the squeezes with the steps removed: the entries
    factored out at level :math:`l` sit where they would have been in :math:`x`. Hence the base
    density is ``StandardNormal((C, H, W))``. The inverse runs the same nesting backwards, exactly.

    Cost: :math:`L K` steps; with ``parametrization="lu"`` or ``"qr"`` every log-det term is O(C).
    ``H`` and ``W`` must be divisible by :math:`2^L`; ``size`` defaults to the course's 8x8
    digits, for which use ``levels=2`` or ``3``. Run one forward pass on data in training mode (ActNorm's
    initialization) before sampling.
    """

    def __init__(
        self,
        in_channels: int,
        levels: int = 2,
        steps_per_level: int = 4,
        hidden: int = 64,
        size: tuple[int, int] = (8, 8),
        parametrization: str = "lu",
        scale_bound: float = 2.0,
    ) -> None:
        super().__init__()
        H, W = size
        if levels < 1 or steps_per_level < 1:
            raise ValueError(f"levels and steps_per_level must be >= 1, got {levels} and {steps_per_level}")
        if H % 2**levels or W % 2**levels:
            raise ValueError(f"{levels} levels need H and W divisible by {2**levels}, got size {(H, W)}")
        self.event_shape = (in_channels, H, W)
        self.levels = levels

        def level(l: int, C: int, H: int, W: int) -> Compose:
            steps = [
                GlowStep(4 * C, hidden, (H // 2, W // 2), k % 2, parametrization, scale_bound)
                for k in range(steps_per_level)
            ]
            inner = [_FactorOut(level(l + 1, 2 * C, H // 2, W // 2))] if l + 1 < levels else []
            return Compose([Squeeze(), *steps, *inner, Inverse(Squeeze())])

        self.flow = level(0, in_channels, H, W)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        return self.flow(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        return self.flow.inverse(z)
