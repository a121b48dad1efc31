r"""Why a peer's RealNVP beats ours on some fits: one difference at a time, over several training seeds.

    python -m benchmarks.ablation [--quick] [--seeds 5] [--first-seed 0] [--workers 2]
                                  [--fits moons U1 U4] [--variants ...] [--merge JSON ...] [--out DIR]

The fits where a peer was ahead in the benchmark run of 2026-11-28 (one training seed each): forward
KL on moons, reverse KL on U1 and U4, RealNVP 6x MLP(2x64), with that run's budget, :data:`BUDGET`
(the same data, loss, optimizer, constant learning rate and steps). "ours" is the library as it was
then, with the tanh clamp :math:`a\tanh(s/a)`; this ablation is why the library's default became
the soft clamp :math:`s/(1 + |s|/a)` (``dgm_course.flows.soft_clamp``). Every variant is trained with the same
training seeds (``--first-seed``, ``--seeds``): the seed draws the initial parameters and the minibatches (forward
KL) or base samples (reverse KL); seed 0 is the benchmark's run. The data and the evaluation
points stay those of the benchmark, so the spread over seeds is training-seed variance only.

Variants (:data:`VARIANTS`): ours as is, each peer as is (:func:`benchmarks.peers.realnvp_model`),
and ours with *one* difference changed to what a peer does, read from the peers' source:

- zuko (``MonotonicAffineTransform``): log-scale :math:`s / (1 + |s|/a)` instead of
  :math:`a\tanh(s/a)`: the same bound and slope 1 at 0, but a slope :math:`1/(1 + |s|/a)^2` that
  falls faster than tanh's for small :math:`|s|` and slower near the bound;
- zuko and nflows: the conditioner takes the pass-through half only (``Linear(D/2, 64)``): the
  same function class as ours, which sees :math:`m\odot x`, but a first layer initialized on
  fan-in :math:`D/2`, i.e. weights and biases :math:`\sqrt 2` larger in 2D;
- normflows (``MaskedAffineFlow``): separate :math:`s` and :math:`t` networks (2x the parameters);
- normflows: the affine map in the generative direction, :math:`x = z e^{s} + t` (ours and
  zuko's and nflows': :math:`z = x e^{s} + t`, data to noise);
- nflows (``AffineCouplingTransform``): scale :math:`\sigma(s + 2) + 10^{-3}`, which only contracts
  from data to noise and starts at :math:`0.88` (a fresh flow is not the identity);
- the start of that alone: our clamp, its last bias set so a fresh layer's scale is nflows';
- the range of that alone: our clamp with bound :math:`a = 7` (nflows' log-scale reaches
  :math:`\log 10^{-3} = -6.9`);
- and a test of a mechanism, not a peer's choice: our clamp at half the slope.

Any target of ``targets.DENSITIES`` (forward KL) or ``targets.ENERGIES`` (reverse KL) can be
run with ``--fits``, to see what a change costs on the other rows. ``--merge`` adds the runs of
earlier ``ablation.json`` files to the table (runs are deterministic: a run made again is the same).

The masks, their alternation between layers and the MLP are the same in every library here.
:func:`self_check` runs first: every variant of ours is a flow (log-det against autograd), and the
peers' log-scale maps are theirs. Output: a Markdown table of mean ± sd over seeds, the paired
differences from ours (same seed) with their standard error, each seed's KL, and ``ablation.json``.
Findings: ``benchmarks/ABLATION.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from dgm_course.flows import AffineCoupling, Compose, FlowModel, StandardNormal, soft_clamp, tanh_clamp
from dgm_course.flows.coupling import MLP, alternating_mask
from dgm_course.targets import DENSITIES, ENERGIES, get_energy, kl_to_truth, reverse_kl_to_truth

from . import fits
from .parallel import default_workers, run_jobs
from .peers import realnvp_model
from .report import _md

__all__ = ["BUDGET", "Variant", "VARIANTS", "FITS", "BEHIND", "Run", "train_one", "self_check", "table", "main"]

ROOT = Path(__file__).resolve().parents[1]
FITS = {**{name: "forward KL" for name in DENSITIES}, **{name: "reverse KL" for name in ENERGIES}}
BEHIND = ["moons", "U1", "U4"]  # the RealNVP fits where a peer was ahead in a benchmark run: the default
# the benchmark's budget on 2026-11-28, which ABLATION.md's figures come from
BUDGET = fits.Budget(forward_steps=3000, reverse_steps=2000, n_train=20_000, n_eval=20_000, schedule="constant",
                     seeds=(0,))
NFLOWS_START = math.log(torch.sigmoid(torch.tensor(2.0)).item() + 1e-3)  # log-scale of a fresh nflows layer


# ---------------------------------------------------------------------------------------------
# one difference at a time


def _half_slope(s: Tensor, a: float) -> Tensor:  # the tanh clamp at half the slope: why does zuko's help?
    return a * torch.tanh(s / (2 * a))


def _nflows_scale(s: Tensor, a: float) -> Tensor:  # nflows: log(sigmoid(s + 2) + 1e-3), a unused
    return torch.log(torch.sigmoid(s + 2) + 1e-3)


class Coupling(AffineCoupling):
    """Our :class:`AffineCoupling` with another map from the conditioner's output to the log-scale."""

    def __init__(self, mask: Tensor, log_scale: Callable[[Tensor, float], Tensor] = tanh_clamp,
                 conditioner: nn.Module | None = None, hidden: int = 64, scale_bound: float = 2.0) -> None:
        super().__init__(mask, conditioner, hidden, scale_bound, clamp="tanh")
        self.log_scale = log_scale

    def scale_shift(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = self.mask
        s_raw, t = self.conditioner(m * x).chunk(2, dim=1)
        return self.log_scale(s_raw, self.scale_bound) * (1 - m), t * (1 - m)


class GenerativeCoupling(Coupling):
    """The affine map applied noise to data, x = z e^s + t (normflows): our two directions swapped."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return super().inverse(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return super().forward(z)


class PassThroughHalf(nn.Module):
    """An MLP on the pass-through entries only (zuko, nflows), padded to our conditioner's output shape."""

    def __init__(self, mask: Tensor, hidden: int) -> None:
        super().__init__()
        self.register_buffer("index", mask.nonzero().squeeze(1))
        self.net = MLP(len(self.index), 2 * mask.shape[0], hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x[:, self.index])


class SeparateNets(nn.Module):
    """Two MLPs, one for the log-scale and one for the shift (normflows), output (s, t) like ours."""

    def __init__(self, mask: Tensor, hidden: int) -> None:
        super().__init__()
        D = mask.shape[0]
        self.s, self.t = MLP(D, D, hidden), MLP(D, D, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.s(x), self.t(x)], dim=1)


