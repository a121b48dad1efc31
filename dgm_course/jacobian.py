r"""The ground truth for every log-det: batched autograd Jacobians and assertion helpers.

The library's tests, the notebooks' hidden tests and the grader all use these helpers, so a
log-det is always compared with two things:

1. the log|det| of the autograd Jacobian of the map itself (catches a log-det that does not
   belong to the map), and
2. a *reference* implementation, when one is given (catches a self-consistent but wrong map,
   such as the identity with log-det 0, which passes check 1).

Example:
    >>> import torch
    >>> from dgm_course.flows import Affine
    >>> f = Affine(3).double()
    >>> x = torch.randn(4, 3, dtype=torch.float64)
    >>> assert_log_det_matches_jacobian(f, x)  # passes silently
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "batch_jacobian",
    "jacobian_log_det",
    "assert_close",
    "assert_log_det_matches_jacobian",
    "assert_inverse",
    "assert_matches_reference",
    "check_flow",
    "FlowCheckError",
]


class FlowCheckError(AssertionError):
    """A flow check failed; the message says which sample and by how much."""


def _per_sample(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Turn a batched map into a map of one sample (as a flat vector)."""

    def single(x_flat: Tensor, shape: torch.Size) -> Tensor:
        out = fn(x_flat.reshape(1, *shape))
        return out.reshape(-1)

    return single


def batch_jacobian(fn: Callable[[Tensor], Tensor], x: Tensor, vectorize: bool | None = None) -> Tensor:
    r"""The Jacobian :math:`\partial\,\mathrm{fn}(x)_b / \partial x_b` of every sample, shape ``(B, D_out, D_in)``.

    ``fn`` maps a batch ``(B, *event)`` to ``(B, *event_out)`` and must treat samples
    independently. Uses ``torch.func.vmap(jacrev)``; maps that cannot be vmapped (data-dependent
    control flow, in-place buffer updates, iterative solvers) fall back to a per-sample loop of
    ``torch.autograd.functional.jacobian``. Pass ``vectorize=False`` to force the loop.

    Cost: D backward passes per sample. Use float64 for checks.
    """
    shape = x.shape[1:]
    flat = x.detach().reshape(x.shape[0], -1)
    single = _per_sample(fn)
    if vectorize is not False:
        try:
            jac = torch.func.vmap(torch.func.jacrev(lambda v: single(v, shape)))(flat)
            return jac
        except Exception:  # noqa: BLE001 - any vmap limitation falls back to the loop
            if vectorize:
                raise
    rows = [torch.autograd.functional.jacobian(lambda v: single(v, shape), flat[b]) for b in range(flat.shape[0])]
    return torch.stack(rows)


def jacobian_log_det(fn: Callable[[Tensor], Tensor], x: Tensor, vectorize: bool | None = None) -> Tensor:
    """``log|det J_fn(x_b)|`` for every sample, shape ``(B,)``, from the autograd Jacobian (O(D^3))."""
    jac = batch_jacobian(fn, x, vectorize)
    if jac.shape[-1] != jac.shape[-2]:
        raise ValueError(f"the Jacobian must be square to have a determinant, got {tuple(jac.shape[1:])}")
    # One matrix at a time: the CPU build's *batched* LU returns wrong determinants with more
    # than one thread once matrices reach ~150 x 150 (pytorch/pytorch#142815); a reference must
    # not depend on the thread count.
    return torch.stack([torch.linalg.slogdet(j).logabsdet for j in jac])


