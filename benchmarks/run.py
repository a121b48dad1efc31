"""``python -m benchmarks [--quick] [--only SECTION ...] [--out DIR]``: run, write the table and plots, print the table.

Sections, all by default: ``fits`` (quality against the truth and against the peers, with time
per step), ``cost`` (linear flows' cost growth, the library's Jacobian check), ``course`` (every
solution notebook executed, and autograded as one student's set). ``--quick`` runs each section
reduced (a few dozen steps, m up to 128, two training seeds, the first notebook): it checks that
everything runs, and its numbers mean nothing.

torch runs single-threaded here (``torch.set_num_threads(1)``), so every library gets the same
one thread. The fits are independent (one target and training seed each): they run in ``--workers``
processes (default 2), one fit per process on one thread, the libraries still taking turns step by step
inside each fit, so a peer's time ratio is measured under the same load as ours. The cost and
course sections run after the fits, alone and serial (their wall times are the figures); notebooks
set their own threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from . import cost, course, fits, report
from .parallel import default_workers, run_jobs
from .peers import LIBRARIES, PEERS, Unavailable, version

__all__ = ["SECTIONS", "main", "behind"]

SECTIONS = ("fits", "cost", "course")
ROOT = Path(__file__).resolve().parents[1]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def behind(summaries: list[fits.Summary]) -> list[str]:
    """Where a peer is ahead of us over the training seeds: a lower mean KL (by any amount: the goal
    is at or below the best peer's mean), or a step faster than ours (time ratio below 1)."""
    lines = []
    for ours in (s for s in summaries if s.library == "ours"):
        for s in summaries:
            if (s.kind, s.architecture, s.target) != (ours.kind, ours.architecture, ours.target) or s.library == "ours":
                continue
            if s.kl < ours.kl:
                lines.append(f"{s.kind} on {s.target} ({s.architecture}): {s.library} reaches KL {s.kl:.3f} "
                             f"vs ours {ours.kl:.3f} (mean over {len(s.seeds)} seeds; "
                             f"{report.paired(s, ours)})")
            if s.ratio < 1:
                lines.append(f"{s.kind} on {s.target} ({s.architecture}): a {s.library} step takes {s.ratio:.2f}x ours")
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run (under 2 minutes) that checks it works")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)})")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="processes for the fits, one fit each on one torch thread (default: 2, or the cores)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out",
                        help="folder for benchmarks.md, results.json and the plots (default: benchmarks/out)")
    return parser


def _fits(quick: bool, workers: int, out: Path, versions: dict[str, str], raw: dict) -> str:
    from dgm_course.targets import DENSITIES, ENERGIES

    b = fits.QUICK if quick else fits.FULL
    jobs = [(fits.forward_kl, (name, b, seed, _log)) for name in DENSITIES for seed in b.seeds]
    jobs += [(fits.reverse_kl, (name, b, arch, seed, _log))
             for arch in ("planar", "realnvp") for name in ENERGIES for seed in b.seeds]
    _log(f"fits: {len(jobs)} fits (one target and training seed each) on {workers} worker process(es), "
         f"one torch thread each")
    results = [r for rows in run_jobs(jobs, workers) for r in rows]
    summaries = fits.summarize(results)
    report.plot_fits(summaries, out / "fits.png")
    raw["fits"] = {"budget": asdict(b), "results": [asdict(r) for r in results]}
    lagging = behind(summaries)
    seeds = f"{len(b.seeds)} training seeds ({', '.join(map(str, b.seeds))})"
    return (f"### Quality against the truth, and the peers\n\n"
            f"Every library: the same architecture, data, {seeds}, Adam (lr {b.realnvp_lr:g} for RealNVP, "
            f"{b.planar_lr:g} for planar, {b.schedule} schedule), batch {b.batch_size} and step budget "
            f"({b.forward_steps} forward-KL, {b.reverse_steps} reverse-KL steps). KL in nats: the mean over the "
            f"seeds ± its standard error, and our worst seed; each KL is measured on {b.n_eval} points. "
            f"Time per step: the median over a fit, the libraries taking turns step by step in one process on "
            f"one thread (one fit per process, {workers} at a time), then the median over the seeds; a peer's "
            f"as its mean ratio to ours.\n\n"
            + report.fits_table(summaries, versions)
            + "\n\n**Ahead of us in this run:**"
            + ("".join(f"\n- {line}" for line in lagging) if lagging else " no peer, nowhere.")
            + "\n\n![fits](fits.png)")


def _cost(quick: bool, out: Path, raw: dict) -> str:
    costs = cost.linear_costs([16, 32, 64, 128] if quick else [16, 32, 64, 128, 256, 512, 1024], log=_log)
    check = cost.jacobian_check([0] if quick else None, log=_log)
    report.plot_costs(costs, out / "linear_cost.png")
    raw["cost"] = {"linear": [asdict(c) for c in costs], "jacobian_check": asdict(check)}
    return ("### Cost growth (ms per call, best of several calls, no grad)\n\n"
            + report.cost_table(costs, check) + "\n\n![linear flows](linear_cost.png)")


def _course(quick: bool, raw: dict) -> str:
    timings = course.course_budgets(ROOT, first=quick, log=_log)
    raw["course"] = [asdict(t) for t in timings]
    return "### Course budgets (wall time, s)\n\n" + report.course_table(timings)


def _versions() -> dict[str, str]:
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = version(lib)
        except Unavailable as err:
            versions[lib] = f"({err})"
    return versions


def main(argv: list[str] | None = None) -> int:
    import torch

    args = _parser().parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    start, cpu_start, load_before = time.perf_counter(), _cpu_seconds(), report.load_average()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = _versions()
    raw: dict = {"date": date, "machine": report.machine(), "quick": args.quick, "workers": args.workers,
                 "versions": versions}
    parts = []
    if "fits" in args.only:
        parts.append(_fits(args.quick, args.workers, args.out, versions, raw))
    if "cost" in args.only:
        parts.append(_cost(args.quick, args.out, raw))
    if "course" in args.only:
        parts.append(_course(args.quick, raw))

    elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    missing = [p for p in PEERS if versions[p].startswith("(")]
    header = (f"## Benchmarks{' (--quick: checks that it runs; the numbers mean nothing)' if args.quick else ''}\n\n"
              f"{date} on {raw['machine']}; torch threads: 1 per process, the fits in {args.workers} processes. "
              f"`{command}` took {elapsed:.0f} s, "
              f"{cpu:.0f} s of CPU time (this process and its children; far below the wall time on a busy machine); "
              f"load average {load_before} at the start, {report.load_average()} at the end."
              + (f" Not installed: {', '.join(missing)}." if missing else ""))
    table = "\n\n".join([header, *parts]) + "\n"
    raw["seconds"], raw["cpu_seconds"] = elapsed, cpu
    (args.out / "benchmarks.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    print(table)
    _log(f"wrote {args.out / 'benchmarks.md'}, results.json and the plots in {args.out}")
    return 0
