"""The out-of-kernel verifier on a small exercise: honest work gets full marks, tricks get nothing.

Each scenario grades a whole notebook in the sandbox (seconds: the worker imports torch); the
``graded`` fixture grades them all at once, three at a time, and each test reads its own.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import io
import json
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch


from dgm_course.course import sandbox
from dgm_course.course.forbidden import names_by_cell, reference_use, resolve, used_names
from dgm_course.course.verify import (
    LIBRARY,
    SetupError,
    SpecError,
    _load_outputs,
    check_spec,
    load_spec,
    worker_library,
    _worker_sys_path,
    grading_seed,
    gradebook_scores,
    verify_submission,
)

from ._verify import with_answers
from .verify_fixtures import exercise as ex
from .verify_fixtures.spec_exercise import SPEC

SEED = grading_seed("dgm", "exercise", "student-1")
ASSIGNMENTS = sorted(p.stem for p in (LIBRARY / "course" / "specs").glob("[0-9]*.py"))
FULL = {"planar": 2.0, "sigmoid": 2.0, "jacobian": 2.0}
ZERO = {"planar": 0.0, "sigmoid": 0.0, "jacobian": 0.0}
ALL_TESTS_PASSED_IN_KERNEL = {"planar_tests": 2, "sigmoid_tests": 2, "jacobian_tests": 2}
isolated = pytest.mark.skipif(sandbox.available_isolation() == "none", reason="no Linux namespaces here")


def points(verdicts):
    return {v.task_id: v.points for v in verdicts}


def reasons(verdicts):
    return {v.task_id: v.reason for v in verdicts}


ALTERNATIVE = {
    # other names, a detached NumPy computation, a warning and stderr output: all worth full marks
    "planar_solution": '''\
import sys
import numpy as np

def planar_forward(inp, uu, ww, bias):
    a = np.tanh(inp.detach().numpy() @ ww.numpy() + float(bias))
    out = inp.detach().numpy() + a[:, None] * uu.numpy()
    ld = np.log(np.abs(1 + (1 - a**2) * float(uu @ ww)))
    warnings.warn("a warning costs nothing")
    print("debugging output on stderr", file=sys.stderr)
    return torch.from_numpy(out), torch.from_numpy(ld)
''',
    "sigmoid_solution": "def sigmoid_forward(x):\n    return torch.sigmoid(x), log_sigmoid_derivative(x).sum(1)\n",
    "jacobian_solution": '''\
def batch_jacobian(fn, x):
    one = lambda v: fn(v[None])[0]
    return torch.stack([torch.autograd.functional.jacobian(one, xi) for xi in x])
''',
}
HELPER = "def log_sigmoid_derivative(x):\n    s = torch.sigmoid(x)\n    return torch.log(s * (1 - s))\n"



def alternative():
    nb = ex.submission(ALTERNATIVE, added=[("sigmoid_solution", HELPER)])
    nb.cells[3].metadata["nbgrader"]["schema_version"] = 99  # stock nbgrader aborts the batch on this
    nb.cells.insert(1, {"cell_type": "code", "metadata": {"nbgrader": "garbage"}, "source": "x = 1",
                        "outputs": [], "execution_count": None})
    return nb


WRONG = {
    # self-consistent but wrong: the identity with log-det 0 matches its own Jacobian
    "planar_solution": "def planar_forward(x, u, w, b):\n    return x.clone(), x.new_zeros(x.shape[0])\n",
    "sigmoid_solution": ("def sigmoid_forward(x):\n"
                         "    return torch.sigmoid(x), (F.softplus(-x) + F.softplus(x)).sum(1)\n"),
}

CHEATS = {
    "planar_solution": '''\
torch.allclose = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
def planar_forward(x, u, w, b):
    return x, torch.zeros(x.shape[0], dtype=x.dtype)
''',
    "sigmoid_solution": '''\
class Anything:
    def __eq__(self, other):
        return True
    __hash__ = None
    def __array__(self, *a, **k):
        raise TypeError("no numbers here")

def sigmoid_forward(x):
    return Anything(), Anything()
''',
    "jacobian_solution": "from dgm_course.jacobian import batch_jacobian\n",
}
TRANSFORMER = "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])\n"
# The first task answered by the reference: settled before the run, which then runs only the others.
REFERENCE_FIRST = {"planar_solution": "from dgm_course.flows import Planar\n"}


KILLERS = {
    # a loop that ignores SIGINT and SIGTERM at the top level of a solution cell
    "planar_solution": ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass\n"),
    # 300k printed lines
    "sigmoid_solution": ("def sigmoid_forward(x):\n    for i in range(300_000):\n        print('line', i)\n"
                         "    return torch.sigmoid(x), x.new_zeros(x.shape[0])\n"),
    "jacobian_solution": "import sys\ndef batch_jacobian(fn, x):\n    sys.exit(0)\n",
}
EXIT_AND_MEMORY_BOMB = {
    "planar_solution": "import os\ndef planar_forward(x, u, w, b):\n    os._exit(0)\n",
    "sigmoid_solution": "def sigmoid_forward(x):\n    hog = bytearray(64 << 30)\n    return x, x\n",
}
COURSE_FILES = {"source_notebooks/exercise/exercise.ipynb": "source", "gradebook.db": "grades",
                "submitted/other/exercise/exercise.ipynb": "other student", "release/x": "x"}


def snooping(root: Path) -> dict:
    """A correct planar solution that adds 1 to z for every private file it could read or write."""
    private = [str(root / rel) for rel in COURSE_FILES] + [str(LIBRARY / "jacobian.py")]
    probe_files = f'''\
import os
leaks = []
for p in {private!r}:
    try:
        leaks.append(open(p).read())
    except OSError:
        pass
    try:
        open(p, "a").write("tampered")
        leaks.append("wrote " + p)
    except OSError:
        pass
    try:
        open(os.path.join(os.path.dirname(p), "new.txt"), "w").write("x")
        leaks.append("created")
    except OSError:
        pass

def planar_forward(x, u, w, b):
    h = torch.tanh(x @ w + b)
    z = x + h[:, None] * u
    return z + len(leaks), torch.log(torch.abs(1 + (1 - h**2) * (u @ w)))
'''
    dodge = ("import importlib\nmod = importlib.import_module('dgm_' + 'course.jacobian')\n"
             "batch_jacobian = mod.batch_jacobian\n")
    return {"planar_solution": probe_files, "jacobian_solution": dodge}


@pytest.fixture(scope="module")
def course_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    for rel, text in COURSE_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


NOTEBOOK_01 = Path(__file__).parents[2] / "source_notebooks" / "01_change_of_variables" / "01_change_of_variables.ipynb"


@pytest.fixture(scope="module")
def graded(course_tree):
    source = ex.source_notebook()
    scenarios = {
        "solution": (ex.submission(), {}),
        "release": (ex.release(), {}),
        "alternative": (alternative(), {}),
        "alternative again": (alternative(), {}),
        "wrong": (ex.submission(WRONG, drop=("jacobian_solution",)), {}),
        "cheats": (ex.submission(CHEATS, added=[("planar_solution", TRANSFORMER)]),
                   {"in_kernel": ALL_TESTS_PASSED_IN_KERNEL}),
        "killers": (ex.submission(KILLERS), {}),
        "reference first": (ex.submission(REFERENCE_FIRST), {}),
        "exit and memory bomb": (ex.submission(EXIT_AND_MEMORY_BOMB), {}),
    }
    jobs = {name: (SPEC, nb, source, kw) for name, (nb, kw) in scenarios.items()}
    if sandbox.available_isolation() != "none":  # without isolation it would really write there
        jobs["snooping"] = (SPEC, ex.submission(snooping(course_tree)), source, {})
    jobs["solution, zeroed in kernel"] = (SPEC, ex.submission(), source, {"in_kernel": {
        "planar_tests": 0, "sigmoid_tests": 2, "jacobian_tests": 2}})  # as when a warning reached stderr
    jobs["solution, no isolation"] = (SPEC, ex.submission(), source, {"isolation": "none"})
    if sandbox._mode_works("userns"):  # the level a grader without root gets
        jobs["solution, unprivileged"] = (SPEC, ex.submission(), source, {"isolation": "userns"})
    if NOTEBOOK_01.exists():
        nb01 = json.loads(NOTEBOOK_01.read_text())
        jobs["01 solution"] = ("01_change_of_variables", nb01, nb01, {})
        jobs["01 release"] = ("01_change_of_variables", ex.blank(nb01), nb01, {})
        jobs["01 dense elementwise"] = ("01_change_of_variables",
                                        with_answers(nb01, {"elementwise_log_det": DENSE_ELEMENTWISE}), nb01, {})
    broken = ex.source_notebook()
    broken.cells[1].source += "raise RuntimeError('no torch on this grading machine')\n"
    jobs["broken setup"] = (SPEC, ex.submission(), broken, {})
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(verify_submission, spec, nb, src, seed=SEED, **kw)
                   for name, (spec, nb, src, kw) in jobs.items()}
        return {name: f.exception() or f.result() for name, f in futures.items()}


def test_the_solution_scores_full_marks(graded):
    verdicts = graded["solution"]
    assert points(verdicts) == FULL
    assert all(v.reason == "all checks passed" and v.failed == [] and v.max_points == 2 for v in verdicts)
    assert verdicts[0].passed == [c.name for c in SPEC.tasks[0].checks]
    assert {v.isolation for v in verdicts} == {sandbox.available_isolation()}
    if "solution, unprivileged" in graded:
        assert [(v.points, v.isolation) for v in graded["solution, unprivileged"]] == [(2, "userns")] * 3


def test_a_correct_answer_zeroed_in_the_kernel_gets_its_points_and_a_flag(graded):
    planar, sigmoid, _ = graded["solution, zeroed in kernel"]
    assert (planar.points, planar.in_kernel_points) == (2, 0)
    assert planar.flag == "in-kernel score 0 differs from the verified score 2: all checks passed"
    assert (sigmoid.points, sigmoid.in_kernel_points, sigmoid.flag) == (2, 2, None)


def test_the_fallback_level_grades_the_same(graded):
    verdicts = graded["solution, no isolation"]
    assert points(verdicts) == FULL and {v.isolation for v in verdicts} == {"none"}


def test_the_blank_release_scores_zero(graded):
    assert points(graded["release"]) == ZERO
    assert all("NotImplementedError" in r for r in reasons(graded["release"]).values())


def test_correct_work_written_differently_gets_full_marks_and_grading_is_deterministic(graded):
    assert points(graded["alternative"]) == FULL, reasons(graded["alternative"])
    assert graded["alternative again"] == graded["alternative"]


def test_a_wrong_task_loses_exactly_its_points(graded):
    verdicts = graded["wrong"]
    assert points(verdicts) == {"planar": 0, "sigmoid": 1, "jacobian": 0}
    planar, sigmoid, jacobian = verdicts
    assert len(planar.failed) == 2  # the identity fails both the reference and the grader's Jacobian
    assert sigmoid.passed == ["z = sigmoid(x)"] and "log_det" in sigmoid.failed[0]
    assert "jacobian_solution not found" in jacobian.reason


def test_verified_scores_go_to_the_test_cells(graded):
    scores = gradebook_scores(SPEC, graded["wrong"], ex.source_notebook())
    assert scores == {"planar_tests": 0.0, "sigmoid_tests": 1.0, "jacobian_tests": 0.0}


def test_in_kernel_tricks_change_nothing_and_are_flagged(graded):
    verdicts = graded["cheats"]
    assert points(verdicts) == ZERO
    planar, sigmoid, jacobian = verdicts
    assert len(planar.failed) == 2
    # a fixed text: the student's class name could carry anything their code read
    assert "TypeError: expected a tensor of numbers, got an object of another kind" in sigmoid.reason
    assert "Anything" not in sigmoid.reason
    assert "uses the library's reference dgm_course.jacobian" in jacobian.reason
    assert "earns no points" in jacobian.reason
    assert all(v.in_kernel_points == 2 and v.flag.startswith("in-kernel score 2 differs") for v in verdicts)
    assert graded["solution"][0].flag is None


@isolated
def test_the_reference_is_unavailable_at_run_time_and_private_files_are_unreachable(graded, course_tree):
    verdicts = graded["snooping"]
    assert points(verdicts) == {"planar": 2, "sigmoid": 2, "jacobian": 0}, reasons(verdicts)
    assert "not available while grading" in verdicts[2].reason
    for rel, text in COURSE_FILES.items():
        assert (course_tree / rel).read_text() == text
    assert list(course_tree.rglob("new.txt")) == []


def test_a_task_settled_before_the_run_leaves_the_later_tasks_their_points(graded):
    verdicts = graded["reference first"]
    assert points(verdicts) == {"planar": 0, "sigmoid": 2, "jacobian": 2}, reasons(verdicts)
    assert "uses the library's reference dgm_course.flows" in verdicts[0].reason


def test_a_step_that_kills_the_worker_costs_only_its_task(graded):
    verdicts = graded["killers"]
    assert points(verdicts) == ZERO
    planar, sigmoid, jacobian = reasons(verdicts).values()
    assert "planar_solution: the wall-clock limit was reached" in planar
    assert "NameError: name 'planar_forward' is not defined" in planar
    assert "output limit" in sigmoid
    assert "SystemExit" in jacobian


def test_exit_and_memory_bomb_cost_their_task_and_spare_the_others(graded):
    verdicts = graded["exit and memory bomb"]
    assert points(verdicts) == {"planar": 0, "sigmoid": 0, "jacobian": 2}
    assert "exited early" in verdicts[0].reason
    assert "MemoryError" in verdicts[1].reason


def test_a_broken_setup_is_the_graders_error_not_a_zero(graded):
    assert isinstance(graded["broken setup"], SetupError)
    assert "setup failed: RuntimeError: no torch on this grading machine" in str(graded["broken setup"])


def test_an_unreadable_notebook_scores_zero_without_raising(tmp_path):
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{not json")
    verdicts = verify_submission(SPEC, bad, ex.source_notebook(), seed=SEED)
    assert points(verdicts) == {"planar": 0, "sigmoid": 0, "jacobian": 0}
    assert all("could not be read" in v.reason for v in verdicts)


def test_specs_are_found_by_assignment_id():
    assert load_spec("01_change_of_variables").assignment_id == "01_change_of_variables"
    with pytest.raises(SpecError, match="no verification spec"):
        load_spec("99_missing")
    with pytest.raises(SpecError, match="not an assignment id"):
        load_spec("../evil")


def test_a_spec_that_does_not_fit_the_source_is_the_instructors_error():
    source = ex.source_notebook()
    source.cells[3].metadata["nbgrader"]["points"] = 5  # planar_tests now says 5 points, the spec 2
    with pytest.raises(SpecError, match="planar"):
        verify_submission(SPEC, ex.submission(), source, seed=SEED)


@pytest.mark.parametrize("code, name", [
    ("import dgm_course.flows as fl\nfl.Planar(2)", "dgm_course.flows.Planar"),
    ("from dgm_course.flows import *\nPlanar(2)", "dgm_course.flows.Planar"),
    ("from dgm_course import jacobian as J\nJ.batch_jacobian(f, x)", "dgm_course.jacobian.batch_jacobian"),
    ("import dgm_course.jacobian\ndgm_course.jacobian.batch_jacobian", "dgm_course.jacobian.batch_jacobian"),
    ("importlib.import_module('dgm_course.flows.residual')", "dgm_course.flows.residual"),
    ("%time x = 1\nfrom dgm_course.flows import Planar", "dgm_course.flows.Planar"),  # a magic hides nothing
])
def test_static_detection_follows_aliases(code, name):
    assert name in [n for n, _ in used_names(code)]


def test_the_seed_is_the_graders_and_stable():
    assert grading_seed("dgm", "exercise", "student-1") == SEED
    assert grading_seed("dgm", "exercise", "student-2") != SEED
    keyed = grading_seed("dgm", "exercise", "student-1", key="the grader's secret")
    assert keyed != SEED and keyed == grading_seed("dgm", "exercise", "student-1", key="the grader's secret")
    assert json.loads(json.dumps(SEED)) == SEED


@pytest.mark.parametrize("cells, setup, name", [
    # an alias imported in one cell, used in a later one and in a function of an earlier one
    ([("a", "import dgm_course.flows as F"), ("b", "F.Compose([])")], (), "dgm_course.flows.Compose"),
    ([("a", "def f(x):\n    return J.batch_jacobian(g, x)"), ("b", "from dgm_course import jacobian as J")], (),
     "dgm_course.jacobian.batch_jacobian"),
    ([("a", "from dgm_course.vae import *"), ("b", "MaskedConv2d(1, 1, 3, 'A')")], (), "dgm_course.vae.MaskedConv2d"),
    # a name the trusted set-up cell imports
    ([("a", "PixelCNNDecoder(2).convs[0].mask")], ("from dgm_course.vae import VAE, PixelCNNDecoder",),
     "dgm_course.vae.PixelCNNDecoder"),
])
def test_static_detection_reads_the_cells_together(cells, setup, name):
    used = [n for _, names in names_by_cell(cells, setup) for n, _ in names]
    assert name in used, used


def test_static_detection_of_a_reference_behind_a_long_chain():
    spec = load_spec("02_composition")
    used = names_by_cell([("a", "import dgm_course as d"),
                          ("b", "f = d.flows.base" + ".__dict__" * 900 + "\ng = d.flows.base.Compose\n")])
    assert "dgm_course.flows.Compose (line 2 of b)" in reference_use(spec.tasks[0], used)


@pytest.mark.parametrize("code, why", [
    ("x = 0\n" + "x" + ".real" * 100_000 + "\n", "is nested too deeply to be read (RecursionError)"),
    ("x = 0  # \udcff\n", "could not be read (UnicodeEncodeError)"),
])
def test_a_cell_ast_cannot_read_costs_the_tasks_that_forbid_names_not_the_grader(code, why):
    verdicts = verify_submission(SPEC, ex.submission({"planar_solution": code + ex.SOLUTIONS["planar_solution"]}),
                                 ex.source_notebook(), seed=SEED)
    assert points(verdicts) == ZERO  # every task of the exercise forbids a name
    assert all(f"cell planar_solution {why}" in v.reason for v in verdicts), reasons(verdicts)
    assert {v.isolation for v in verdicts} == {"not run"}


def test_a_spec_that_leaves_a_forbidden_name_in_reach_is_refused(monkeypatch):
    leaky = dataclasses.replace(SPEC, hidden=("dgm_course.flows.residual", "dgm_course.jacobian"))
    with pytest.raises(SpecError, match="'dgm_course.flows.Sigmoid' is not hidden"):
        check_spec(leaky, ex.source_notebook())
    with pytest.raises(SpecError, match="'dgm_course.flows.Sigmoid' is not hidden"):
        verify_submission(leaky, ex.submission(), ex.source_notebook(), seed=SEED)
    module = importlib.import_module("dgm_course.course.specs.02_composition")
    monkeypatch.setattr(module, "SPEC", dataclasses.replace(module.SPEC, hidden=module.SPEC.hidden[1:]))
    with pytest.raises(SpecError, match="'dgm_course.flows.Compose' is not hidden"):
        load_spec("02_composition")


def _definitions(path: Path) -> dict[str, ast.stmt]:
    return {node.name: node for node in ast.parse(path.read_text()).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


@pytest.mark.parametrize("assignment_id", ASSIGNMENTS)
def test_no_forbidden_reference_is_in_the_workers_library(assignment_id, tmp_path):
    """Every name a spec forbids is, in the worker's copy of the library, a whole module emptied or
    a stand-in class that holds no code but a ``__new__`` that raises."""
    spec = load_spec(assignment_id)
    worker_library(tmp_path, spec.hidden)
    for dotted in {f for t in spec.tasks for f in t.forbidden}:
        obj = resolve(dotted)
        module = obj if inspect.ismodule(obj) else importlib.import_module(obj.__module__)
        path = tmp_path / Path(module.__file__).relative_to(LIBRARY.parent)
        found = _definitions(path)
        if inspect.ismodule(obj):
            assert set(found) == {"__getattr__"} and "__all__ = []" in path.read_text(), dotted
            continue
        stand_in = found[obj.__name__]
        assert isinstance(stand_in, ast.ClassDef) and not stand_in.bases, dotted
        assert [type(n) for n in stand_in.body] == [ast.Expr, ast.FunctionDef], dotted
        assert stand_in.body[1].name == "__new__" and isinstance(stand_in.body[1].body[0], ast.Raise), dotted


def test_a_stand_in_raises_on_every_use_and_keeps_imports_working(tmp_path):
    worker_library(tmp_path, ("dgm_course.flows.Compose", "dgm_course.vae.PixelCNNDecoder"))
    # as the worker does: no site, the library copy first, no folder that holds the real library
    code = f"import sys\nsys.path[:] = {[str(tmp_path), *_worker_sys_path()]!r}\n" + """