def _ours_with(layer: Callable[[Tensor], Coupling]) -> Callable[[int], nn.Module]:
    """A builder of our 6-layer RealNVP (alternating masks, as :func:`realnvp`) with another layer."""

    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        b = BUDGET
        return FlowModel(StandardNormal((2,)), Compose([layer(alternating_mask(2, k % 2))
                                                        for k in range(b.forward_layers)]))

    return make


def _nflows_start(mask: Tensor) -> Coupling:
    layer = Coupling(mask, hidden=BUDGET.hidden)
    D, a = mask.shape[0], layer.scale_bound
    with torch.no_grad():
        layer.conditioner[-1].bias[:D] = a * math.atanh(NFLOWS_START / a)  # a tanh(b / a) = NFLOWS_START
    return layer


def _peer(library: str) -> Callable[[int], nn.Module]:
    b, clamp = BUDGET, {"clamp": "tanh"} if library == "ours" else {}  # ours as it was then
    return lambda seed: realnvp_model(library, n_layers=b.forward_layers, hidden=b.hidden, seed=seed, **clamp)


@dataclass(frozen=True)
class Variant:
    name: str
    change: str  # what differs from ours, and whose it is
    make: Callable[[int], nn.Module]  # seed -> model with log_prob and sample_with_log_prob


_H = BUDGET.hidden
VARIANTS = {v.name: v for v in [
    Variant("ours", "as benchmarked: one MLP on m*x gives (s, t); log-scale a tanh(s/a), a = 2", _peer("ours")),
    Variant("zuko", "zuko as benchmarked", _peer("zuko")),
    Variant("nflows", "nflows as benchmarked", _peer("nflows")),
    Variant("normflows", "normflows as benchmarked", _peer("normflows")),
    Variant("ours, zuko clamp", "log-scale s/(1+|s|/a) (zuko)",
            _ours_with(lambda m: Coupling(m, soft_clamp, hidden=_H))),
    Variant("ours, half input", "conditioner on the pass-through half only: first layer Linear(1, 64) (zuko, nflows)",
            _ours_with(lambda m: Coupling(m, conditioner=PassThroughHalf(m, _H)))),
    Variant("ours, separate s, t", "two MLPs, one for s and one for t (normflows)",
            _ours_with(lambda m: Coupling(m, conditioner=SeparateNets(m, _H)))),
    Variant("ours, generative affine", "x = z e^s + t, the affine map noise to data (normflows)",
            _ours_with(lambda m: GenerativeCoupling(m, hidden=_H))),
    Variant("ours, nflows scale", "scale sigmoid(s+2)+1e-3: contracts only (data to noise), starts at 0.88 (nflows)",
            _ours_with(lambda m: Coupling(m, _nflows_scale, hidden=_H))),
    Variant("ours, nflows start", f"our clamp, a fresh layer's log-scale {NFLOWS_START:.3f} (nflows' start only)",
            _ours_with(_nflows_start)),
    Variant("ours, a = 7", "our clamp with bound 7 (the range of nflows' log-scale, both ways)",
            _ours_with(lambda m: Coupling(m, hidden=_H, scale_bound=7.0))),
    Variant("ours, half slope", "log-scale a tanh(s/2a): our clamp at half the slope, so s moves in half the steps "
            "under Adam (tests why zuko's clamp helps)", _ours_with(lambda m: Coupling(m, _half_slope, hidden=_H))),
]}


