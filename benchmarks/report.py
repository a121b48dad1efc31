"""The Markdown table and the plots of a benchmark run."""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path

from .cost import JacobianCheck, LinearCost
from .course import NotebookTiming
from .fits import Summary
from .peers import LIBRARIES, NOTES, PEERS

__all__ = ["GOAL_NATS", "machine", "paired", "fits_table", "cost_table", "course_table", "plot_fits", "plot_costs"]

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


def _kl(s: Summary) -> str:
    if math.isnan(s.kl):
        return s.note or "-"
    text = f"{s.kl:.3f}" + ("" if math.isnan(s.stderr) else f" ± {s.stderr:.3f}")
    return text + (f" ({s.note})" if s.note else "")


def paired(peer: Summary, ours: Summary) -> str:
    """The peer's KL minus ours seed by seed, over the seeds both have: mean ± standard error, and
    on how many seeds the peer is lower."""
    ours_by_seed = dict(zip(ours.seeds, ours.kls))
    diffs = [kl - ours_by_seed[seed] for seed, kl in zip(peer.seeds, peer.kls) if seed in ours_by_seed]
    if not diffs:
        return "no common seed"
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    lower = sum(d < 0 for d in diffs)
    return (f"{peer.library} minus ours {statistics.fmean(diffs):+.3f} ± {se:.3f}, "
            f"lower on {lower} of {len(diffs)} seeds")


def fits_table(summaries: list[Summary], versions: dict[str, str]) -> str:
    """One row per fit: our mean KL over the seeds (± standard error), our worst seed, whether the mean
    meets the goal, our step time, and each peer's mean KL and step time as a ratio to ours."""
    header = ["fit", "target", "ours KL", "ours worst seed", f"<= {GOAL_NATS}", "ours ms/step"]
    for peer in PEERS:
        header += [f"{peer} KL", f"{peer} time/ours"]
    rows = []
    for key in dict.fromkeys((s.kind, s.architecture, s.target) for s in summaries):
        by_lib = {s.library: s for s in summaries if (s.kind, s.architecture, s.target) == key}
        ours = by_lib["ours"]
        row = [f"{ours.kind}, {ours.architecture}", ours.target, _kl(ours), f"{ours.worst:.3f}",
               "yes" if ours.kl <= GOAL_NATS else "no", f"{ours.step_ms:.2f}"]
        for peer in PEERS:
            s = by_lib[peer]
            row += [_kl(s), "-" if math.isnan(s.ratio) else f"{s.ratio:.2f}x"]
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


def plot_fits(summaries: list[Summary], path: Path) -> None:
    """Mean KL to the truth per fit and library over the seeds (log scale), each seed a dot, the goal
    as a line; no bar: no result."""
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(dict.fromkeys((s.kind, s.architecture, s.target) for s in summaries))
    fig, ax = plt.subplots(figsize=(12, 3.8))
    width = 0.8 / len(LIBRARIES)
    for i, lib in enumerate(LIBRARIES):
        x = np.arange(len(keys)) + (i - (len(LIBRARIES) - 1) / 2) * width
        rows = [next((s for s in summaries if (s.kind, s.architecture, s.target) == k and s.library == lib), None)
                for k in keys]
        ax.bar(x, [s.kl if s else math.nan for s in rows], width, label=lib)
        for xi, s in zip(x, rows):
            if s and s.kls:
                ax.plot([xi] * len(s.kls), s.kls, ".", color="k", ms=2.5, alpha=0.6)
    ax.axhline(GOAL_NATS, color="k", ls="--", lw=1, label=f"goal {GOAL_NATS} nats")
    labels = [f"{target}\n{'fwd' if kind.startswith('forward') else 'rev'} {arch.split()[0]}"
              for kind, arch, target in keys]
    ax.set_xticks(np.arange(len(keys)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("KL to the truth (nats)")
    ax.set_title("KL to the truth after the same step budget: mean over the training seeds, dots: each seed "
                 "(no bar: not installed, no such layer, or diverged)", fontsize=10)
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