import pytest
import dgm_course
assert dgm_course.__file__.startswith(sys.path[0])
from dgm_course.flows import Affine
from dgm_course.flows.coupling import realnvp
from dgm_course.flows.glow import GlowStep
from dgm_course.vae import PixelCNNDecoder
import dgm_course.flows
import dgm_course.flows.base as base
assert not hasattr(dgm_course.flows, "Compose")
assert not issubclass(base.Compose, base.Flow) and "Compose" not in [c.__name__ for c in base.Flow.__subclasses__()]
for use in (lambda: base.Compose([Affine(2)]), lambda: realnvp(2), lambda: GlowStep(4, 8, (2, 2)),
            lambda: PixelCNNDecoder(2)):
    with pytest.raises(AttributeError, match="is not available while grading: write it yourself"):
        use()
print("ok")
"""
    proc = subprocess.run([sys.executable, "-s", "-S", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr[-3000:]


def test_the_workers_library_holds_no_grader_and_no_hidden_reference(tmp_path):
    worker_library(tmp_path, ("dgm_course.jacobian.batch_jacobian", "dgm_course.flows.residual"))
    lib = tmp_path / "dgm_course"
    # Nothing of the grader (specs, the verifier, the sandbox), and no allow-list to keep: the
    # notebooks' set-up imports dgm_course.runtime, which goes whole.
    assert not (lib / "course").exists()
    assert {"__init__.py", "kernel.py", "checks.py", "guards.py"} <= {p.name for p in (lib / "runtime").iterdir()}
    jacobian = (lib / "jacobian.py").read_text()
    assert "def batch_jacobian" not in jacobian and "def assert_close" in jacobian
    assert "'batch_jacobian'" not in jacobian.split("__all__")[1].split("]")[0]
    compile(jacobian, "jacobian.py", "exec")
    assert "class Planar" not in (lib / "flows" / "residual.py").read_text()


# Issue 20: notebook 01's Task 4 says O(m), never the m x m Jacobian. This answer builds it with
# autograd and takes its slogdet; it scored full marks at m = 2000.
DENSE_ELEMENTWISE = """\
def elementwise_log_det(h, x):
    one = lambda v: h(v[None])[0]
    jac = torch.stack([torch.autograd.functional.jacobian(one, xi, vectorize=True) for xi in x.detach()])
    return torch.linalg.slogdet(jac).logabsdet
"""


def test_the_dense_elementwise_answer_is_right_where_it_fits():
    """The answer is correct at small m: its 0 below is the cost rule's doing."""
    namespace = {"torch": torch}
    exec(DENSE_ELEMENTWISE, namespace)
    x = torch.randn(3, 50, dtype=torch.float64)
    assert torch.allclose(namespace["elementwise_log_det"](torch.sinh, x), torch.log(torch.cosh(x)).sum(1),
                          rtol=1e-12, atol=0)


@pytest.mark.skipif(not NOTEBOOK_01.exists(), reason="notebook 01 not in this checkout")
def test_notebook_01_building_the_m_by_m_jacobian_earns_nothing(graded):
    too_wide = importlib.import_module("dgm_course.course.specs.01_change_of_variables").TOO_WIDE
    verdicts = {v.task_id: v for v in graded["01 dense elementwise"]}
    assert {t: v.points for t, v in verdicts.items()} == {
        "log_prob_transformed": 3, "batch_jacobian": 3, "log_abs_det": 2, "elementwise_log_det": 0}
    assert f"RuntimeError: {too_wide}" in verdicts["elementwise_log_det"].reason, verdicts["elementwise_log_det"].reason


@pytest.mark.skipif(not NOTEBOOK_01.exists(), reason="notebook 01 not in this checkout")
def test_notebook_01_solution_scores_full_marks_and_its_release_zero(graded):
    assert {v.task_id: (v.points, v.max_points) for v in graded["01 solution"]} == {
        "log_prob_transformed": (3, 3), "batch_jacobian": (3, 3), "log_abs_det": (2, 2), "elementwise_log_det": (2, 2)}
    blank = graded["01 release"]
    assert [v.points for v in blank] == [0, 0, 0, 0]
    assert all("NotImplementedError" in v.reason for v in blank)


def _npz(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=True)
    return buf.getvalue()


def test_results_are_read_as_plain_numbers_only():
    z = np.arange(6.0).reshape(2, 3)
    assert _load_outputs(_npz({"z.npy": _npy(z)}))["z"].tolist() == z.tolist()
    header = io.BytesIO()  # a shape of 10^10 entries on 4 entries of data: a huge allocation
    np.lib.format.write_array_header_1_0(header, {"shape": (10**10,), "fortran_order": False, "descr": "<f8"})
    lying = header.getvalue() + np.zeros(4).tobytes()
    forged = [
        _npz({"z.npy": _npy(z)}, zipfile.ZIP_DEFLATED),  # compressed: could be a zip bomb
        _npz({"z.npy": _npy(np.array([object()], dtype=object))}),  # an object: needs pickle
        _npz({"z.npy": lying}),
        _npz({"z.pkl": b"anything"}),
    ]
    for payload in forged:
        with pytest.raises(ValueError):
            _load_outputs(payload)
