"""The verifier's worker: run a submission's cells, then each task's probe on inputs the grader
sends only when asked (:mod:`dgm_course.course.verify`).

The job folder holds the cells and the probes' sources, nothing that tells the probes apart:
after the cells ran, the worker announces each task on the result channel (its stdout, in
:mod:`protocol` frames) and reads that task's inputs (and the seed of its generators) from
stdin, which the grader writes only then. Errors go back as plain fields (the builtin base
class, the cell and line, the message); the grader decides which of them may reach feedback.

Run as ``python -s -S {job}/worker.py SKIP`` with ``VERIFY_JOB`` naming the job folder; ``SKIP``
(JSON) names the cells and tasks an earlier run of this submission settled.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import sys
import traceback
import types

try:
    from . import protocol
except ImportError:  # run as a script from its job folder, beside a copy of protocol.py
    import protocol

__all__ = ["NOT_NUMBERS", "strip_magics"]

# The one message of the worker's own that feedback shows as it is (see verify._describe).
NOT_NUMBERS = "expected a tensor of numbers, got an object of another kind"


def strip_magics(src: str) -> str:
    """Plain Python from a cell: IPython magics and shell escapes (``%...``, ``!...``) become ``pass``.

    >>> strip_magics("%matplotlib inline\\nx = 1\\n  !ls")
    'pass\\nx = 1\\n  pass'
    """
    lines = src.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        lines = lines[1:]
    return "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in lines)


def describe(exc: BaseException) -> dict:
    """An exception as plain fields: its nearest builtin class, the cell and line, the message."""
    try:
        base = next(c for c in type(exc).__mro__ if c.__module__ == "builtins").__name__
    except BaseException:  # noqa: BLE001 - a student's class may break even this
        base = "BaseException"
    if isinstance(exc, SyntaxError):
        where = (str(exc.filename), exc.lineno)
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell")]
        where = (frames[-1].filename, frames[-1].lineno) if frames else (None, None)
    try:
        text = str(exc)[:300]
    except BaseException:  # noqa: BLE001 - a student's exception may not even print
        text = ""
    return {"type": base, "cell": where[0], "line": where[1], "message": text}


class Names(dict):
    """What a probe sees of the notebook: a missing name reads as in a notebook."""

    def __missing__(self, key):
        raise NameError(f"name {key!r} is not defined")


def main() -> None:  # pragma: no cover - runs in the sandbox
    job, config = protocol.job_config("VERIFY_JOB")
    skip = json.loads(sys.argv[1])
    sys.path[:] = [os.path.join(job, "lib"), *config["sys_path"]]
    results = protocol.result_channel()  # student output goes to stderr
    requests = os.fdopen(os.dup(0), "rb")  # the grader's answers; stdin itself becomes /dev/null
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
    sys.stdin = io.TextIOWrapper(os.fdopen(0, "rb"))

    import numpy as np

    notebook = types.ModuleType("__main__")  # the cells' globals, as in a kernel
    notebook.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = notebook
    ns = notebook.__dict__
    for i, (kind, label, _tasks, src) in enumerate(config["cells"]):
        if i in skip["cells"]:
            continue
        protocol.write_frame(results, {"event": "start", "step": f"cell:{i}"})
        error = None
        try:
            exec(compile(strip_magics(src), f"<cell {label}>", "exec"), ns)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
            error = describe(exc)
        sys.stdout.flush()
        protocol.write_frame(results, {"event": "end", "step": f"cell:{i}", "error": error})
    for t in config["tasks"]:
        if t["task_id"] in skip["tasks"]:
            continue
        protocol.write_frame(results, {"event": "start", "step": f"task:{t['task_id']}"})  # answered on stdin
        head, data = protocol.read_from(requests)
        error, payload = None, b""
        try:
            if "torch" in sys.modules:
                sys.modules["torch"].manual_seed(head["rng"])
            np.random.seed(head["rng"] % 2**32)
            with np.load(io.BytesIO(data), allow_pickle=False) as f:
                inputs = {k: f[k] for k in f.files}
            del head, data
            probe_ns = {"__name__": "probe"}
            exec(compile(t["probe_source"], "<probe>", "exec"), probe_ns)
            out = probe_ns[t["probe_name"]](Names(ns), inputs)
            arrays = {}
            for k, v in dict(out).items():
                if type(v).__module__.startswith("torch") and hasattr(v, "detach"):
                    v = v.detach().cpu().numpy()
                if isinstance(v, (bool, int, float)):
                    v = np.asarray(v)
                if not isinstance(v, np.ndarray) or v.dtype.kind not in "biuf":
                    raise TypeError(NOT_NUMBERS)
                arrays[k] = np.ascontiguousarray(v)
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            payload = buf.getvalue()
        except BaseException as exc:  # noqa: BLE001
            error = describe(exc)
        sys.stdout.flush()
        protocol.write_frame(results, {"event": "end", "step": f"task:{t['task_id']}", "error": error}, payload)
    results.close()
    os._exit(0)  # no atexit handlers registered by student code


if __name__ == "__main__":
    main()