# ---------------------------------------------------------------------------------------------
# training and measuring, one (fit, variant, seed) per job


@dataclass
class Run:
    fit: str
    variant: str
    seed: int
    kl: float = math.nan
    stderr: float = math.nan  # evaluation noise of this KL
    seconds: float = math.nan
    note: str = ""


def train_one(fit: str, variant: str, seed: int, budget: fits.Budget) -> Run:
    """Train ``variant`` on ``fit`` with training seed ``seed`` as the benchmark does; its KL to the truth.

    ``budget.seed`` fixes the data and evaluation points (the benchmark's), ``seed`` the rest.
    """
    b, run, start = budget, Run(fit, variant, seed), time.perf_counter()
    model = VARIANTS[variant].make(seed)
    if FITS[fit] == "forward KL":
        target, train, test = fits.density_data(fit, b)
        loss, steps = fits.nll_loss(train, b.batch_size), b.forward_steps
        measure = lambda: kl_to_truth(model.log_prob, target, test)  # noqa: E731
    else:
        energy = get_energy(fit)
        loss, steps = fits.reverse_kl_loss(energy, b.batch_size), b.reverse_steps
        measure = lambda: reverse_kl_to_truth(model, energy, b.n_eval, b.seed + 1)  # noqa: E731
    _, stopped = fits.round_robin({variant: model}, loss, steps, b.realnvp_lr, seed, b.schedule)
    if stopped:
        run.note = stopped[variant]
    else:
        run.kl, run.stderr = measure()
    run.seconds = time.perf_counter() - start
    print(f"[{time.strftime('%H:%M:%S')}] {fit} {variant} seed {seed}: KL {run.kl:.4f} ({run.seconds:.0f} s)",
          file=sys.stderr, flush=True)
    return run


