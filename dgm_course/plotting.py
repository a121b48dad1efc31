r"""Figures of the course: density heatmaps, samples, training curves, flow trajectories, digit grids.

Every function draws with matplotlib and returns what it drew on (an ``Axes`` for one panel, a
``Figure`` for several); none calls ``plt.show()``, so notebooks decide when to display and tests
can inspect the artists. A ``bounds`` is ``((x_lo, x_hi), (y_lo, y_hi))``, as in
:mod:`dgm_course.targets`; where it is omitted it is taken from the target that owns
``log_prob_fn`` (its ``bounds`` attribute) or from the samples.

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from dgm_course.targets import get_density
    >>> target = get_density("ring")
    >>> ax = density_heatmap(target.log_prob, target.bounds, resolution=50)
    >>> ax.images[0].get_array().shape
    (50, 50)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Rectangle
from mpl_toolkits.axes_grid1 import make_axes_locatable
from torch import Tensor, nn

from ._common import Bounds
from .train import History

__all__ = [
    "grid_log_prob",
    "density_heatmap",
    "samples_over_heatmap",
    "training_curves",
    "trajectory",
    "side_by_side",
    "sample_grid",
]

LogProb = Callable[[Tensor], Tensor]


def _check_bounds(bounds) -> Bounds:
    try:
        (x_lo, x_hi), (y_lo, y_hi) = bounds
        ok = float(x_lo) < float(x_hi) and float(y_lo) < float(y_hi)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"bounds must be ((x_lo, x_hi), (y_lo, y_hi)) with lo < hi, got {bounds!r}")
    return (float(x_lo), float(x_hi)), (float(y_lo), float(y_hi))


def _bounds_of(log_prob_fn: LogProb | None, samples: Sequence[Tensor] = ()) -> Bounds:
    """The ``bounds`` of the object owning ``log_prob_fn``, else a box around the samples."""
    owner_bounds = getattr(getattr(log_prob_fn, "__self__", None), "bounds", None)
    if owner_bounds is not None:
        return _check_bounds(owner_bounds)
    if not samples:
        raise ValueError("pass bounds=((x_lo, x_hi), (y_lo, y_hi)): there is nothing to infer them from")
    x = torch.cat([_points(s) for s in samples])
    lo, hi = x.quantile(0.005, dim=0), x.quantile(0.995, dim=0)
    pad = 0.1 * (hi - lo) + 1e-3
    return (
        ((lo[0] - pad[0]).item(), (hi[0] + pad[0]).item()),
        ((lo[1] - pad[1]).item(), (hi[1] + pad[1]).item()),
    )


def _points(x) -> Tensor:
    x = torch.as_tensor(x).detach().cpu().double()
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"samples must have shape (n, 2), got {tuple(x.shape)}")
    return x


def _dtype_device(log_prob_fn: LogProb) -> tuple[torch.dtype, torch.device]:
    """Evaluate a model's ``log_prob`` in its parameters' dtype and device; anything else in the default dtype."""
    owner = getattr(log_prob_fn, "__self__", None)
    tensors = [*owner.parameters(), *owner.buffers()] if isinstance(owner, nn.Module) else []
    if tensors:
        return tensors[0].dtype, tensors[0].device
    return torch.get_default_dtype(), torch.device("cpu")


def grid_log_prob(log_prob_fn: LogProb, bounds: Bounds, resolution: int = 200) -> np.ndarray:
    """``log_prob_fn`` at the pixel centres of a ``resolution`` x ``resolution`` grid over ``bounds``.

    Returns an array of shape ``(resolution, resolution)`` indexed ``[row = y, column = x]`` with
    row 0 at ``y_lo``: the layout of ``imshow(..., origin="lower", extent=bounds)``.
    """
    (x_lo, x_hi), (y_lo, y_hi) = _check_bounds(bounds)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    dtype, device = _dtype_device(log_prob_fn)
    xs = x_lo + (x_hi - x_lo) * (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution
    ys = y_lo + (y_hi - y_lo) * (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([xx, yy], dim=-1).reshape(-1, 2).to(dtype=dtype, device=device)
    with torch.no_grad():
        log_p = log_prob_fn(grid)
    return log_p.double().cpu().numpy().reshape(resolution, resolution)


def _new_axes(ax: Axes | None, size: float = 4.0) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(size, size))
    return ax


def _colorbar(image, ax: Axes) -> Colorbar:
    # Constrained layout places a bar made for `ax`; otherwise the bar gets a slot cut from the panel's
    # own box, so that it keeps the panel's height when a notebook sets an equal aspect afterwards.
    if isinstance(ax.figure.get_layout_engine(), ConstrainedLayoutEngine):
        return ax.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    return ax.figure.colorbar(image, cax=make_axes_locatable(ax).append_axes("right", size="5%", pad=0.06))


def density_heatmap(
    log_prob_fn: LogProb,
    bounds: Bounds | None = None,
    resolution: int = 200,
    ax: Axes | None = None,
    log: bool = False,
    cmap: str = "viridis",
    title: str | None = None,
    colorbar: bool = True,
    vmax: float | None = None,
) -> Axes:
    r"""The density :math:`p(x) = e^{\log p(x)}` (or :math:`\log p` with ``log=True``) as an image.

    ``log_prob_fn`` maps ``(batch, 2)`` points to ``(batch,)`` log-densities (``model.log_prob``,
    ``target.log_prob``, ``energy.log_unnormalized``); it runs under ``torch.no_grad`` in the
    model's dtype. With ``log=True`` the colour scale spans 20 nats below the maximum, so
    ``-inf`` (off a checkerboard) shows as the lowest colour. The axes are labelled
    :math:`x_1, x_2` with their ticks, and a slim colour bar beside the panel gives the scale
    (``colorbar=False`` leaves it out, e.g. when panels share one). ``vmax`` fixes the top of the
    scale (several panels on one scale; higher values saturate). Returns the ``Axes``.
    """
    bounds = _check_bounds(bounds) if bounds is not None else _bounds_of(log_prob_fn)
    log_p = grid_log_prob(log_prob_fn, bounds, resolution)
    if log:
        top = np.nanmax(log_p[np.isfinite(log_p)]) if np.isfinite(log_p).any() else 0.0
        top = top if vmax is None else vmax
        values, vmin = np.clip(log_p, top - 20, None), top - 20
    else:
        values, vmin = np.exp(log_p), 0.0
    ax = _new_axes(ax)
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    image = ax.imshow(values, origin="lower", extent=(x_lo, x_hi, y_lo, y_hi), cmap=cmap, vmin=vmin, vmax=vmax,
                      aspect="auto", interpolation="nearest")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if colorbar:
        bar = _colorbar(image, ax)
        bar.set_label("log density" if log else "density")
        bar.ax.tick_params(labelsize="small")
    if title is not None:
        ax.set_title(title)
    return ax


def samples_over_heatmap(
    samples,
    log_prob_fn: LogProb | None = None,
    bounds: Bounds | None = None,
    resolution: int = 200,
    ax: Axes | None = None,
    s: float = 2.0,
    alpha: float = 0.5,
    color: str = "white",
    title: str | None = None,
    **heatmap_kw,
) -> Axes:
    """A scatter of ``samples`` (shape ``(n, 2)``), over the heatmap of ``log_prob_fn`` if given.

    Without a density the samples are drawn on white, in black unless ``color`` says otherwise;
    ``heatmap_kw`` go to :func:`density_heatmap` (``log``, ``colorbar``, ``vmax``...). Returns the
    ``Axes`` (one image if there is a density, one scatter collection).
    """
    x = _points(samples)
    bounds = _check_bounds(bounds) if bounds is not None else _bounds_of(log_prob_fn, [x])
    if log_prob_fn is not None:
        ax = density_heatmap(log_prob_fn, bounds, resolution, ax=ax, **heatmap_kw)
    else:
        ax = _new_axes(ax)
        color = "black" if color == "white" else color
        (x_lo, x_hi), (y_lo, y_hi) = bounds
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=s, alpha=alpha, color=color, linewidths=0)
    if title is not None:
        ax.set_title(title)
    return ax


def _moving_average(values: Sequence[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < window:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    return (c[window:] - c[:-window]) / window


def training_curves(
    history: History | Mapping,
    ax: Axes | None = None,
    reference: float | Mapping[str, float] | None = None,
    smooth: int | None = None,
    title: str | None = None,
) -> Axes:
    """Loss against step (raw, faint, and a moving average), the eval metric as markers, references.

    ``history`` is a :class:`~dgm_course.train.History`, its ``as_dict()``, or a mapping from a
    label to either (several fits on one plot). ``reference`` draws horizontal lines: a number
    (say the data entropy, the floor of an NLL) or ``{label: value}``. ``smooth`` is the moving
    average's window (default: 1/50 of the steps). Returns the ``Axes``.
    """
    if isinstance(history, History) or (isinstance(history, Mapping) and "loss" in history):
        runs = {"": history}
    elif isinstance(history, Mapping):
        runs = dict(history)
    else:
        kind = type(history).__name__
        raise ValueError(f"history must be a History, its as_dict(), or a mapping of them, got {kind}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for i, (label, run) in enumerate(runs.items()):
        h = run.as_dict() if isinstance(run, History) else run
        color = f"C{i}"
        name = f"{label}: " if label else ""
        steps, loss = np.asarray(h["step"]), np.asarray(h["loss"], dtype=float)
        window = smooth or max(1, len(loss) // 50)
        if window > 1 and len(loss) >= window:
            ax.plot(steps, loss, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(steps[window - 1 :], _moving_average(loss, window), color=color,
                    label=f"{name}{h.get('loss_name', 'loss')} (mean of {window})")
        else:
            ax.plot(steps, loss, color=color, label=f"{name}{h.get('loss_name', 'loss')}")
        if h.get("eval"):
            ax.plot(h["eval_step"], h["eval"], "o--", color=color, markersize=4,
                    label=f"{name}{h.get('eval_name', 'eval')}")
    refs = {"reference": reference} if isinstance(reference, (int, float)) else dict(reference or {})
    for j, (label, value) in enumerate(refs.items()):
        ax.axhline(value, color="k", linestyle=[":", "-.", "--"][j % 3], linewidth=1, label=f"{label} = {value:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("nats")
    ax.legend(fontsize="small")
    if title is not None:
        ax.set_title(title)
    return ax


def trajectory(
    states: Sequence[Tensor],
    bounds: Bounds | None = None,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    size: float = 2.5,
    s: float = 2.0,
) -> Figure:
    r"""One panel per state of a flow, noise to data: :math:`z = x_0 \to x_1 \to \dots \to x_K = x`.

    ``states`` is a list of ``(n, 2)`` tensors, such as the trajectory of
    ``Compose.inverse(z, return_trajectory=True)``. Points are coloured by the angle of their
    starting point, so a point can be followed across panels. ``bounds`` is shared by all panels
    (default: a box around all states). Panels wrap into rows of ``ncols`` (default: up to 6).
    Returns the ``Figure``, with exactly one ``Axes`` per state.
    """
    points = [_points(x) for x in states]
    if not points:
        raise ValueError("states must hold at least one (n, 2) tensor")
    if any(len(p) != len(points[0]) for p in points):
        raise ValueError(f"every state must have the same number of points, got {[len(p) for p in points]}")
    if titles is not None and len(titles) != len(points):
        raise ValueError(f"need one title per state ({len(points)}), got {len(titles)}")
    bounds = _check_bounds(bounds) if bounds is not None else _bounds_of(None, points)
    k = len(points)
    ncols = min(k, ncols or 6)
    nrows = math.ceil(k / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    z = points[0]
    angle = torch.atan2(z[:, 1] - z[:, 1].mean(), z[:, 0] - z[:, 0].mean())
    colors = plt.get_cmap("hsv")(((angle + math.pi) / (2 * math.pi)).numpy())
    default_titles = ["z (noise)"] + [f"step {i}" for i in range(1, k - 1)] + (["x (data)"] if k > 1 else [])
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.remove()
            continue
        ax.scatter(points[i][:, 0].numpy(), points[i][:, 1].numpy(), s=s, c=colors, linewidths=0)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title((titles or default_titles)[i], fontsize="small")
    fig.tight_layout()
    return fig


def side_by_side(
    panels: Mapping[str, LogProb | Tensor | tuple[LogProb, Tensor]],
    bounds: Bounds | None = None,
    resolution: int = 150,
    size: float = 3.0,
    **heatmap_kw,
) -> Figure:
    """Compare fits in a row of panels, one per ``{title: what}``.

    ``what`` is a log-density function (a heatmap), an ``(n, 2)`` tensor of samples (a
    scatter), or a pair ``(log_prob_fn, samples)`` (samples over the heatmap). All panels share
    ``bounds`` (default: from the first log-density's owner, else from all the samples).
    ``heatmap_kw`` go to :func:`density_heatmap`. Returns the ``Figure``: one ``Axes`` per panel,
    in order, then the colour bars of the heatmaps.
    """
    if not panels:
        raise ValueError("panels must hold at least one {title: log_prob_fn | samples | (log_prob_fn, samples)}")
    parsed = []
    for title, what in panels.items():
        if isinstance(what, tuple):
            fn, x = what
        elif callable(what):
            fn, x = what, None
        else:
            fn, x = None, what
        parsed.append((title, fn, None if x is None else _points(x)))
    if bounds is None:
        owners = [fn for _, fn, _ in parsed if fn is not None and hasattr(getattr(fn, "__self__", None), "bounds")]
        bounds = _bounds_of(owners[0] if owners else None, [x for _, _, x in parsed if x is not None])
    bounds = _check_bounds(bounds)
    fig, axes = plt.subplots(1, len(parsed), figsize=(1.25 * size * len(parsed), size), squeeze=False)
    for ax, (title, fn, x) in zip(axes.flat, parsed):
        if x is None:
            density_heatmap(fn, bounds, resolution, ax=ax, title=title, **heatmap_kw)
        else:
            samples_over_heatmap(x, fn, bounds, resolution, ax=ax, title=title, **heatmap_kw)
    fig.tight_layout()
    return fig


def sample_grid(
    images,
    nrow: int = 8,
    ax: Axes | None = None,
    pad: int = 1,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    pad_color: str = "#7fa7d9",
) -> Axes:
    """Tile images into a grid with ``nrow`` images per row (torchvision's convention), as one image.

    ``images`` has shape ``(N, H, W)``, ``(N, 1, H, W)``, or ``(N, H*W)`` with square images (the
    8x8 digits flattened to 64). Image ``k`` goes to row ``k // nrow``, column ``k % nrow``; the
    ``pad``-pixel gaps are drawn in ``pad_color``, a colour no grey-scale pixel has, so that tiles
    of binary images stay apart; empty cells after the last image are left white. Returns the ``Axes``.
    """
    x = torch.as_tensor(images).detach().cpu().double()
    shape = tuple(x.shape)
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    elif x.dim() == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(f"flat images must have a square number of pixels, got {x.shape[1]}")
        x = x.reshape(-1, side, side)
    if x.dim() != 3 or x.shape[0] == 0:
        raise ValueError(f"images must have shape (N, H, W), (N, 1, H, W) or (N, H*W), got {shape}")
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive integer, got {nrow!r}")
    n, h, w = x.shape
    cols, rows = min(nrow, n), math.ceil(n / nrow)
    canvas = np.full((pad + rows * (h + pad), pad + cols * (w + pad)), np.nan)
    for k in range(n):
        top, left = pad + (k // nrow) * (h + pad), pad + (k % nrow) * (w + pad)
        canvas[top : top + h, left : left + w] = x[k].numpy()
    ax = _new_axes(ax, size=max(2.0, 0.5 * cols))
    ax.imshow(np.ma.masked_invalid(canvas), cmap=plt.get_cmap(cmap).with_extremes(bad=pad_color), vmin=vmin,
              vmax=vmax, interpolation="nearest")
    if n % cols:  # the empty cells after the last image: blank, not framed
        top, left = pad + (rows - 1) * (h + pad), pad + (n % cols) * (w + pad)
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), canvas.shape[1] - left, canvas.shape[0] - top,
                               facecolor="white", edgecolor="none"))
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax
