r"""Quality against the truth and time per training step, for our library and its peers, in one run.

- **Forward KL** (``targets.DENSITIES``): a RealNVP fitted by maximum likelihood to exact samples
  of a density with a known normalized :math:`\log\pi`; measured as :math:`KL(\pi\|p) = NLL -
  H(\pi)` on held-out samples (``targets.kl_to_truth``, paired standard error).
- **Reverse KL** (``targets.ENERGIES``): a planar flow, and a RealNVP (fewer couplings), fitted to
  :math:`e^{-U}`; measured as :math:`KL(q\|\pi)` with :math:`\log Z` by quadrature
  (``targets.reverse_kl_to_truth``).

Fairness: every library trains the same architecture (:mod:`benchmarks.peers`) with the same loop,
the loop of ``dgm_course.train.fit`` (Adam, same learning rate, schedule and step budget, each
model's own generator seeded alike, so all see the same minibatches or base samples). The models
train *round robin*, one step each in turn, in a rotating order, so a change in the machine's load
hits every library alike; a step's time is the wall time of its loss, backward pass and update,
and a library's time is the median over its steps.

Seeds: one fit is one *training seed* (the initial parameters, and the minibatches or base
samples); the data and the evaluation points are drawn once, under ``Budget.seed``, and are the
same for every training seed and library. A row of the report is the mean over
``Budget.seeds`` with its standard error (:func:`summarize`), so a gap between libraries is
measured against the spread of training, not against evaluation noise alone.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from dgm_course.targets import Energy, KnownDensity, get_density, get_energy, kl_to_truth, reverse_kl_to_truth

from .peers import LIBRARIES, NoSuchLayer, Unavailable, planar_model, realnvp_model

__all__ = ["Budget", "FULL", "QUICK", "FitResult", "Summary", "learning_rate", "round_robin", "density_data",
           "nll_loss", "reverse_kl_loss", "forward_kl", "reverse_kl", "summarize"]


@dataclass(frozen=True)
class Budget:
    """Step budgets, schedule and sizes of the fits (the same for every library)."""

    forward_steps: int
    reverse_steps: int
    n_train: int  # exact samples of each density to train on
    n_eval: int  # held-out samples (forward KL) and model samples (reverse KL) for the KL estimates
    batch_size: int = 256
    realnvp_lr: float = 2e-3
    planar_lr: float = 1e-2  # a planar flow moves slowly at the RealNVP's rate (measured on U1-U4)
    schedule: str = "cosine"  # "cosine": the learning rate falls to 0 along half a cosine; or "constant"
    forward_layers: int = 6  # couplings of the forward-KL RealNVP
    reverse_layers: int = 6  # couplings of the reverse-KL RealNVP
    hidden: int = 64
    planar_K: int = 32
    seed: int = 0  # the data and evaluation points, the same for every training seed
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # training seeds: initial parameters, minibatches or base samples

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not self.seeds:
            raise ValueError("a budget needs at least one training seed")


SCHEDULES = ("cosine", "constant")
# Forward KL: 16 couplings and 5000 cosine steps, what 8 Gaussians needs to come within 0.05 nats
# (6 couplings and 3000 constant steps left it at 0.14-0.17; 12 couplings and 6000 steps at 0.044-0.061
# over seeds 0-3). Reverse KL: the 6 couplings and 2000 steps that already fit U1-U4 within the peers.
FULL = Budget(forward_steps=5000, reverse_steps=2000, n_train=20_000, n_eval=20_000, forward_layers=16)
QUICK = Budget(forward_steps=60, reverse_steps=60, n_train=2_000, n_eval=2_000, seeds=(0, 1))


@dataclass
class FitResult:
    """One library on one target, one training seed. ``note`` says why a number is missing (or how a fit ended)."""

    kind: str  # "forward KL" or "reverse KL"
    target: str
    library: str
    architecture: str
    seed: int = 0
    kl: float = math.nan
    stderr: float = math.nan  # evaluation noise of this KL
    step_ms: float = math.nan  # median wall time of one training step
    ratio: float = math.nan  # step_ms / ours' step_ms, measured in the same round robin
    note: str = ""


@dataclass
class Summary:
    """One library on one target over the training seeds: what a row of the report shows."""

    kind: str
    target: str
    library: str
    architecture: str
    seeds: tuple[int, ...]  # the seeds with a KL
    kls: tuple[float, ...]  # their KLs, in seed order
    kl: float = math.nan  # mean over the seeds
    stderr: float = math.nan  # standard error of that mean: sd over seeds / sqrt(n)
    worst: float = math.nan  # the largest KL over the seeds
    step_ms: float = math.nan  # median over the seeds of each fit's median step
    ratio: float = math.nan  # mean over the seeds of the step-time ratio to ours
    note: str = ""  # why seeds are missing, if any are


LossFn = Callable[[nn.Module, torch.Generator], Tensor]


def learning_rate(lr: float, step: int, steps: int, schedule: str) -> float:
    """The learning rate of the 1-based ``step`` of ``steps``: ``lr`` throughout (``"constant"``), or
    from ``lr`` down towards 0 along half a cosine (``"cosine"``, notebook 05's ``cosine_lr``)."""
    if schedule == "constant":
        return lr
    return lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))