def assert_close(actual: Tensor, expected: Tensor, atol: float, rtol: float = 0.0, what: str = "value") -> None:
    """Like ``torch.testing.assert_close`` with a message that names the worst sample.

    Raises :class:`FlowCheckError` if ``|actual - expected| > atol + rtol * |expected|`` anywhere,
    or if shapes differ, or if ``actual`` holds NaN or infinity.
    """
    if not isinstance(actual, Tensor):
        raise FlowCheckError(f"{what}: expected a tensor, got {type(actual).__name__}")
    if actual.shape != expected.shape:
        raise FlowCheckError(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}")
    a = actual.detach().to(expected.dtype)
    e = expected.detach()
    if not torch.isfinite(a).all():
        bad = (~torch.isfinite(a)).nonzero()[0].tolist()
        raise FlowCheckError(f"{what}: non-finite value at index {bad}")
    err = (a - e).abs()
    tol = atol + rtol * e.abs()
    if (err > tol).any():
        excess = (err - tol).flatten()
        i = int(excess.argmax())
        per_sample = max(1, err.numel() // err.shape[0]) if err.dim() else 1
        raise FlowCheckError(
            f"{what}: mismatch at sample {i // per_sample}: got {a.flatten()[i].item():.10g}, expected "
            f"{e.flatten()[i].item():.10g} (|diff| = {err.flatten()[i].item():.3g} > tolerance "
            f"{(tol.flatten()[i] if tol.dim() else tol).item():.3g}); "
            f"{int((err > tol).sum())} of {err.numel()} entries off"
        )


def _check_log_det_shape(log_det: Tensor, x: Tensor, what: str) -> None:
    if not isinstance(log_det, Tensor) or log_det.shape != (x.shape[0],):
        got = tuple(log_det.shape) if isinstance(log_det, Tensor) else type(log_det).__name__
        raise FlowCheckError(f"{what}: log_det must have shape (batch,) = ({x.shape[0]},), got {got}")
    if log_det.dtype != x.dtype or log_det.device != x.device:
        raise FlowCheckError(
            f"{what}: log_det must follow the input's dtype and device ({x.dtype}, {x.device}), "
            f"got ({log_det.dtype}, {log_det.device})"
        )


def assert_log_det_matches_jacobian(
    flow, x: Tensor, direction: str = "forward", atol: float = 1e-8, rtol: float = 1e-8
) -> None:
    """Check that ``flow``'s log-det equals log|det| of the autograd Jacobian of its own map.

    ``direction`` is ``"forward"`` (x -> z, log|det df/dx|) or ``"inverse"`` (z -> x,
    log|det dg/dz|). This alone is a self-consistency check: pair it with
    :func:`assert_matches_reference`.
    """
    fn = flow.forward if direction == "forward" else flow.inverse
    out, log_det = fn(x)
    _check_log_det_shape(log_det, x, f"{direction} log_det")
    expected = jacobian_log_det(lambda v: fn(v)[0], x)
    assert_close(log_det, expected, atol, rtol, what=f"{direction} log_det vs autograd slogdet")


def assert_inverse(flow, x: Tensor, atol: float = 1e-8, rtol: float = 1e-8) -> None:
    """``inverse(forward(x)) == x`` and the two log-dets are negatives of each other."""
    z, ld_f = flow(x)
    x_rec, ld_g = flow.inverse(z)
    assert_close(x_rec, x, atol, rtol, what="inverse(forward(x)) vs x")
    assert_close(ld_g, -ld_f, atol, rtol, what="inverse log_det vs -forward log_det")


def assert_matches_reference(
    flow, reference, x: Tensor, direction: str = "forward", atol: float = 1e-8, rtol: float = 1e-8
) -> None:
    """Outputs and log-dets of ``flow`` equal those of a trusted ``reference`` on the same input."""
    fn = flow.forward if direction == "forward" else flow.inverse
    ref = reference.forward if direction == "forward" else reference.inverse
    out, log_det = fn(x)
    ref_out, ref_log_det = ref(x)
    assert_close(out, ref_out, atol, rtol, what=f"{direction} output vs reference")
    _check_log_det_shape(log_det, x, f"{direction} log_det")
    assert_close(log_det, ref_log_det, atol, rtol, what=f"{direction} log_det vs reference")


def check_flow(
    flow,
    x: Tensor,
    reference=None,
    directions: tuple[str, ...] = ("forward", "inverse"),
    atol: float = 1e-8,
    rtol: float = 1e-8,
) -> None:
    """Every check at once: Jacobian, inverse, and (when given) the reference, in each direction.

    ``x`` is used as data for the forward direction; the inverse direction is checked at
    ``z = flow(x)[0]``. Use float64 inputs and a float64 flow.
    """
    if "forward" in directions:
        assert_log_det_matches_jacobian(flow, x, "forward", atol, rtol)
        if reference is not None:
            assert_matches_reference(flow, reference, x, "forward", atol, rtol)
    if "inverse" in directions:
        z = flow(x)[0].detach() if "forward" in directions else x
        assert_log_det_matches_jacobian(flow, z, "inverse", atol, rtol)
        if reference is not None:
            assert_matches_reference(flow, reference, z, "inverse", atol, rtol)
        if "forward" in directions:
            assert_inverse(flow, x, atol, rtol)
