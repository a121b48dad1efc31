"""The in-kernel run: nbgrader's own autograde of one student, inside the sandbox.

It runs ``sandboxed/autograde.py`` in :mod:`dgm_course.course.sandbox` (its own namespaces and
root, no view of the course, the gradebook or other submissions, memory and wall-clock limits),
against a fresh copy of the assignment's gradebook that holds no student; the notebook's kernel
(``sandboxed/nofork_kernel.py``) may not start processes. It gives the cell outputs of the
feedback and the *in-kernel score*, which student code can fool and which therefore only raises
flags (:func:`dgm_course.course.verify.flag_verdicts`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from . import sandbox, sandboxed, verify
from .config import CONFIG_FILE
from .records import FAILED, GRADED, KEPT_FILES, TIMEOUT, Batch, StudentResult
from .sandbox import Limits
from .sandboxed import protocol

__all__ = ["run_in_kernel"]


@functools.cache
def _matplotlib_cache() -> Path | None:
    """The grader's matplotlib font list (built on first use), if matplotlib is there."""
    try:
        import matplotlib
        import matplotlib.font_manager  # noqa: F401 - builds the list
    except ImportError:
        return None
    found = sorted(Path(matplotlib.get_cachedir()).glob("fontlist-*.json"))
    return found[-1] if found else None


def _write_job(job: Path, batch: Batch, student_id: str, submitted: Path) -> None:
    aid = batch.assignment_id
    course = job / "course"
    # The source folder without its notebook: nbgrader copies the other files (data) beside the notebook.
    shutil.copytree(batch.course.root / batch.course.source_name / aid, course / batch.course.source_name / aid,
                    ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
    shutil.copy(batch.course.root / CONFIG_FILE, course / CONFIG_FILE)
    (course / "gradebook.db").write_bytes(batch.gradebook)
    (course / "submitted" / student_id / aid).mkdir(parents=True)
    for name in (f"{aid}.ipynb", "timestamp.txt"):
        if (submitted / name).is_file():
            shutil.copy(submitted / name, course / "submitted" / student_id / aid / name)
    config = {"Execute.record_timing": False, "Execute.store_widget_state": False}
    if batch.cell_timeout is not None:
        config["Execute.timeout"] = batch.cell_timeout
    kernel = batch.source.metadata.get("kernelspec", {}).get("name", "python3")
    (job / "job.json").write_text(json.dumps({"assignment_id": aid, "student_id": student_id, "config": config,
                                              "course_id": batch.course_id, "kernel_name": kernel}))
    sandboxed.install(job, "autograde", "nofork_kernel")
    verify.worker_library(job / "lib", ())  # the whole library: hidden tests import its references
    fonts = _matplotlib_cache()
    if fonts is not None:
        (job / "mpl").mkdir()
        shutil.copy(fonts, job / "mpl" / fonts.name)
    sandboxed.readable(job)


def _limits(timeout: float) -> Limits:
    # fork: nbgrader starts the kernel (the kernel itself may not fork); memory is per process.
    return Limits(wall_s=timeout, fork=True, memory_mb=4096, scratch_mb=512, nproc=256,
                  stdout_bytes=64 << 20, stderr_bytes=4 << 20)


def _error_line(text: str) -> str:
    """The last ``module.Error: message`` line of a log (nbgrader's own wrapper says nothing)."""
    lines = [m.group(0).strip() for m in re.finditer(r"^\s*[\w.]*(Error|Exception|Exit)\b.*$", text, re.M)
             if "NbGraderException" not in m.group(0)]
    return lines[-1][:300] if lines else "see the log"


def _read_report(stdout: bytes, max_scores: dict[str, float]) -> tuple[dict, bytes]:
    """The run's head line and autograded notebook, as plain values: unknown cells and impossible
    scores go."""
    head, notebook = protocol.read_frame(stdout, protocol.LOG_HEAD_LIMIT)
    scores = {}
    for gid, points in dict(head.get("scores", {})).items():
        if gid in max_scores and isinstance(points, (int, float)) and math.isfinite(points):
            scores[gid] = min(max(float(points), 0.0), max_scores[gid])
    manual = [gid for gid in head.get("needs_manual", []) if gid in max_scores]
    comments = {str(name)[:200]: text[:2000] for name, text in dict(head.get("comments", {})).items()
                if isinstance(text, str)}
    return {"autograded": head.get("autograded") is True, "scores": scores, "needs_manual": manual,
            "comments": comments, "error": str(head.get("error", ""))[:500], "log": str(head.get("log", ""))}, notebook


def run_in_kernel(batch: Batch, result: StudentResult, submitted: Path) -> tuple[bytes, dict | None]:
    """nbgrader's autograde of one student in the sandbox: the in-kernel score (into ``result``),
    and the autograded notebook with the run's report (``(b'', None)`` where it gave none)."""
    sid, aid = result.student_id, batch.assignment_id
    job = Path(tempfile.mkdtemp(prefix="dgm-autograde-"))
    try:
        _write_job(job, batch, sid, submitted)
        env = {"AUTOGRADE_JOB": "{job}", "PYTHONPATH": "{job}/lib", "TQDM_DISABLE": "1",
               "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
               "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
        run = sandbox.run([sys.executable, "{job}/autograde.py"], _limits(batch.timeout), job, env=env,
                          hide=[str(verify.LIBRARY)], require=batch.require, loopback=True)
    finally:
        shutil.rmtree(job, ignore_errors=True)
    log = batch.out / "logs" / f"{sid}.log"
    try:
        report, notebook = _read_report(run.stdout, batch.max_scores)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        report, notebook = None, b""
    with open(log, "w", errors="replace") as fh:  # a lone surrogate in a log is the student's text
        fh.write((report or {}).get("log", "") + run.stderr[-20_000:].decode(errors="replace"))
    if run.timed_out:
        result.in_kernel_status = TIMEOUT
        result.in_kernel_reason = f"autograding took longer than {batch.timeout:g} s and was stopped"
    elif report is None:
        result.in_kernel_status = FAILED
        result.in_kernel_reason = f"the autograder crashed ({run.describe()}); see logs/{sid}.log"
    elif not report["autograded"]:
        result.in_kernel_status = FAILED
        why = report["error"] or _error_line(report["log"])
        result.in_kernel_reason = f"nbgrader could not autograde it: {why}"
    else:
        result.in_kernel_status = GRADED
        result.in_kernel = report["scores"]
        result.needs_manual_grade = bool(report["needs_manual"])
        folder = batch.out / "autograded" / sid / aid
        folder.mkdir(parents=True)
        (folder / f"{aid}.ipynb").write_bytes(notebook)
        for name in KEPT_FILES:
            if (submitted / name).is_file():
                shutil.copy(submitted / name, folder / name)
        return notebook, report
    return b"", None