def round_robin(models: dict[str, nn.Module], loss_fn: LossFn, steps: int, lr: float, seed: int,
                schedule: str = "constant") -> tuple[dict[str, list[float]], dict[str, str]]:
    """Train ``models`` one step each in turn; return each one's step times (s) and why any stopped.

    Each model's step is ``dgm_course.train.fit``'s: ``loss_fn(model, generator)`` on its own
    generator seeded with ``seed``, a stop before the update on a non-finite loss, then
    ``zero_grad``, backward and an Adam step at :func:`learning_rate`. A model that stops is
    reported, not dropped: its reason names the step.
    """
    names = list(models)
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=lr) for name, m in models.items()}
    generators = {name: torch.Generator().manual_seed(seed) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    stopped: dict[str, str] = {}
    for step in range(1, steps + 1):
        step_lr = learning_rate(lr, step, steps, schedule)
        k = step % len(names)
        for name in names[k:] + names[:k]:  # rotate who goes first
            if name in stopped:
                continue
            start = time.perf_counter()
            try:
                loss = loss_fn(models[name], generators[name])
                value = loss.item()
                if not math.isfinite(value):
                    stopped[name] = f"stopped: loss {value} at step {step}"
                    continue
                for group in optimizers[name].param_groups:
                    group["lr"] = step_lr
                optimizers[name].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[name].step()
            except Exception as err:  # noqa: BLE001 - a library that breaks gets a row that says how
                stopped[name] = f"failed at step {step}: {_error(err)}"
                continue
            times[name].append(time.perf_counter() - start)
    return times, stopped


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:150] if str(err) else ''}"


def _build(make: Callable[[str], nn.Module], results: dict[str, FitResult]) -> dict:
    """Build each library's model; record the ones that cannot be built in their result's note."""
    models = {}
    for library in LIBRARIES:
        try:
            models[library] = make(library)
        except (Unavailable, NoSuchLayer) as err:
            results[library].note = str(err)
        except Exception as err:  # noqa: BLE001 - e.g. a peer's API changed: say so in its row
            results[library].note = f"failed to build: {_error(err)}"
    return models


def _measure(results: dict[str, FitResult], models: dict, stopped: dict[str, str],
             kl: Callable[[nn.Module], tuple[float, float]]) -> None:
    """Each trained model's KL and standard error; a failure goes to the row's note."""
    for library, model in models.items():
        if library in stopped:
            continue
        try:
            results[library].kl, results[library].stderr = kl(model)
        except Exception as err:  # noqa: BLE001
            results[library].note = f"KL failed: {_error(err)}"


def _time_columns(results: dict[str, FitResult], times: dict[str, list[float]], stopped: dict[str, str]) -> None:
    for library, ts in times.items():
        if ts:
            results[library].step_ms = 1e3 * statistics.median(ts)
        if library in stopped:
            results[library].note = stopped[library]
    ours = results["ours"].step_ms
    for result in results.values():
        result.ratio = result.step_ms / ours


def density_data(name: str, b: Budget) -> tuple[KnownDensity, Tensor, Tensor]:
    """The density ``name``, ``b.n_train`` training samples (seed ``b.seed``) and ``b.n_eval`` test samples."""
    target = get_density(name)
    train = target.sample(b.n_train, torch.Generator().manual_seed(b.seed), torch.float32)
    test = target.sample(b.n_eval, torch.Generator().manual_seed(b.seed + 1), torch.float32)
    return target, train, test


def nll_loss(train: Tensor, batch_size: int) -> LossFn:
    """``fit_forward_kl``'s loss: the NLL of a minibatch of ``train`` drawn from the model's generator."""

    def nll(model: nn.Module, generator: torch.Generator) -> Tensor:
        idx = torch.randint(0, train.shape[0], (batch_size,), generator=generator)
        return -model.log_prob(train[idx]).mean()

    return nll


def reverse_kl_loss(energy: Energy, batch_size: int) -> LossFn:
    """``fit_reverse_kl``'s loss: E_q[log q - log pi~] on base samples drawn from the model's generator."""

    def loss(model: nn.Module, generator: torch.Generator) -> Tensor:
        x, log_q = model.sample_with_log_prob(batch_size, generator)
        return (log_q - energy.log_unnormalized(x)).mean()

    return loss