def self_check() -> None:
    """Each variant of ours is a flow: log-det equal to autograd's in float64, both directions, and
    its samples' log q equal to its log_prob (randomized parameters, so not the identity's check).
    :class:`Coupling` with our clamp is :class:`AffineCoupling`; the peers' log-scales are theirs."""
    from dgm_course.jacobian import assert_inverse, assert_log_det_matches_jacobian

    mask, x = alternating_mask(2, 1), torch.randn(64, 2)
    ref, layer = AffineCoupling(mask, hidden=8, clamp="tanh"), Coupling(mask, hidden=8)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    layer.load_state_dict(ref.state_dict())
    for a, b in zip(layer(x), ref(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    s, a = 5 * torch.randn(1000), 2.0
    try:
        from nflows.transforms import AffineCouplingTransform
        from zuko.transforms import MonotonicAffineTransform
    except ImportError:
        pass
    else:
        torch.testing.assert_close(soft_clamp(s, a), MonotonicAffineTransform(s, s, slope=math.exp(-a)).log_scale)
        scale, _ = AffineCouplingTransform([0, 1], lambda i, o: nn.Identity())._scale_and_shift(torch.stack([s, s], 1))
        torch.testing.assert_close(_nflows_scale(s, a), scale[:, 0].log())
    for v in VARIANTS.values():
        model = v.make(0)
        if not isinstance(model, FlowModel):
            continue  # a peer: tests/test_benchmarks.py checks its two directions
        model = model.double()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))  # larger: scales up to e^30, where slogdet itself loses digits
        x = torch.randn(16, 2, dtype=torch.float64)
        assert_log_det_matches_jacobian(model.flow, x)
        assert_log_det_matches_jacobian(model.flow, x, direction="inverse")
        assert_inverse(model.flow, x)
        y, log_q = model.sample_with_log_prob(16, torch.Generator().manual_seed(0))
        torch.testing.assert_close(model.log_prob(y), log_q, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# the table


def _mean_sd(kl: dict[int, float], n_column: int) -> str:
    values = list(kl.values())
    if any(math.isnan(v) for v in values):
        return f"{sum(math.isnan(v) for v in values)} of {len(values)} failed"
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return f"{statistics.mean(values):.3f} ± {sd:.3f}" + (f" ({len(values)} seeds)" if len(values) < n_column else "")


def _paired(kl: dict[int, float], ours: dict[int, float]) -> str:
    d = [kl[s] - ours[s] for s in kl if s in ours]
    if any(math.isnan(x) for x in d) or len(d) < 2:
        return "-"
    wins = sum(x < 0 for x in d)
    return f"{statistics.mean(d):+.3f} ± {statistics.stdev(d) / math.sqrt(len(d)):.3f} ({wins}/{len(d)})"


def table(runs: list[Run]) -> str:
    """Mean ± sd over seeds per variant and fit; the paired difference from ours; every seed's KL."""
    fit_names = list(dict.fromkeys(r.fit for r in runs))
    variants = list(dict.fromkeys(r.variant for r in runs))
    kl: dict[tuple[str, str], dict[int, float]] = {}
    for r in sorted(runs, key=lambda r: r.seed):
        kl.setdefault((r.fit, r.variant), {})[r.seed] = r.kl
    n_seeds = {f: max(len(kl[k]) for k in kl if k[0] == f) for f in fit_names}
    names = [f"{f} ({FITS[f]}, {n_seeds[f]} seeds)" for f in fit_names]
    cell = {(f, v): kl.get((f, v), {}) for f in fit_names for v in variants}
    mean_sd = _md(["variant", "what differs from ours", *names],
                  [[v, VARIANTS[v].change.replace("|", "\\|"),
                    *[_mean_sd(cell[f, v], n_seeds[f]) if cell[f, v] else "-" for f in fit_names]] for v in variants])
    paired = _md(["variant", *names],
                 [[v, *[_paired(cell[f, v], cell[f, "ours"]) for f in fit_names]] for v in variants if v != "ours"])
    per_seed = _md(["fit", "variant", "seeds", "KL, seed by seed"],
                   [[f, v, f"{min(cell[f, v])}-{max(cell[f, v])}", " ".join(f"{x:.3f}" for x in cell[f, v].values())]
                    for f in fit_names for v in variants if cell[f, v]])
    return ("KL to the truth in nats, mean ± sd over training seeds:\n\n" + mean_sd
            + "\n\nPaired difference from ours (same seeds), mean ± standard error (seeds where it beats ours); "
            "negative is better than ours:\n\n" + paired + "\n\nEvery seed:\n\n" + per_seed)


def _load(path: Path, budget: fits.Budget) -> list[Run]:
    saved = json.loads(path.read_text())
    if saved["budget"] != asdict(budget):
        raise SystemExit(f"{path} was run with another budget: {saved['budget']}")
    return [Run(**r) for r in saved["runs"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick budget and 2 seeds: checks that it runs")
    parser.add_argument("--seeds", type=int, default=5, help="how many training seeds (default 5; 0: only --merge)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first training seed (default 0)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="processes (default: 2)")
    parser.add_argument("--fits", nargs="+", choices=list(FITS), default=BEHIND,
                        help=f"targets to run and tabulate (default: {' '.join(BEHIND)}; forward KL on a density, "
                             "reverse KL on an energy)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="ours is always run (the paired differences need it)")
    parser.add_argument("--merge", nargs="+", type=Path, default=[], metavar="JSON",
                        help="add the runs of earlier ablation.json files (same budget) to the table")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out",
                        help="folder for ablation.md and ablation.json (default: benchmarks/out)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    self_check()
    budget = fits.QUICK if args.quick else BUDGET
    seeds = range(args.first_seed, args.first_seed + (2 if args.quick else args.seeds))
    variants = ["ours", *(v for v in args.variants if v != "ours")]
    jobs = [(train_one, (f, v, s, budget)) for f in args.fits for v in variants for s in seeds]
    start = time.perf_counter()
    new = run_jobs(jobs, args.workers)
    runs = {(r.fit, r.variant, r.seed): r for path in args.merge for r in _load(path, budget)}
    runs.update({(r.fit, r.variant, r.seed): r for r in new})  # a run made again replaces the old one
    order = {v: i for i, v in enumerate(VARIANTS)}
    runs = sorted((r for r in runs.values() if r.fit in args.fits),  # the table shows the fits asked for
                  key=lambda r: (list(FITS).index(r.fit), order[r.variant], r.seed))
    text = (f"## Ablation: RealNVP, ours against the peers, one difference at a time"
            f"{' (--quick: the numbers mean nothing)' if args.quick else ''}\n\n"
            f"Budget: {asdict(budget)}; {len(runs)} runs ({len(new)} new, on {args.workers} worker(s) in "
            f"{time.perf_counter() - start:.0f} s).\n\n" + table(runs) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.md").write_text(text)
    (args.out / "ablation.json").write_text(
        json.dumps({"budget": asdict(budget), "runs": [asdict(r) for r in runs]}, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
