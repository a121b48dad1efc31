r"""The same two architectures built with dgm_course and with each peer library.

Every model here is an ``nn.Module`` with the interface of a ``FlowModel``, so the measurements
against the truth (``targets.kl_to_truth``, ``targets.reverse_kl_to_truth``) and the training
step are the same code for every library:

- ``log_prob(x)``: :math:`\log p(x)` through the library's own normalizing direction;
- ``sample_with_log_prob(n, generator)``: base samples :math:`z` drawn from ``generator`` (so every
  library sees the same noise), pushed through the library's own generative direction.

The architectures, as equal as each library's public API allows:

- **RealNVP** (forward KL): ``n_layers`` affine couplings on 2D points with alternating masks,
  each conditioner a ReLU MLP with ``depth`` hidden layers of ``hidden`` units whose last layer
  starts at zero (every flow starts as the identity), log-scale bounded by ``scale_bound``.
- **Planar** (reverse KL): ``K`` planar layers :math:`x = z + \hat u\tanh(w^\top z + b)`,
  initialized like ours (``u, w ~ 0.1 N(0, I)``, ``b = 0``) where the library accepts it.

What each peer cannot match is stated in :data:`NOTES` and printed under the table; a peer that is
not installed raises :class:`Unavailable`, a peer without the layer raises :class:`NoSuchLayer`.
"""

from __future__ import annotations

import importlib
import math
from functools import partial

import torch
from torch import Tensor, nn

from dgm_course.flows import Compose, FlowModel, Planar, StandardNormal, realnvp
from dgm_course.flows.coupling import alternating_mask

__all__ = ["LIBRARIES", "PEERS", "NOTES", "Unavailable", "NoSuchLayer", "version", "realnvp_model", "planar_model"]

PEERS = ("zuko", "nflows", "normflows")
LIBRARIES = ("ours", *PEERS)

NOTES = {
    "ours": "dgm_course: one conditioner per layer, on m*x, outputs (s, t); log-scale clamp s/(1+|s|/a) "
            "(soft_clamp, the default since benchmarks/ABLATION.md measured it against a tanh(s/a)).",
    "zuko": "zuko RealNVP: same MLP and the same clamp s/(1+|s|/a) (MonotonicAffineTransform, slope=e^-a); "
            "the conditioner sees the pass-through half only. No planar layer.",
    "nflows": "nflows AffineCouplingTransform: its scale is sigmoid(s+2)+1e-3, which can only contract in "
              "the data-to-noise direction (no option to change it); same MLP otherwise. No planar layer.",
    "normflows": "normflows MaskedAffineFlow (its RealNVP): separate s and t networks, each the same MLP "
                 "(2x the conditioner cost), s clamped as a tanh(s/a) through its MLP's output_fn; Planar "
                 "with our initialization passed in; its planar layer has no inverse (none needed here).",
}


class Unavailable(RuntimeError):
    """The library cannot be imported here (not installed, or broken): the reason is the message."""


class NoSuchLayer(RuntimeError):
    """The library has no such layer: the message says which."""


def _import(name: str):
    try:
        return importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - any import failure is reported, never hidden
        raise Unavailable(f"not installed ({type(err).__name__}: {err}); pip install -e '.[bench]'") from err


def version(library: str) -> str:
    """The version of ``library`` ("ours" is dgm_course); raises :class:`Unavailable`."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    name = "dgm-course" if library == "ours" else library
    if library != "ours":
        _import(library)
    try:
        return dist_version(name)
    except PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------------------------------------
# one interface over four libraries


class _Adapter(nn.Module):
    """``log_prob`` and ``sample_with_log_prob`` over a peer's model (subclasses say how)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def _base_sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        like = next(self.model.parameters())
        return torch.randn(n, 2, generator=generator, dtype=like.dtype, device=like.device)


class _Zuko(_Adapter):
    def log_prob(self, x: Tensor) -> Tensor:
        return self.model().log_prob(x)

    def sample_with_log_prob(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        # zuko's own rsample_and_log_prob, with the base draw taken from the shared generator
        dist = self.model()
        z = self._base_sample(n, generator)
        x, ladj = dist.transform.inv.call_and_ladj(z)
        return x, dist.base.log_prob(z) - ladj


class _Nflows(_Adapter):
    def log_prob(self, x: Tensor) -> Tensor:
        return self.model.log_prob(x)

    def sample_with_log_prob(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        # nflows' own sample_and_log_prob, with the base draw taken from the shared generator
        z = self._base_sample(n, generator)
        x, logabsdet = self.model._transform.inverse(z)
        return x, self.model._distribution.log_prob(z) - logabsdet


class _Normflows(_Adapter):
    # normflows' layers run noise to data in ``forward`` (the opposite of ours)
    def log_prob(self, x: Tensor) -> Tensor:
        return self.model.log_prob(x)

    def sample_with_log_prob(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        z = self._base_sample(n, generator)
        log_q = self.model.q0.log_prob(z)
        for flow in self.model.flows:
            z, log_det = flow(z)
            log_q = log_q - log_det
        return z, log_q


class _Ours(FlowModel):
    """Our ``FlowModel`` as is: it has the interface already."""


# ---------------------------------------------------------------------------------------------
# RealNVP


def _zero_(linear: nn.Linear) -> None:
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)


def realnvp_model(library: str, n_layers: int = 6, hidden: int = 64, depth: int = 2, scale_bound: float = 2.0,
                  seed: int = 0, clamp: str = "soft") -> nn.Module:
    """A RealNVP on 2D points built with ``library``, its parameters drawn under ``seed``
    (``clamp``: our log-scale clamp, ``"soft"`` or ``"tanh"``; the peers have their own)."""
    torch.manual_seed(seed)
    widths = [hidden] * depth
    if library == "ours":
        if depth != 2:
            raise ValueError("realnvp() builds depth-2 conditioners")
        flow = realnvp(2, n_layers=n_layers, hidden=hidden, scale_bound=scale_bound, clamp=clamp)
        return _Ours(StandardNormal((2,)), flow)

    if library == "zuko":
        zuko = _import("zuko")
        univariate = partial(zuko.transforms.MonotonicAffineTransform, slope=math.exp(-scale_bound))
        flow = zuko.flows.RealNVP(2, transforms=n_layers, univariate=univariate, hidden_features=widths)
        for layer in flow.transform.transforms:
            _zero_(layer.hyper[-1])
        return _Zuko(flow)

    if library == "nflows":
        _import("nflows")
        from nflows.distributions.normal import StandardNormal as NflowsNormal
        from nflows.flows.base import Flow as NflowsFlow
        from nflows.nn.nets import MLP as NflowsMLP
        from nflows.transforms import AffineCouplingTransform, CompositeTransform

        class Conditioner(NflowsMLP):
            """nflows' MLP, zero last layer; couplings call it with a context, which it ignores."""

            def __init__(self, in_features: int, out_features: int) -> None:
                super().__init__((in_features,), (out_features,), widths)
                _zero_(self._output_layer)

            def forward(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
                return super().forward(inputs)

        # nflows: mask > 0 is transformed; ours: mask 1 passes through
        layers = [AffineCouplingTransform(1 - alternating_mask(2, k % 2), Conditioner) for k in range(n_layers)]
        return _Nflows(NflowsFlow(CompositeTransform(layers), NflowsNormal([2])))

    if library == "normflows":
        nf = _import("normflows")
        layers = []
        for k in reversed(range(n_layers)):  # normflows lists layers noise-to-data
            s = nf.nets.MLP([2, *widths, 2], init_zeros=True, output_fn="tanh", score_scale=1 / scale_bound,
                            output_scale=scale_bound)
            t = nf.nets.MLP([2, *widths, 2], init_zeros=True)
            layers.append(nf.flows.MaskedAffineFlow(alternating_mask(2, k % 2), t, s))
        return _Normflows(nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), layers))

    raise ValueError(f"unknown library {library!r}; choose one of {', '.join(LIBRARIES)}")


# ---------------------------------------------------------------------------------------------
# Planar


def planar_model(library: str, K: int = 32, seed: int = 0) -> nn.Module:
    """``K`` planar layers on 2D points built with ``library``, parameters drawn under ``seed``."""
    torch.manual_seed(seed)
    if library == "ours":
        return _Ours(StandardNormal((2,)), Compose([Planar(2) for _ in range(K)]))
    if library in ("zuko", "nflows"):
        _import(library)
        raise NoSuchLayer(f"{library} has no planar layer")
    if library == "normflows":
        nf = _import("normflows")
        layers = []
        for _ in range(K):
            u, w = 0.1 * torch.randn(2), 0.1 * torch.randn(2)  # our Planar's initialization, in its order
            layers.append(nf.flows.Planar((2,), u=u[None], w=w[None]))
        # ours applies layer K first when generating (Compose.inverse runs backwards)
        return _Normflows(nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), layers[::-1]))
    raise ValueError(f"unknown library {library!r}; choose one of {', '.join(LIBRARIES)}")
