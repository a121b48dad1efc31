r"""The out-of-kernel verifier: grades that student code cannot fool.

nbgrader runs the hidden tests in the student's own kernel, so student code can rewrite them
(input transformers, ``torch.allclose = lambda *a, **k: True``, objects whose ``__eq__`` is
always true). The verifier re-checks every graded quantity in a process that shares nothing with
student code:

1. **Cells.** The trusted set-up cells come from the *source* notebook (locked nbgrader cells
   that are neither solutions nor tests; never the submitted copies). The student's solution
   cells are matched by ``grade_id``; cells the student added (helpers) run too, just before the
   next solution cell they preceded. Test cells and the source's unlocked demo cells never run.
   A solution cell that is missing or renamed scores its tasks 0 with that reason.
2. **Sandboxed worker.** Set-up and student cells run in :mod:`dgm_course.course.sandbox` (no
   view of the course tree, the gradebook or other submissions; memory, CPU, output and
   per-step wall-clock limits). Then trusted *probe* code from the spec calls the student's
   functions on inputs the grader drew at grading time (from the grading seed, never from
   student code). Only numbers come back: an ``.npz`` loaded with ``allow_pickle=False``, so a
   fake ``__eq__`` can never reach the grader. There is no IPython in the worker.
   **Nothing that tells the probes apart is in the sandbox before it is used**: the job folder
   holds the cells and the probes' sources only; the seeds, the inputs and the references stay
   in the grader, which sends each task's inputs on the worker's stdin when the worker asks for
   them, after every cell ran (:class:`_Events`). Failures reach feedback in a fixed vocabulary
   (:func:`_describe`), never as the student's text, so an exception cannot carry out what
   student code read; and each grading run draws a new nonce into the seed
   (:func:`grading_seed`), so what one run lets out is worth nothing to the next.
3. **Checks in the grader.** Each output is compared with the grader's own reference and with
   log-dets and Jacobians the grader computes with :mod:`dgm_course.jacobian` on the *reference*
   map, so a self-consistent wrong flow (the identity with log-det 0) fails. Tolerances are
   explicit per check.
4. **No reference answers.** A task answered with the library's reference implementation earns
   0 with a reason: statically (imports and attribute chains of student code, all its cells read
   together with the set-up's imports, that resolve to a name the spec forbids) and at run time
   (the spec's ``hidden`` modules and objects are removed from the worker's copy of
   ``dgm_course``, which never contains the grader or the specs; a removed class or function
   leaves only a stand-in that raises). ``hidden`` must cover every forbidden name
   (:func:`_check_hidden`), so no path the static check misses (``getattr`` with a computed
   string, ``Flow.__subclasses__()``, ``gc``) reaches a reference: probes build what they need
   without it. A cell too deeply nested for ``ast`` costs the tasks that forbid names.

A step that kills the worker (``os._exit``, a loop ignoring signals, a memory bomb, an output
bomb) fails only the cell or task it was in: the worker is restarted without it, within the
submission's wall-clock budget. Grading is deterministic for a given submission and seed
(fixed thread counts, generators seeded from the seed, no timings or addresses in the feedback).

Use, after nbgrader's autograde of one student (``in_kernel``: nbgrader's score of each test
cell)::

    verdicts = verify_submission(assignment_id, submitted_ipynb, source_ipynb,
                                 seed=grading_seed(course_id, assignment_id, student_id, key, nonce),
                                 in_kernel=in_kernel_scores, require="userns")
    final = gradebook_scores(assignment_id, verdicts, source_ipynb)  # test cell grade_id -> points
    flags = [v.flag for v in verdicts if v.flag]                     # where the kernel disagreed

Specs live in :mod:`dgm_course.course.specs` (one module per assignment, see there); their
contract (:class:`Task`, :class:`Check`, :class:`AssignmentSpec`, :class:`TaskVerdict`) is
:mod:`dgm_course.course.spec`, re-exported here.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import hashlib
import importlib
import inspect
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import textwrap
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.lib.format as npformat
import torch

from . import sandbox, sandboxed
from .cells import Cell, is_setup_cell, notebook_cells, read_notebook
from .forbidden import UnreadableCell, names_by_cell, parse, reference_use, resolve
from .sandboxed import protocol
from .sandboxed.worker import NOT_NUMBERS
from .spec import AssignmentSpec, Check, SpecError, Task, TaskVerdict, grading_seed

__all__ = [
    "Check",
    "Task",
    "AssignmentSpec",
    "TaskVerdict",
    "SpecError",
    "SetupError",
    "verify_submission",
    "gradebook_scores",
    "flag_verdicts",
    "load_spec",
    "check_spec",
    "grading_seed",
    "notebook_cells",
    "is_setup_cell",
    "worker_library",
]

# The library's folder, from this file: an editable install may import ``dgm_course`` as a
# namespace package, whose ``__file__`` is None.
LIBRARY = Path(__file__).resolve().parents[1]


class SetupError(RuntimeError):
    """A trusted set-up cell failed before any student code ran: the grading environment is broken."""


def load_spec(assignment_id: str) -> AssignmentSpec:
    """The ``SPEC`` of ``dgm_course.course.specs.<assignment_id>``; :class:`SpecError` if there is none."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", assignment_id):
        raise SpecError(f"not an assignment id: {assignment_id!r}")
    try:
        module = importlib.import_module(f"{__package__}.specs.{assignment_id}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.specs.{assignment_id}":
            raise
        raise SpecError(f"no verification spec for {assignment_id!r}: write dgm_course/course/specs/"
                        f"{assignment_id}.py") from None
    _check_hidden(module.SPEC)
    return module.SPEC


def check_spec(spec: AssignmentSpec | str, source_notebook) -> AssignmentSpec:
    """The spec (or the one of an assignment id) after checking that it fits the source notebook.

    Raises :class:`SpecError` where it does not: a grader checks this once, before grading anyone.
    """
    spec = load_spec(spec) if isinstance(spec, str) else spec
    _check_spec(spec, notebook_cells(read_notebook(source_notebook)))
    return spec


# ---------------------------------------------------------------------------------------------
# The program: what the worker runs, in order


class Step(NamedTuple):
    """One cell the worker runs: ``kind`` ``"setup"`` (the source's, trusted) or ``"student"``,
    ``label`` (its grade id, or where a cell the student added sits), the tasks it answers."""

    kind: str
    label: str
    task_ids: list[str]
    source: str


def _program(spec: AssignmentSpec, source: list[Cell], submitted: list[Cell]) -> tuple[list[Step], list[str]]:
    """The cells the worker runs (:class:`Step`) and the missing solution ids.

    The order is the source's: trusted set-up cells verbatim; each solution cell replaced by the
    student's, preceded by the cells the student added before it in the submission.
    """
    task_of: dict[str, list[str]] = {}
    for t in spec.tasks:
        for sid in t.solution_ids:
            task_of.setdefault(sid, []).append(t.task_id)
    setup_ids = spec.setup_ids
    demo_sources = {c.source.strip() for c in source if c.grade_id is None}
    # Student cells grouped by the solution cell that follows them.
    by_solution: dict[str, Cell] = {}
    added_before: dict[str | None, list[Cell]] = {}
    pending: list[Cell] = []
    for c in submitted:
        if c.solution and c.grade_id:
            by_solution.setdefault(c.grade_id, c)
            added_before.setdefault(c.grade_id, []).extend(pending)
            pending = []
        elif c.grade_id is None and c.source.strip() and c.source.strip() not in demo_sources:
            pending.append(c)
    added_before.setdefault(None, []).extend(pending)
    program, missing = [], []
    for c in source:
        if c.grade_id in spec.skip_ids:
            continue
        if c.solution and c.grade_id:
            for k, extra in enumerate(added_before.get(c.grade_id, [])):
                program.append(Step("student", f"cell added before {c.grade_id} #{k + 1}", [], extra.source))
            if c.grade_id in by_solution:
                program.append(Step("student", c.grade_id, task_of.get(c.grade_id, []), by_solution[c.grade_id].source))
            else:
                missing.append(c.grade_id)
        elif is_setup_cell(c, setup_ids):  # tests never run here; unlocked demo cells are not needed
            program.append(Step("setup", c.grade_id, [], c.source))
    for k, extra in enumerate(added_before.get(None, [])):
        program.append(Step("student", f"cell added at the end #{k + 1}", [], extra.source))
    return program, missing


def _check_spec(spec: AssignmentSpec, source: list[Cell]) -> None:
    _check_hidden(spec)
    ids = {c.grade_id: c for c in source if c.grade_id}
    for t in spec.tasks:
        for sid in t.solution_ids:
            if sid not in ids or not ids[sid].solution:
                raise SpecError(f"task {t.task_id}: {sid!r} is not a solution cell of the source")
        for tid in t.test_ids:
            if tid not in ids or not ids[tid].grade:
                raise SpecError(f"task {t.task_id}: {tid!r} is not a graded test cell of the source")
        source_points = sum(ids[tid].points for tid in t.test_ids)
        if abs(source_points - t.max_points) > 1e-9:
            raise SpecError(f"task {t.task_id}: the checks give {t.max_points} points, its test cells "
                            f"{source_points}")


# ---------------------------------------------------------------------------------------------
# The worker's result channel (the worker itself: sandboxed/worker.py)


class _Events:
    """Incremental parser of the worker's result channel; tells the sandbox each step's deadline
    and answers each task's request with its inputs.

    Student code shares the worker's process and can write to the channel too, so nothing on it
    is believed beyond what the order allows: steps must start in the order the worker runs
    them, each after the one before ended. A set-up cell's failure reported before any student
    step started cannot have come from student code; anything after that may have. A task's
    inputs go out only when that task starts, after every cell ran: student code never holds
    the inputs of a task before the call that receives them.
    """

    def __init__(self, order: list[str], seconds_of: dict[str, float], frames: dict[str, bytes],
                 outbox: bytearray) -> None:
        self.buf = bytearray()
        self.order = order  # the steps this run of the worker takes, in order
        self.next = 0
        self.started: str | None = None
        self.ended: dict[str, tuple[dict | None, bytes]] = {}
        self.broken = False
        self.seconds_of = seconds_of
        self.frames = frames  # task step -> its inputs, as written to the worker's stdin
        self.outbox = outbox

    def feed(self, chunk: bytes) -> float | None:
        self.buf += chunk
        deadline = None
        while not self.broken:
            try:
                split = protocol.split_head(self.buf)
                if split is None:
                    break
                head, start, n = split
                step, kind = head["step"], head["event"]
                if kind == "start":
                    in_order = self.started is None and self.next < len(self.order) and step == self.order[self.next]
                else:
                    in_order = kind == "end" and step == self.started
                if not in_order:
                    raise ValueError(step)
            except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: a line nested deep
                # Forged, out of order or garbled: what came before still counts, and the run
                # ends now (a deadline of 0): a worker waiting for inputs would wait in vain.
                self.broken = True
                return 0.0
            if len(self.buf) < start + n:
                break
            payload = bytes(self.buf[start: start + n])
            del self.buf[: start + n]
            if kind == "start":
                self.started = step
                self.next += 1
                deadline = self.seconds_of[step]
                self.outbox += self.frames.get(step, b"")
            else:
                self.ended[step] = (_error_fields(head.get("error")), payload)
                self.started = None
        return deadline


def _error_fields(error) -> dict | None:
    """A step's error as the worker sends it, kept only in the shapes the worker writes (strings
    and a line number): student code can write to the channel, so a field may be anything."""
    if error is None:
        return None
    if not isinstance(error, dict):
        return {}
    kept = {key: error[key] for key in ("type", "cell", "message") if isinstance(error.get(key), str)}
    line = error.get("line")
    if type(line) is int:
        kept["line"] = line
    return kept


# ---------------------------------------------------------------------------------------------
# The job folder


def _hidden_parts(hidden: tuple[str, ...]) -> dict[str, set[str] | None]:
    """Module -> the names to remove from it (``None``: the whole module), from dotted names."""
    out: dict[str, set[str] | None] = {}
    for dotted in hidden:
        obj = resolve(dotted)
        if inspect.ismodule(obj):
            out[obj.__name__] = None
        elif obj is not None and str(getattr(obj, "__module__", "")).startswith("dgm_course."):
            names = out.setdefault(obj.__module__, set())
            if names is not None:
                names.add(obj.__qualname__.split(".")[0])
        else:
            raise SpecError(f"hidden name {dotted!r} is not a dgm_course module or object")
    return out


def _check_hidden(spec: AssignmentSpec) -> None:
    """Every name a task forbids must be missing from the worker's library (in the spec's
    ``hidden``): a forbidden name left there is reachable at run time by a path the static check
    cannot see (``getattr(module, "Com" + "pose")``, ``Flow.__subclasses__()``). Raises
    :class:`SpecError` where one is not, so a new spec cannot leave a reference in reach."""
    parts = _hidden_parts(spec.hidden)
    for t in spec.tasks:
        for dotted in t.forbidden:
            if not _is_hidden(dotted, parts):
                raise SpecError(f"task {t.task_id}: the forbidden name {dotted!r} is not hidden from the worker "
                                "(add it, or its module, to the spec's hidden; probes build what they need "
                                "without it)")


def _is_hidden(dotted: str, parts: dict[str, set[str] | None]) -> bool:
    """Whether the worker's library, with ``parts`` (:func:`_hidden_parts`) removed, lacks ``dotted``."""
    obj = resolve(dotted)
    if inspect.ismodule(obj):
        return obj.__name__ in parts and parts[obj.__name__] is None
    module = str(getattr(obj, "__module__", ""))
    if obj is None or not module.startswith("dgm_course."):
        raise SpecError(f"forbidden name {dotted!r} is not a dgm_course module or object")
    return module in parts and (parts[module] is None or obj.__qualname__.split(".")[0] in parts[module])


_UNAVAILABLE = " is not available while grading: write it yourself"


def _unavailable(module: str, name: str) -> ast.ClassDef:
    """A stand-in for a removed definition: a class of that name that holds none of its code and
    whose every use (a call, an instance, an instance of a subclass) raises the AttributeError
    that says why. ``from module import name`` keeps working where the library itself or a trusted
    set-up cell imports the name, and ``class GlowStep(Compose)`` still defines a (useless) class."""
    text = (f"class {name}:\n"
            f"    {'Not available while grading: the task asks you to write it yourself.'!r}\n\n"
            f"    def __new__(cls, *args, **kwargs):\n"
            f"        raise AttributeError({module + '.' + name + _UNAVAILABLE!r})\n")
    return parse(text).body[0]


def _without(source: str, module: str, names: set[str] | None) -> str:
    """``source`` with the top-level definitions of ``names`` removed (all of it for ``None``).

    The removed code is not in the worker's files at all, so it cannot be read either: a removed
    function or class leaves a stand-in of its name (:func:`_unavailable`), out of ``__all__``, and
    the module answers other removed names with an AttributeError that says why.
    """
    if names is None:
        body, names = '"""Not available while grading: the task asks you to write it yourself."""\n__all__ = []\n', None
    else:
        tree = parse(source)
        kept = []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in names:
                kept.append(_unavailable(module, node.name))
                continue
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            ids = {t.id for t in targets if isinstance(t, ast.Name)}
            if ids & names:
                continue
            if "__all__" in ids and isinstance(node.value, (ast.List, ast.Tuple)):
                node.value.elts = [e for e in node.value.elts if not (isinstance(e, ast.Constant) and e.value in names)]
            kept.append(node)
        tree.body = kept
        body = ast.unparse(tree) + "\n"
    which = "True" if names is None else f"name in {sorted(names)!r}"
    return body + (
        "\n\ndef __getattr__(name):\n"
        f"    if {which}:\n"
        f"        raise AttributeError(f'{module}.{{name}}{_UNAVAILABLE}')\n"
        f"    raise AttributeError(f\"module '{module}' has no attribute {{name!r}}\")\n")


def worker_library(dest: Path, hidden: tuple[str, ...]) -> None:
    """A copy of ``dgm_course`` for the worker: all of it but the grader (``dgm_course.course``,
    with the specs and this verifier), ``hidden`` names removed. What notebooks import beside the
    flows is :mod:`dgm_course.runtime`, so no part of the grader has to go with it."""
    src = LIBRARY
    parts = _hidden_parts(hidden)
    for path in src.rglob("*.py"):
        rel = path.relative_to(src)
        if "__pycache__" in rel.parts:
            continue
        if rel.parts[0] == "course":
            continue
        target = dest / "dgm_course" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        module = ".".join(("dgm_course", *rel.with_suffix("").parts)).removesuffix(".__init__")
        if module in parts:
            target.write_text(_without(path.read_text(), module, parts[module]))
        else:
            shutil.copyfile(path, target)


def _worker_sys_path() -> list[str]:
    out = []
    for p in map(str, sys.path):
        if p and os.path.isdir(p) and not (Path(p) / "dgm_course").exists() and p not in out:
            out.append(os.path.abspath(p))
    return out


def _task_seed(task: Task, seed: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(task.task_id.encode())) % 2**63


def _draw(task: Task, seed: int) -> tuple[dict[str, np.ndarray], bytes]:
    """A task's inputs and the frame that carries them to the worker's stdin when it asks.

    The frame's ``rng`` seeds the worker's torch and NumPy generators for the probe: a one-way
    hash of the task's seed, so knowing it tells nothing of the draw or of the other tasks.
    """
    task_seed = _task_seed(task, seed)
    inputs = {k: np.asarray(v) for k, v in task.draw(np.random.default_rng(task_seed)).items()}
    rng = int.from_bytes(hashlib.sha256(f"worker\0{task_seed}".encode()).digest()[:8], "little") % 2**63
    buf = io.BytesIO()
    np.savez(buf, **inputs)
    return inputs, protocol.frame({"rng": rng}, buf.getvalue())


def _write_job(job: Path, spec: AssignmentSpec, program) -> None:
    """The worker's files: its code, the cells, the probes' sources and the library; no seed, no
    input, no reference (those stay in the parent, see :class:`_Events`)."""
    sandboxed.install(job, "worker")
    tasks = [{"task_id": t.task_id, "probe_source": textwrap.dedent(inspect.getsource(t.probe)),
              "probe_name": t.probe.__name__} for t in spec.tasks]
    cells = [[kind, label, tids, src] for kind, label, tids, src in program]
    (job / "job.json").write_text(json.dumps({"cells": cells, "tasks": tasks, "sys_path": _worker_sys_path()}))
    worker_library(job / "lib", spec.hidden)
    sandboxed.readable(job)  # by the unprivileged worker


# ---------------------------------------------------------------------------------------------
# Grading


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")

# What the worker may say about a failure reaches feedback only through this fixed vocabulary
# (see :func:`_describe`, and the worker's own NOT_NUMBERS): a student's message text never does,
# so no message can carry out what student code read in the worker.
_HIDDEN_NAME = re.compile(r"[\w.]+" + re.escape(_UNAVAILABLE))
_BUILTIN_EXCEPTIONS = frozenset(name for name, obj in vars(builtins).items()
                                if isinstance(obj, type) and issubclass(obj, BaseException))
_NAME_ERROR = re.compile(r"name '([A-Za-z_]\w*)' is not defined")


def _probe_names(task: Task, inputs: dict[str, np.ndarray]) -> set[str]:
    """Names a probe may look up in the notebook: its string literals and the drawn string inputs."""
    names = {n.value for n in ast.walk(parse(textwrap.dedent(inspect.getsource(task.probe))))
             if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for value in inputs.values():
        if value.dtype.kind == "U":
            names.update(map(str, value.ravel()))
    return names


def _describe(error: dict | None, cells: dict[str, int], messages: tuple[str, ...] = (),
              names: set[str] = frozenset(), trusted: bool = False) -> str:
    """The feedback for a step that raised, from fields the worker sent, in a fixed vocabulary.

    Shown: the exception's nearest builtin class (any other name reads "an exception"); the
    cell (``cells``: each student cell's ``<cell label>`` and its number of lines) and a line in
    it; a message only where it is the verifier's own (:data:`NOT_NUMBERS`, a hidden name, a
    probe's missing name from ``names``) or fully matches one of the task's ``messages``. So a
    message can say no more than which of these few the student raised. ``trusted``: the step ran
    before any student code (a set-up cell): its message is shown as it is.
    """
    if not isinstance(error, dict):
        return "the step failed"
    kind = error.get("type") if error.get("type") in _BUILTIN_EXCEPTIONS else "an exception"
    text = str(error.get("message", ""))[:300]
    if trusted:
        text = _ADDRESS.sub("0x...", text)  # deterministic feedback: no memory addresses
        return f"{kind}: {text}" if text else kind
    if text == NOT_NUMBERS or any(re.fullmatch(m, text) for m in messages):
        kind += f": {text}"
    elif _HIDDEN_NAME.fullmatch(text):
        kind += ": a name of the library is not available while grading: write it yourself"
    elif (m := _NAME_ERROR.fullmatch(text)) and m.group(1) in names:
        kind += f": {text}"
    cell, line = error.get("cell"), error.get("line")
    if cell in cells and isinstance(line, int) and 1 <= line <= cells[cell]:
        kind += f" ({cell[1:-1]}, line {line})"
    return kind


def _load_outputs(payload: bytes) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz``, numbers only, read without trusting its headers.

    Every member must be stored (no zip bomb) and hold no more data than its header's shape
    promises (no huge allocation from a forged shape); ``allow_pickle=False`` refuses objects.
    """
    out = {}
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"unexpected member {info.filename!r}")
            with zf.open(info) as f:
                version = npformat.read_magic(f)
                read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
                shape, _, dtype = read_header(f)
                if dtype.hasobject or dtype.kind not in "biuf" or math.prod(shape) * dtype.itemsize > info.file_size:
                    raise ValueError(f"{info.filename}: not a plain array of numbers")
            with zf.open(info) as f:
                out[info.filename[:-4]] = npformat.read_array(f, allow_pickle=False)
    return out


def _run_checks(task: Task, outputs: dict[str, np.ndarray], expected: dict[str, torch.Tensor]):
    """Each check's points; a failure says which way it failed in a fixed vocabulary (never the
    student's values, which could carry what their code read: see :func:`_describe`)."""
    from dgm_course.jacobian import FlowCheckError, assert_close

    passed, failed, points = [], [], 0.0
    for c in task.checks:
        exp = expected[c.expected].detach().to(torch.float64)
        got = outputs.get(c.output)
        if got is None:
            why = "missing from the results"
        elif got.dtype.kind not in "biuf":
            why = "not numeric"
        elif tuple(got.shape) != tuple(exp.shape):
            why = f"expected shape {tuple(exp.shape)}, got another shape"
        elif not np.isfinite(got).all():
            why = "NaN or infinite values"
        else:
            try:
                assert_close(torch.from_numpy(got.astype(np.float64)), exp, c.atol, c.rtol, what=c.output)
                why = None
            except FlowCheckError:
                why = f"differs from the reference beyond the tolerance (atol {c.atol:g}, rtol {c.rtol:g})"
        if why is not None:
            failed.append(f"{c.name}: {c.output}: {why}")
        else:
            passed.append(c.name)
            points += c.points
    return points, passed, failed


def verify_submission(
    spec: AssignmentSpec | str,
    submitted_notebook,
    source_notebook,
    *,
    seed: int,
    in_kernel: dict[str, float] | None = None,
    isolation: str = "auto",
    require: str | None = None,
) -> list[TaskVerdict]:
    """Verify one submission; return one :class:`TaskVerdict` per task of the spec.

    ``spec``: an :class:`AssignmentSpec` or an assignment id (see :func:`load_spec`).
    ``submitted_notebook`` / ``source_notebook``: paths or parsed notebook dicts.
    ``seed``: the grading seed (see :func:`grading_seed`). ``in_kernel``: nbgrader's score of each
    test cell by ``grade_id``, to flag a task whose in-kernel score differs from the verified
    one. ``isolation`` / ``require``: passed to :func:`dgm_course.course.sandbox.run`.

    Never raises because of the submission (an unreadable notebook scores 0 with the reason);
    raises :class:`SpecError` when the spec does not fit the source notebook,
    :class:`SetupError` when a trusted set-up cell (the source's) fails before any student code
    ran (no report that student code could have forged counts), and
    :class:`~dgm_course.course.sandbox.SandboxError` when the sandbox cannot start (all are the
    grader's problems: retry or stop, never score them as the student's).
    """
    spec = load_spec(spec) if isinstance(spec, str) else spec
    source = notebook_cells(read_notebook(source_notebook))
    _check_spec(spec, source)
    try:
        submitted = notebook_cells(read_notebook(submitted_notebook))
    except (OSError, ValueError) as exc:
        return _finish(spec, {t.task_id: (0.0, [], [], f"the notebook could not be read ({type(exc).__name__})")
                              for t in spec.tasks}, in_kernel, "not run")
    program, missing = _program(spec, source, submitted)
    used, unreadable = _student_names(program)
    settled: dict[str, tuple[float, list, list, str]] = {}
    for t in spec.tasks:
        gone = [sid for sid in t.solution_ids if sid in missing]
        if gone:
            settled[t.task_id] = (0.0, [], [], f"solution cell {', '.join(gone)} not found in the submission "
                                               "(deleted, or its nbgrader metadata changed)")
        elif unreadable is not None and t.forbidden:
            settled[t.task_id] = (0.0, [], [], unreadable)
        elif (why := reference_use(t, used)) is not None:
            settled[t.task_id] = (0.0, [], [], why)
    todo = [t for t in spec.tasks if t.task_id not in settled]
    if not todo:
        return _finish(spec, settled, in_kernel, "not run")
    inputs, frames = {}, {}
    for t in todo:
        inputs[t.task_id], frames[f"task:{t.task_id}"] = _draw(t, seed)
    outputs, cell_errors, level = _run_worker(spec, program, todo, frames, isolation, require)
    cells = {f"<cell {label}>": len(src.splitlines()) for kind, label, _, src in program if kind == "student"}
    for t in todo:
        names = _probe_names(t, inputs[t.task_id])
        cell_notes = [f"{label}: {_explain(cell_errors[i], cells, t, names)}"
                      for i, (kind, label, tids, _) in enumerate(program)
                      if i in cell_errors and (t.task_id in tids or kind == "setup")]
        got = outputs.get(t.task_id)
        if not isinstance(got, dict) or "error" in got:
            why = _explain(got.get("error") if isinstance(got, dict) else got, cells, t, names)
            settled[t.task_id] = (0.0, [], [], "; ".join(cell_notes + [f"running the task failed: {why}"]))
            continue
        points, passed, failed = _run_checks(t, got["arrays"], t.expect(inputs[t.task_id]))
        settled[t.task_id] = (points, passed, failed, "; ".join(cell_notes + failed) or "all checks passed")
    return _finish(spec, settled, in_kernel, level)


def _student_names(program) -> tuple[list[tuple[str, list[tuple[str, int]]]], str | None]:
    """The names the student's cells of ``program`` use (:func:`names_by_cell`), and, for a cell
    ``ast`` cannot read, the reason that costs every task with forbidden names (None otherwise)."""
    try:
        return names_by_cell([(label, src) for kind, label, _, src in program if kind == "student"],
                              tuple(src for kind, _, _, src in program if kind == "setup")), None
    except UnreadableCell as exc:
        return [], (f"cell {exc} by the check for the library's references: a task that forbids them "
                    "cannot be verified, so it earns no points")


def _explain(error: str | dict | None, cells: dict[str, int], task: Task, names: set[str]) -> str:
    """A failure in words: the parent's own (a limit, a crash) as it is, the worker's through :func:`_describe`."""
    if isinstance(error, str):
        return error
    return _describe(error, cells, task.messages, names)


def _run_worker(spec, program, todo, frames, isolation, require):
    """Run the worker until every task has a result, restarting it without a step that killed it.

    Returns each task's ``{"arrays": ...}`` or ``{"error": fields}`` or the parent's own reason
    (a string), each cell's error (fields or a string), and the isolation level.
    """
    outputs: dict[str, dict | str] = {}
    cell_errors: dict[int, dict | str] = {}
    skip_cells: set[int] = set()
    budget = spec.wall_seconds
    level = "not run"
    job = Path(tempfile.mkdtemp(prefix="dgm-verify-"))
    try:
        _write_job(job, spec, program)
        seconds_of = {f"task:{t.task_id}": t.seconds for t in todo}
        todo_ids = {t.task_id for t in todo}
        for i, (kind, *_) in enumerate(program):
            seconds_of[f"cell:{i}"] = spec.setup_seconds if kind == "setup" else spec.cell_seconds

        while True:
            left = [t for t in todo if t.task_id not in outputs]
            if not left or budget <= 0:
                break
            # Tasks settled before the run (and those done in an earlier run) are not run again.
            skip = {"cells": sorted(skip_cells),
                    "tasks": [t.task_id for t in spec.tasks if t.task_id not in todo_ids or t.task_id in outputs]}
            order = [f"cell:{i}" for i in range(len(program)) if i not in skip_cells]
            order += [f"task:{t.task_id}" for t in spec.tasks if t.task_id not in skip["tasks"]]
            outbox = bytearray()
            events = _Events(order, seconds_of, frames, outbox)
            result = sandbox.run([sys.executable, "-s", "-S", "{job}/worker.py", json.dumps(skip)],
                                 dataclasses.replace(spec.limits, wall_s=budget), job,
                                 env={"VERIFY_JOB": "{job}"}, hide=[str(LIBRARY)],
                                 isolation=isolation, require=require, watch=events.feed, outbox=outbox)
            level = result.isolation
            budget -= result.wall_s
            for step, (error, payload) in events.ended.items():
                kind, _, name = step.partition(":")
                if kind == "cell":
                    if error is not None:
                        cell_errors[int(name)] = error
                    continue
                if name not in {t.task_id for t in left}:
                    continue
                if error is not None:
                    outputs[name] = {"error": error}
                else:
                    try:
                        outputs[name] = {"arrays": _load_outputs(payload)}
                    except Exception:  # noqa: BLE001 - anything that is not a plain npz
                        outputs[name] = "the results could not be read as numbers"
            _raise_if_setup_failed(program, cell_errors)
            finished = events.started is None and all(t.task_id in outputs for t in left)
            if result.ok and not events.broken and finished:
                break
            if events.broken:  # first: the parent itself ended the run
                why = "its results were garbled"
            elif not result.ok:
                why = result.describe()
            else:
                why = "the process exited early (status 0)"
            culprit = events.started
            kind, _, name = (culprit or "").partition(":")
            if culprit is None or events.broken or name in outputs or (kind == "cell" and int(name) in skip_cells):
                for t in left:
                    outputs.setdefault(t.task_id, why)
                break
            if kind == "task":
                outputs[name] = why
            else:
                cell_errors[int(name)] = why
                skip_cells.add(int(name))
            _raise_if_setup_failed(program, cell_errors)
        for t in todo:
            outputs.setdefault(t.task_id, "the submission's time budget was used up")
    finally:
        shutil.rmtree(job, ignore_errors=True)
    return outputs, cell_errors, level


def gradebook_scores(spec: AssignmentSpec | str, verdicts: list[TaskVerdict], source_notebook) -> dict[str, float]:
    """The verified score of every test cell (by ``grade_id``), for the gradebook.

    A task's points are split over its test cells in proportion to their points (one test cell
    per task, the usual case, simply gets the task's points).
    """
    spec = load_spec(spec) if isinstance(spec, str) else spec
    max_points = {c.grade_id: c.points for c in notebook_cells(read_notebook(source_notebook)) if c.grade_id}
    by_task = {v.task_id: v for v in verdicts}
    scores = {}
    for t in spec.tasks:
        v = by_task[t.task_id]
        share = v.points / v.max_points if v.max_points else 0.0
        for tid in t.test_ids:
            scores[tid] = share * max_points[tid]
    return scores


def _raise_if_setup_failed(program, cell_errors: dict[int, dict | str]) -> None:
    """A set-up cell that failed before any student cell ran is the grader's problem, not a 0.

    Only these reports are believed as the grader's: :class:`_Events` takes steps in order only,
    so no student code had run in that worker when they came; a set-up cell that runs after
    student code can be broken by it, and its failure is noted in the student's feedback.
    """
    for i, (kind, label, _, _) in enumerate(program):
        if kind == "student":
            return
        if i in cell_errors:
            error = cell_errors[i]
            why = error if isinstance(error, str) else _describe(error, {}, trusted=True)
            raise SetupError(f"the trusted set-up cell {label} failed: {why}")


def flag_verdicts(spec: AssignmentSpec | str, verdicts: list[TaskVerdict],
                  in_kernel: dict[str, float] | None) -> list[TaskVerdict]:
    """Set each verdict's ``in_kernel_points`` and ``flag`` from nbgrader's score of each test cell.

    For a grader that verifies first and runs nbgrader's in-kernel tests afterwards (a task
    whose test cells have no in-kernel score keeps ``None``).
    """
    spec = load_spec(spec) if isinstance(spec, str) else spec
    tests = {t.task_id: t.test_ids for t in spec.tasks}
    for v in verdicts:
        ids = tests[v.task_id]
        if in_kernel is None or not all(tid in in_kernel for tid in ids):
            continue
        v.in_kernel_points = float(sum(in_kernel[tid] for tid in ids))
        v.flag = None
        if abs(v.in_kernel_points - v.points) > 1e-9:
            v.flag = f"in-kernel score {v.in_kernel_points:g} differs from the verified score {v.points:g}: {v.reason}"
    return verdicts


def _finish(spec, settled, in_kernel, level) -> list[TaskVerdict]:
    verdicts = []
    for t in spec.tasks:
        points, passed, failed, reason = settled[t.task_id]
        verdicts.append(TaskVerdict(t.task_id, float(points), t.max_points, list(passed), list(failed), reason, level))
    return flag_verdicts(spec, verdicts, in_kernel)
