"""The Markdown table and the plots of a benchmark run."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from .cost import JacobianCheck, LinearCost
from .course import NotebookTiming
from .fits import FitResult
from .peers import LIBRARIES, NOTES, PEERS

__all__ = ["GOAL_NATS", "machine", "fits_table", "cost_table", "course_table", "plot_fits", "plot_costs"]

GOAL_NATS = 0.05  # our goal: KL to the truth within the step budget, on every target


def machine() -> str:
    """The CPU model, cores, OS, Python and torch versions, in one line."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _md(header: Sequence[str], rows: list[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _kl(r: FitResult) -> str:
    if math.isnan(r.kl):
        return r.note or "-"
    return f"{r.kl:.3f} ± {r.stderr:.3f}"


def fits_table(results: list[FitResult], versions: dict[str, str]) -> str:
    """One row per target: each library's KL (nats ± standard error) and step time as a ratio to ours."""
    header = ["fit", "target", "ours KL", f"<= {GOAL_NATS}", "ours ms/step"]
    for peer in PEERS:
        header += [f"{peer} KL", f"{peer} time/ours"]
    rows = []
    for key in dict.fromkeys((r.kind, r.architecture, r.target) for r in results):
        by_lib = {r.library: r for r in results if (r.kind, r.architecture, r.target) == key}
        ours = by_lib["ours"]
        row = [f"{ours.kind}, {ours.architecture}", ours.target, _kl(ours),
               "yes" if ours.kl <= GOAL_NATS else "no", f"{ours.step_ms:.2f}"]
        for peer in PEERS:
            r = by_lib[peer]
            row += [_kl(r), "-" if math.isnan(r.ratio) else f"{r.ratio:.2f}x"]
        rows.append(row)
    notes = [f"- **{lib}** {versions.get(lib, '')}: {NOTES[lib]}" for lib in LIBRARIES]
    return _md(header, rows) + "\n\n" + "\n".join(notes)


def cost_table(costs: list[LinearCost], check: JacobianCheck) -> str:
    """Milliseconds per call at each size, and the fitted log-log slope."""
    sizes = costs[0].sizes
    header = ["linear flow", "operation", *(f"m={m}" for m in sizes), f"slope (m >= {costs[0].fit_from})"]
    rows = []
    for which, label in [("log_det", "log-det"), ("inverse", "inverse, 256 rows")]:
        for c in costs:
            times = c.log_det_s if which == "log_det" else c.inverse_s
            rows.append([c.name, label, *(f"{1e3 * t:.3g}" for t in times), f"{c.slope(which):.2f}"])
    slowest = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in check.slowest)
    line = (f"Jacobian check of the whole library (tests/flows/test_all_flows.py: log-det vs autograd slogdet, "
            f"both directions, float64): {check.cases} cases x {len(check.seeds)} seed(s) in "
            f"**{check.total_s:.1f} s** (slowest: {slowest}).")
    return _md(header, rows) + "\n\n" + line


def course_table(timings: list[NotebookTiming]) -> str:
    """Execution and autograding wall times of every solution notebook against its target."""
    header = ["notebook", "target (s)", "executed (s)", "autograded (s)", "score", "within target", "note"]
    rows = []
    for t in timings:
        ok = t.execute_s <= t.target_s and t.autograde_s <= t.target_s and not t.note
        rows.append([t.assignment_id, f"{t.target_s:g}", f"{t.execute_s:.1f}", f"{t.autograde_s:.1f}", t.score,
                     "yes" if ok else "no", t.note])
    total = [sum(getattr(t, k) for t in timings) for k in ("target_s", "execute_s", "autograde_s")]
    rows.append(["**all**", f"{total[0]:g}", f"{total[1]:.1f}", f"{total[2]:.1f}", "", "", "one student's full set"])
    return _md(header, rows)


def plot_fits(results: list[FitResult], path: Path) -> None:
    """KL to the truth per fit and library (log scale), with the goal as a line; no bar: no result."""
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(dict.fromkeys((r.kind, r.architecture, r.target) for r in results))
    fig, ax = plt.subplots(figsize=(12, 3.8))
    width = 0.8 / len(LIBRARIES)
    for i, lib in enumerate(LIBRARIES):
        kl = [next((r.kl for r in results if (r.kind, r.architecture, r.target) == k and r.library == lib), math.nan)
              for k in keys]
        ax.bar(np.arange(len(keys)) + (i - (len(LIBRARIES) - 1) / 2) * width, kl, width, label=lib)
    ax.axhline(GOAL_NATS, color="k", ls="--", lw=1, label=f"goal {GOAL_NATS} nats")
    labels = [f"{target}\n{'fwd' if kind.startswith('forward') else 'rev'} {arch.split()[0]}" for kind, arch, target in keys]
    ax.set_xticks(np.arange(len(keys)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("KL to the truth (nats)")
    ax.set_title("KL to the truth after the same step budget (no bar: not installed, no such layer, or diverged)",
                 fontsize=10)
    ax.legend(fontsize=8, ncol=5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_costs(costs: list[LinearCost], path: Path) -> None:
    """Log-log plots of the linear flows' log-det and inverse times against m, slopes in the legend."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, (which, title) in zip(axes, [("log_det", "log|det W|"), ("inverse", "inverse of 256 rows")]):
        for c in costs:
            times = c.log_det_s if which == "log_det" else c.inverse_s
            ax.loglog(c.sizes, [1e3 * t for t in times], "o-", label=f"{c.name} (slope {c.slope(which):.2f})")
        ax.set_xlabel("m")
        ax.set_ylabel("ms per call")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
