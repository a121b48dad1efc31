"""``python -m benchmarks [--quick] [--only SECTION ...] [--out DIR]``: run, write the table and plots, print the table.

Sections, all by default: ``fits`` (quality against the truth and against the peers, with time
per step), ``cost`` (linear flows' cost growth, the library's Jacobian check), ``course`` (every
solution notebook executed, and autograded as one student's set). ``--quick`` runs each section
reduced (a few dozen steps, m up to 128, one seed, the first notebook): it checks that everything
runs, and its numbers mean nothing.

torch runs single-threaded here (``torch.set_num_threads(1)``), so every library gets the same
one thread. The fits are independent (one target each): they run in ``--workers`` processes
(default 2), one fit per process on one thread, the libraries still taking turns step by step
inside each fit, so a peer's time ratio is measured under the same load as ours. The cost and
course sections run after the fits, alone and serial (their wall times are the figures); notebooks
set their own threads.
"""

from __future__ import annotations

import argparse
import json
import math
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


def behind(results: list[fits.FitResult]) -> list[str]:
    """Where a peer beat us in this run: a KL lower by more than twice the combined standard errors,
    or a step more than 5% faster."""
    lines = []
    for ours in (r for r in results if r.library == "ours"):
        for r in results:
            if (r.kind, r.architecture, r.target) != (ours.kind, ours.architecture, ours.target) or r.library == "ours":
                continue
            if r.kl < ours.kl - 2 * math.hypot(r.stderr, ours.stderr):
                lines.append(f"{r.kind} on {r.target} ({r.architecture}): {r.library} reaches KL {r.kl:.3f} "
                             f"vs ours {ours.kl:.3f}")
            if r.ratio < 0.95:
                lines.append(f"{r.kind} on {r.target} ({r.architecture}): a {r.library} step takes {r.ratio:.2f}x ours")
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
    jobs = [(fits.forward_kl, (name, b, _log)) for name in DENSITIES]
    jobs += [(fits.reverse_kl, (name, b, arch, _log)) for arch in ("planar", "realnvp") for name in ENERGIES]
    _log(f"fits: {len(jobs)} fits (one target each) on {workers} worker process(es), one torch thread each")
    results = [r for rows in run_jobs(jobs, workers) for r in rows]
    report.plot_fits(results, out / "fits.png")
    raw["fits"] = {"budget": asdict(b), "results": [asdict(r) for r in results]}
    lagging = behind(results)
    return (f"### Quality against the truth, and the peers\n\n"
            f"Every library: the same architecture, data, seeds, Adam (lr {b.realnvp_lr:g} for RealNVP, "
            f"{b.planar_lr:g} for planar), batch {b.batch_size} and step budget ({b.forward_steps} forward-KL, "
            f"{b.reverse_steps} reverse-KL steps). KL in nats ± standard error on {b.n_eval} points. Time per step: "
            f"the median over the run, the libraries taking turns step by step in one process on one thread "
            f"(one fit per process, {workers} at a time); a peer's as a ratio to ours.\n\n"
            + report.fits_table(results, versions)
            + "\n\n**Behind a peer in this run:** " + ("; ".join(lagging) + "." if lagging else "nowhere.")
            + (" Each KL here comes from one training seed, and its ± is evaluation noise only: "
               "benchmarks/ABLATION.md trains the RealNVP rows where a peer was ahead over several training "
               "seeds, changing one difference between ours and the peer at a time, and says what the gaps "
               "are made of." if lagging else "")
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
