"""The benchmarks: ``python -m benchmarks --quick`` runs and prints its table; the comparisons are fair.

No timing is asserted anywhere: only that the run works, that every library's model computes what
its name says (its two directions agree, and a peer built "like ours" starts where ours starts),
that the benchmark's training step is ``dgm_course.train.fit``'s, and that a missing peer is
reported, never dropped.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import fits, peers
from benchmarks.run import behind
from dgm_course.train import fit, fit_forward_kl

ROOT = Path(__file__).resolve().parents[1]


def _model_or_skip(make, library):
    try:
        return make(library)
    except peers.Unavailable as err:
        pytest.skip(str(err))


@pytest.mark.parametrize("library", peers.LIBRARIES)
def test_realnvp_samples_and_log_prob_agree(library):
    # log q of a sample (generative direction) must equal log_prob at it (normalizing direction);
    # a wrong adapter would make every KL of that library wrong. Parameters are randomized so the
    # check is not the identity's. float32 round-off over 6 layers: 1e-4.
    model = _model_or_skip(lambda lib: peers.realnvp_model(lib, n_layers=4, hidden=16, seed=1), library)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, log_q = model.sample_with_log_prob(64, torch.Generator().manual_seed(0))
    assert torch.allclose(model.log_prob(x), log_q, atol=1e-4)
    assert torch.isfinite(log_q).all() and log_q.std() > 0.1


@pytest.mark.parametrize("library", ["zuko", "normflows"])
def test_peer_realnvp_starts_at_the_identity_like_ours(library):
    # zero last layers: every RealNVP starts as the identity, log p = log N(x; 0, I) (nflows cannot:
    # its sigmoid scale is sigmoid(2) + 1e-3 at a zero output)
    peer = _model_or_skip(lambda lib: peers.realnvp_model(lib, n_layers=4, hidden=16), library)
    x = torch.randn(16, 2)
    expected = -0.5 * x.pow(2).sum(1) - math.log(2 * math.pi)
    assert torch.allclose(peer.log_prob(x), expected, atol=1e-5)
    assert torch.allclose(peers.realnvp_model("ours", n_layers=4, hidden=16).log_prob(x), expected, atol=1e-5)


def test_peer_planar_starts_where_ours_starts():
    # normflows gets our initialization and the same base samples: the same q before training.
    ours = peers.planar_model("ours", K=8, seed=3)
    peer = _model_or_skip(lambda lib: peers.planar_model(lib, K=8, seed=3), "normflows")
    x, log_q = ours.sample_with_log_prob(32, torch.Generator().manual_seed(0))
    y, log_r = peer.sample_with_log_prob(32, torch.Generator().manual_seed(0))
    assert torch.allclose(x, y, atol=1e-6) and torch.allclose(log_q, log_r, atol=1e-5)


@pytest.mark.parametrize("library", ["zuko", "nflows"])
def test_a_peer_without_planar_says_so(library):
    with pytest.raises((peers.NoSuchLayer, peers.Unavailable), match="planar|not installed"):
        peers.planar_model(library, K=2)


def test_round_robin_takes_the_steps_of_fit_forward_kl():
    # Our model trained in the benchmark's round robin ends exactly where fit_forward_kl takes it.
    data = torch.randn(500, 2) * torch.tensor([1.0, 0.3])
    bench = peers.realnvp_model("ours", n_layers=2, hidden=8, seed=0)
    ref = peers.realnvp_model("ours", n_layers=2, hidden=8, seed=0)

    def nll(model, generator):
        idx = torch.randint(0, data.shape[0], (32,), generator=generator)
        return -model.log_prob(data[idx]).mean()

    times, stopped = fits.round_robin({"ours": bench}, nll, steps=5, lr=1e-2, seed=7)
    fit_forward_kl(ref, data, steps=5, batch_size=32, lr=1e-2, seed=7, progress=False)
    assert len(times["ours"]) == 5 and not stopped
    for p, q in zip(bench.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_round_robin_cosine_schedule_is_notebook_05s():
    # The cosine schedule of the benchmark is the learning rate notebook 05 sets before each step:
    # lr * (1 + cos(pi (step - 1) / steps)) / 2, from lr at step 1 towards 0.
    data = torch.randn(500, 2) * torch.tensor([1.0, 0.3])
    bench = peers.realnvp_model("ours", n_layers=2, hidden=8, seed=0)
    ref = peers.realnvp_model("ours", n_layers=2, hidden=8, seed=0)
    steps, lr = 6, 1e-2
    optimizer = torch.optim.Adam(ref.parameters(), lr=lr)

    def nll(model, generator):
        idx = torch.randint(0, data.shape[0], (32,), generator=generator)
        return -model.log_prob(data[idx]).mean()

    def ref_loss(step, generator):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))
        return nll(ref, generator)

    fits.round_robin({"ours": bench}, nll, steps, lr, seed=3, schedule="cosine")
    fit(ref_loss, ref, steps, seed=3, optimizer=optimizer, progress=False)
    for p, q in zip(bench.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    assert fits.learning_rate(lr, 1, steps, "cosine") == lr and fits.learning_rate(lr, 4, steps, "constant") == lr
    assert 0 < fits.learning_rate(lr, steps, steps, "cosine") < 0.1 * lr
    with pytest.raises(ValueError, match="schedule"):
        fits.Budget(1, 1, 8, 8, schedule="linear")


def test_round_robin_reports_a_diverged_or_broken_model_and_trains_the_others():
    good, nan, broken = (peers.realnvp_model("ours", n_layers=2, hidden=8) for _ in range(3))

    def loss(model, generator):
        if model is broken:
            raise RuntimeError("shape mismatch")
        x = torch.randn(8, 2, generator=generator)
        return torch.tensor(math.nan) if model is nan else -model.log_prob(x).mean()

    times, stopped = fits.round_robin({"good": good, "nan": nan, "broken": broken}, loss, 3, 1e-3, 0)
    assert stopped == {"nan": "stopped: loss nan at step 1",
                       "broken": "failed at step 1: RuntimeError: shape mismatch"}
    assert len(times["good"]) == 3 and times["nan"] == times["broken"] == []


def test_a_missing_peer_is_reported_not_dropped(monkeypatch):
    real_import = peers._import

    def without_zuko(name):
        if name == "zuko":
            raise peers.Unavailable("not installed (ImportError: test)")
        return real_import(name)

    monkeypatch.setattr(peers, "_import", without_zuko)
    budget = fits.Budget(forward_steps=2, reverse_steps=2, n_train=64, n_eval=64, batch_size=16, forward_layers=2,
                         hidden=8, planar_K=2)
    rows = {r.library: r for r in fits.forward_kl("ring", budget, seed=1, log=lambda _: None)}
    assert set(rows) == set(peers.LIBRARIES)
    assert "not installed" in rows["zuko"].note and math.isnan(rows["zuko"].kl)
    assert math.isfinite(rows["ours"].kl) and rows["ours"].ratio == 1.0 and rows["ours"].seed == 1
    (zuko,) = [s for s in fits.summarize(list(rows.values())) if s.library == "zuko"]
    assert "not installed" in zuko.note and math.isnan(zuko.kl) and zuko.seeds == ()


def _seeds(lib, kls, ratio=1.0, notes=()):
    return [fits.FitResult("forward KL", "ring", lib, "RealNVP", seed=seed, kl=kl, stderr=0.01, step_ms=2.0 * ratio,
                           ratio=ratio, note=notes[seed] if notes else "") for seed, kl in enumerate(kls)]


def test_summarize_gives_the_mean_over_seeds_its_standard_error_and_the_worst_seed():
    rows = _seeds("ours", [0.10, 0.14, 0.12]) + _seeds("zuko", [0.2, math.nan, 0.4],
                                                       notes=["", "stopped: loss nan", ""])
    ours, zuko = fits.summarize(rows)
    # mean 0.12, sd 0.02 over 3 seeds: standard error 0.02 / sqrt(3)
    assert ours.seeds == (0, 1, 2) and ours.kl == pytest.approx(0.12) and ours.worst == 0.14
    assert ours.stderr == pytest.approx(0.02 / math.sqrt(3)) and ours.step_ms == 2.0 and ours.ratio == 1.0
    assert zuko.seeds == (0, 2) and zuko.kl == pytest.approx(0.3)
    assert zuko.note == "1 of 3 seeds without a KL: stopped: loss nan"
    (one,) = fits.summarize(_seeds("ours", [0.3]))
    assert one.kl == 0.3 and math.isnan(one.stderr)


def test_behind_flags_a_lower_mean_or_a_faster_step_only():
    rows = (_seeds("ours", [0.10, 0.14, 0.12]) + _seeds("zuko", [0.09, 0.12, 0.13], ratio=1.3)
            + _seeds("nflows", [0.2, 0.2, 0.2], ratio=0.5) + _seeds("normflows", [0.12, 0.12, 0.12], ratio=1.0))
    lines = behind(fits.summarize(rows))
    # zuko: differences -0.01, -0.02, +0.01: mean -0.00667, sd 0.01528, se 0.00882; lower on 2 of 3
    assert lines == ["forward KL on ring (RealNVP): zuko reaches KL 0.113 vs ours 0.120 (mean over 3 seeds; "
                     "zuko minus ours -0.007 ± 0.009, lower on 2 of 3 seeds)",
                     "forward KL on ring (RealNVP): a nflows step takes 0.50x ours"]


def test_a_grader_that_raises_gets_a_row(monkeypatch, tmp_path):
    import dgm_course.course.grade as grading
    from benchmarks.course import autograde_student
    from dgm_course.course.config import Course

    def broken(*args, **kwargs):
        raise RuntimeError("no user namespaces")

    monkeypatch.setattr(grading, "grade", broken)
    course = Course.load(ROOT)
    first = course.assignment_ids()[0]
    (seconds, row), = autograde_student(course, [first], tmp_path).values()
    assert row["status"] == "error" and row["reason"] == "RuntimeError: no user namespaces"


@pytest.mark.slow
def test_quick_run_writes_and_prints_the_table(tmp_path):
    # Runs every section reduced (the first notebook only): about a minute on a quiet laptop.
    run = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    table = run.stdout
    for heading in ["## Benchmarks", "### Quality against the truth", "### Cost growth", "### Course budgets"]:
        assert heading in table
    for target in ["8gaussians", "ring", "checkerboard", "moons"]:
        assert table.count(f"| {target} |") == 1
    for target in ["U1", "U2", "U3", "U4"]:  # planar and RealNVP
        assert table.count(f"| {target} |") == 2
    for library in peers.PEERS:  # each peer has its columns, whether installed or not
        assert f"{library} KL" in table
    assert "| 01_change_of_variables | 60 |" in table
    assert (tmp_path / "benchmarks.md").read_text().rstrip() == table.rstrip()
    for name in ["results.json", "fits.png", "linear_cost.png"]:
        assert (tmp_path / name).stat().st_size > 0


def test_notebook_05_quotes_the_ablations_u1_seeds_as_measured():
    # Notebook 05 plots the ablation's per-seed KLs on U1 (tanh clamp: "ours"; soft clamp: "ours, zuko
    # clamp"); they must be the ones benchmarks/ABLATION.md reports, digit for digit.
    import ast

    rows = {}
    for line in (ROOT / "benchmarks" / "ABLATION.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0] == "U1" and cells[1] in ("ours", "ours, zuko clamp"):
            rows["tanh" if cells[1] == "ours" else "soft"] = [float(x) for x in cells[3].split()]
    notebook = json.loads((ROOT / "source_notebooks" / "05_realnvp" / "05_realnvp.ipynb").read_text())
    (source,) = ["".join(c["source"]) for c in notebook["cells"] if c.get("id") == "clamps-measured"]
    (quoted,) = [ast.literal_eval(node.value) for node in ast.parse(source).body
                 if isinstance(node, ast.Assign) and node.targets[0].id == "ABLATION_U1"]
    assert quoted == rows and len(rows["tanh"]) == 15
