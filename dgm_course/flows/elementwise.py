r"""Elementwise flows: the Jacobian is diagonal, so the log-det costs O(D).

References: Dinh et al., *Density estimation using Real NVP* (2017), section 4.1 for the logit
pre-processing of images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Flow

__all__ = ["Affine", "Sigmoid", "Logit"]


def _sum_per_sample(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


class Affine(Flow):
    r"""Elementwise affine map :math:`z = f(x) = e^{s} \odot x + t`.

    log-det: :math:`\sum_i s_i`, O(D). Inverse: :math:`x = (z - t) e^{-s}`.

    Example:
        >>> import torch
        >>> f = Affine(3)
        >>> with torch.no_grad():
        ...     _ = f.log_scale.fill_(0.5)
        >>> z, ld = f(torch.zeros(2, 3))
        >>> ld.tolist()
        [1.5, 1.5]
    """

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        super().__init__()
        shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        self.event_shape = shape
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.shift = nn.Parameter(torch.zeros(shape))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        z = x * self.log_scale.exp() + self.shift
        return z, self.log_scale.sum().to(x.dtype).expand(x.shape[0]).clone()

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        x = (z - self.shift) * torch.exp(-self.log_scale)
        return x, (-self.log_scale.sum()).to(z.dtype).expand(z.shape[0]).clone()


class Logit(Flow):
    r"""The logit pre-processing of data in [0, 1] (images after dequantization).

    .. math:: y = \alpha + (1 - 2\alpha)\, x, \qquad z = f(x) = \operatorname{logit}(y)

    The constant :math:`\alpha` (default 0.05, as in Real NVP) keeps the logit away from
    :math:`\pm\infty` at the borders. log-det, O(D):

    .. math:: \log|\det J_f| = \sum_i \left[\log(1-2\alpha) - \log y_i - \log(1-y_i)\right]

    The inverse is the sigmoid followed by the inverse affine rescaling; its log-det uses
    :math:`\log\sigma(z) = -\operatorname{softplus}(-z)` for stability.
    """

    def __init__(self, alpha: float = 0.05, event_shape: Sequence[int | None] | None = None) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"alpha must lie in [0, 0.5), got {alpha}")
        self.alpha = alpha
        self.event_shape = None if event_shape is None else tuple(event_shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        y = self.alpha + (1 - 2 * self.alpha) * x
        z = torch.log(y) - torch.log1p(-y)
        log_det = _sum_per_sample(math.log(1 - 2 * self.alpha) - torch.log(y) - torch.log1p(-y))
        return z, log_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        y = torch.sigmoid(z)
        x = (y - self.alpha) / (1 - 2 * self.alpha)
        # d sigmoid / dz = sigma(z) sigma(-z); log of it = -softplus(-z) - softplus(z)
        log_det = _sum_per_sample(-F.softplus(-z) - F.softplus(z) - math.log(1 - 2 * self.alpha))
        return x, log_det


class Sigmoid(Flow):
    r"""The sigmoid :math:`z = f(x) = \sigma(x)`, mapping the real line to (0, 1).

    log-det, O(D): :math:`\sum_i \log\sigma(x_i) + \log\sigma(-x_i) = -\sum_i
    [\operatorname{softplus}(-x_i) + \operatorname{softplus}(x_i)]`. Inverse: the logit.
    """

    def __init__(self, event_shape: Sequence[int | None] | None = None) -> None:
        super().__init__()
        self.event_shape = None if event_shape is None else tuple(event_shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check(x)
        return torch.sigmoid(x), _sum_per_sample(-F.softplus(-x) - F.softplus(x))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self.check(z, "z")
        x = torch.log(z) - torch.log1p(-z)
        return x, _sum_per_sample(-torch.log(z) - torch.log1p(-z))