def _realnvp_name(b: Budget, layers: int) -> str:
    return f"RealNVP {layers}x MLP(2x{b.hidden})"


def _realnvp_maker(b: Budget, layers: int, seed: int) -> Callable[[str], nn.Module]:
    return partial(realnvp_model, n_layers=layers, hidden=b.hidden, seed=seed)


def forward_kl(name: str, budget: Budget, seed: int = 0, log: Callable[[str], None] = print) -> list[FitResult]:
    """RealNVPs of every library fitted to the known density ``name`` with training seed ``seed``;
    KL(pi || p) in nats."""
    b = budget
    target, train, test = density_data(name, b)
    arch = _realnvp_name(b, b.forward_layers)
    results = {lib: FitResult("forward KL", name, lib, arch, seed) for lib in LIBRARIES}
    models = _build(_realnvp_maker(b, b.forward_layers, seed), results)
    log(f"forward KL on {name}, seed {seed}: {', '.join(models)} round robin, {b.forward_steps} steps")
    times, stopped = round_robin(models, nll_loss(train, b.batch_size), b.forward_steps, b.realnvp_lr, seed,
                                 b.schedule)
    _time_columns(results, times, stopped)
    _measure(results, models, stopped, lambda model: kl_to_truth(model.log_prob, target, test))
    return list(results.values())


def reverse_kl(name: str, budget: Budget, architecture: str = "planar", seed: int = 0,
               log: Callable[[str], None] = print) -> list[FitResult]:
    """Flows of every library fitted to exp(-U) of the energy ``name`` with training seed ``seed``;
    KL(q || pi) in nats.

    ``architecture`` is ``"planar"`` (K planar layers, the lecture's reverse-KL flow) or
    ``"realnvp"`` (the forward-KL RealNVP, sampled through its closed-form inverse).
    """
    energy = get_energy(name)
    b = budget
    if architecture == "planar":
        arch, lr = f"Planar K={b.planar_K}", b.planar_lr
        make = partial(planar_model, K=b.planar_K, seed=seed)
    elif architecture == "realnvp":
        arch, lr = _realnvp_name(b, b.reverse_layers), b.realnvp_lr
        make = _realnvp_maker(b, b.reverse_layers, seed)
    else:
        raise ValueError(f"architecture must be 'planar' or 'realnvp', got {architecture!r}")
    results = {lib: FitResult("reverse KL", name, lib, arch, seed) for lib in LIBRARIES}
    models = _build(make, results)

    log(f"reverse KL on {name}, {arch}, seed {seed}: {', '.join(models)} round robin, {b.reverse_steps} steps")
    times, stopped = round_robin(models, reverse_kl_loss(energy, b.batch_size), b.reverse_steps, lr, seed,
                                 b.schedule)
    _time_columns(results, times, stopped)
    _measure(results, models, stopped, lambda model: reverse_kl_to_truth(model, energy, b.n_eval, b.seed + 1))
    return list(results.values())


def summarize(results: list[FitResult]) -> list[Summary]:
    """One :class:`Summary` per (fit, library), in the order of ``results``: the mean KL over the
    training seeds with its standard error (sd / sqrt(n); nan for one seed), the worst seed, the
    median step time and the mean time ratio. A seed without a KL is left out and named in the note."""
    groups: dict[tuple, list[FitResult]] = {}
    for r in results:
        groups.setdefault((r.kind, r.architecture, r.target, r.library), []).append(r)
    summaries = []
    for (kind, arch, target, library), rows in groups.items():
        rows = sorted(rows, key=lambda r: r.seed)
        done = [r for r in rows if math.isfinite(r.kl)]
        kls = tuple(r.kl for r in done)
        failed = [r for r in rows if not math.isfinite(r.kl)]
        note = "; ".join(dict.fromkeys(r.note for r in failed if r.note))
        if failed and done:
            note = f"{len(failed)} of {len(rows)} seeds without a KL: {note}"
        s = Summary(kind, target, library, arch, tuple(r.seed for r in done), kls, note=note)
        if kls:
            s.kl, s.worst = statistics.fmean(kls), max(kls)
            s.stderr = statistics.stdev(kls) / math.sqrt(len(kls)) if len(kls) > 1 else math.nan
        steps = [r.step_ms for r in rows if math.isfinite(r.step_ms)]
        ratios = [r.ratio for r in rows if math.isfinite(r.ratio)]
        s.step_ms = statistics.median(steps) if steps else math.nan
        s.ratio = statistics.fmean(ratios) if ratios else math.nan
        summaries.append(s)
    return summaries
