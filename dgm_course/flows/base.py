r"""The flow interface, composition, and flow models (base distribution + flow).

Convention (the lecture's): ``x`` is data, ``z`` is noise. A flow is the normalizing map
:math:`f: x \mapsto z`; its inverse :math:`g = f^{-1}: z \mapsto x` generates.

- ``Flow.forward(x)`` returns ``(z, log|det df/dx|)``.
- ``Flow.inverse(z)`` returns ``(x, log|det dg/dz|)``.

Every log-det has shape ``(batch,)`` and the input's dtype and device.

Example:
    >>> import torch
    >>> from dgm_course.flows import Affine, Compose, FlowModel, StandardNormal
    >>> flow = Compose([Affine(2), Affine(2)])
    >>> model = FlowModel(StandardNormal((2,)), flow)
    >>> x = torch.randn(5, 2)
    >>> model.log_prob(x).shape
    torch.Size([5])
    >>> model.sample(3).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .._common import check_input

__all__ = [
    "Flow",
    "Compose",
    "Inverse",
    "StandardNormal",
    "FlowModel",
    "check_input",
    "zeros_log_det",
]


def zeros_log_det(x: Tensor) -> Tensor:
    """A zero log-det of shape ``(batch,)`` on ``x``'s device and dtype."""
    return x.new_zeros(x.shape[0])


class Flow(nn.Module):
    r"""A bijection with tractable log-det in both directions.

    Subclasses implement ``forward`` (:math:`f`, data to noise) and ``inverse``
    (:math:`g = f^{-1}`, noise to data). A direction without a tractable or exact algorithm
    raises ``NotImplementedError`` with the reason instead of returning an approximation.

    ``event_shape`` is the shape of one sample (``None`` entries are free); inputs are checked
    against it by :meth:`check`.
    """

    event_shape: tuple[int | None, ...] | None = None

    def check(self, x: Tensor, name: str = "x") -> None:
        check_input(x, self.event_shape, name)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} does not implement forward (x -> z)")

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} does not implement inverse (z -> x)")


class Inverse(Flow):
    """Swap the directions of a flow: ``Inverse(f).forward == f.inverse``."""

    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.flow = flow
        self.event_shape = flow.event_shape

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow.inverse(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow.forward(z)


class Compose(Flow):
    r"""The composition theorem: :math:`f = f_K \circ \dots \circ f_1`.

    .. math:: \log|\det J_f(x)| = \sum_k \log|\det J_{f_k}(x_{k-1})|

    and the inverse runs the steps in reverse order. With ``return_trajectory=True`` the
    intermediate states are returned as a list (first the input, last the output), which the
    notebooks plot as the trajectory of samples through the flow.

    Cost: the sum of the steps' costs.
    """

    def __init__(self, flows: Sequence[Flow]) -> None:
        super().__init__()
        if len(flows) == 0:
            raise ValueError("Compose needs at least one flow")
        self.flows = nn.ModuleList(flows)
        self.event_shape = flows[0].event_shape

    def forward(self, x: Tensor, return_trajectory: bool = False):
        self.check(x)
        log_det = zeros_log_det(x)
        trajectory = [x]
        for flow in self.flows:
            x, ld = flow(x)
            log_det = log_det + ld
            trajectory.append(x)
        return (x, log_det, trajectory) if return_trajectory else (x, log_det)

    def inverse(self, z: Tensor, return_trajectory: bool = False):
        self.check(z, "z")
        log_det = zeros_log_det(z)
        trajectory = [z]
        for flow in reversed(self.flows):
            z, ld = flow.inverse(z)
            log_det = log_det + ld
            trajectory.append(z)
        return (z, log_det, trajectory) if return_trajectory else (z, log_det)


class StandardNormal(nn.Module):
    r"""The base density :math:`p(z) = \mathcal N(0, I)` over events of shape ``event_shape``.

    ``log_prob`` returns shape ``(batch,)``; ``sample`` follows the module's device and dtype
    (move it with ``.to(...)`` like any module).
    """

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.register_buffer("_anchor", torch.zeros(()))  # carries device and dtype

    @property
    def dim(self) -> int:
        return math.prod(self.event_shape)

    def log_prob(self, z: Tensor) -> Tensor:
        check_input(z, self.event_shape, "z")
        sq = z.reshape(z.shape[0], -1).pow(2).sum(dim=1)
        return -0.5 * sq - 0.5 * self.dim * math.log(2 * math.pi)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        a = self._anchor
        return torch.randn((n, *self.event_shape), generator=generator, device=a.device, dtype=a.dtype)


class FlowModel(nn.Module):
    r"""A normalizing-flow model: a base density :math:`p(z)` and a flow :math:`f: x \to z`.

    - ``log_prob(x)`` = :math:`\log p(f(x)) + \log|\det J_f(x)|` (change of variables).
    - ``sample(n)``: :math:`z \sim p`, :math:`x = g(z)`.
    - ``forward_kl(x)``: the negative log-likelihood of data, :math:`-\frac1N\sum_i \log p(x_i)`,
      which equals :math:`KL(\pi \| p_\theta)` up to the data entropy.
    - ``reverse_kl(log_target, n)``: :math:`E_{z\sim p}[\log p(z) - \log|\det J_g(z)| -
      \log \tilde\pi(g(z))]`, i.e. :math:`KL(p_\theta \| \pi) - \log Z` for an unnormalized target.
      Needs only ``g``, its log-det and base samples.
    """

    def __init__(self, base: StandardNormal, flow: Flow) -> None:
        super().__init__()
        self.base = base
        self.flow = flow

    def log_prob(self, x: Tensor) -> Tensor:
        z, log_det = self.flow(x)
        return self.base.log_prob(z) + log_det

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.sample_with_log_prob(n, generator)[0]

    def sample_with_log_prob(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Samples ``x = g(z)`` and their model log-density ``log p(z) - log|det dg/dz|``."""
        z = self.base.sample(n, generator)
        x, log_det = self.flow.inverse(z)
        return x, self.base.log_prob(z) - log_det

    def forward_kl(self, x: Tensor) -> Tensor:
        return -self.log_prob(x).mean()

    def reverse_kl(
        self, log_target: Callable[[Tensor], Tensor], n: int, generator: torch.Generator | None = None
    ) -> Tensor:
        x, log_q = self.sample_with_log_prob(n, generator)
        return (log_q - log_target(x)).mean()
