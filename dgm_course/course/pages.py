"""The feedback page of one student: nbgrader's page of the autograded notebook with a section
that says how each task was graded, or, where nbgrader cannot make one, a page of our own.

nbgrader renders its page with the final scores in a fresh sandbox of its own
(``sandboxed/feedback.py``): the kernel of the in-kernel run could write its home and plant
templates or configuration there, so nothing of that run but the notebook and plain values goes
on, and Jupyter's paths are read-only and the grader's.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from . import sandbox, sandboxed, verify
from .config import CONFIG_FILE
from .records import ERROR, GRADED, KEPT_FILES, Batch, StudentResult
from .sandbox import Limits
from .sandboxed import protocol

__all__ = ["render", "verification_html", "write"]


# Where the feedback run's Jupyter looks for templates and configuration: empty folders of its
# read-only job (besides the installation's own, read-only too), never the run's home.
_JUPYTER_DIRS = {"JUPYTER_PATH": "jupyter/path", "JUPYTER_DATA_DIR": "jupyter/data",
                 "JUPYTER_CONFIG_DIR": "jupyter/config", "JUPYTER_CONFIG_PATH": "jupyter/config"}
_FEEDBACK_LIMITS = Limits(wall_s=120, memory_mb=4096, scratch_mb=256, stdout_bytes=64 << 20, stderr_bytes=4 << 20)


def _write_job(job: Path, batch: Batch, student_id: str, notebook: bytes, report: dict,
               scores: dict[str, float]) -> None:
    """The feedback run's job: the course's configuration, the assignment's gradebook before any
    student, the autograded notebook, the scores to show and nbgrader's comments as plain values."""
    aid = batch.assignment_id
    course = job / "course"
    (course / "autograded" / student_id / aid).mkdir(parents=True)
    (course / "autograded" / student_id / aid / f"{aid}.ipynb").write_bytes(notebook)
    shutil.copy(batch.course.root / CONFIG_FILE, course / CONFIG_FILE)
    (course / "gradebook.db").write_bytes(batch.gradebook)
    for folder in set(_JUPYTER_DIRS.values()):
        (job / folder).mkdir(parents=True, exist_ok=True)
    manual = report["needs_manual"] if batch.spec is None else []  # verified scores need no manual grade
    (job / "job.json").write_text(json.dumps({"assignment_id": aid, "student_id": student_id,
                                              "course_id": batch.course_id, "scores": scores,
                                              "needs_manual": manual, "comments": report["comments"]}))
    sandboxed.install(job, "feedback")
    sandboxed.readable(job)


def render(batch: Batch, result: StudentResult, notebook: bytes, report: dict) -> bytes:
    """nbgrader's feedback page for the autograded ``notebook`` with ``result.scores``, made in a
    sandbox of its own (no kernel, no new processes) whose only input from the student is that
    notebook; ``b''`` where it could not be made (the grader then writes a page of its own)."""
    sid = result.student_id
    job = Path(tempfile.mkdtemp(prefix="dgm-feedback-"))
    try:
        _write_job(job, batch, sid, notebook, report, result.scores)
        env = {"FEEDBACK_JOB": "{job}", "TQDM_DISABLE": "1",
               **{name: "{job}/" + folder for name, folder in _JUPYTER_DIRS.items()}}
        run = sandbox.run([sys.executable, "{job}/feedback.py"], _FEEDBACK_LIMITS, job, env=env,
                          hide=[str(verify.LIBRARY)], require=batch.require)
    finally:
        shutil.rmtree(job, ignore_errors=True)
    try:
        head, page = protocol.read_frame(run.stdout, protocol.LOG_HEAD_LIMIT)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        head, page = {}, b""
    with open(batch.out / "logs" / f"{sid}.log", "a", errors="replace") as fh:
        fh.write("\n--- feedback ---\n" + str(head.get("log", "")) + str(head.get("error", ""))
                 + run.stderr[-20_000:].decode(errors="replace"))
    return page


def verification_html(result: StudentResult) -> str:
    """The feedback section that says how each task was graded."""
    esc = html.escape
    parts = ["<div class='dgm-verification' style='border:2px solid #444;padding:0.5em 1em;margin:1em 0'>"]
    if result.verdicts is not None:
        total = sum(v.points for v in result.verdicts)
        parts.append(f"<h2>Verified score: {total:g} of {sum(v.max_points for v in result.verdicts):g}</h2>"
                     "<p>Each task was checked again outside your notebook's kernel: your solution cells ran "
                     "in a separate process on inputs drawn at grading time, and their results were compared "
                     "with the grader's own reference. These are your points; the test cells below show what "
                     "the tests printed in your kernel.</p>\n<table border='1' cellpadding='4'>"
                     "<tr><th>task</th><th>points</th><th>result</th></tr>")
        for v in result.verdicts:
            parts.append(f"<tr><td>{esc(v.task_id)}</td><td>{v.points:g} / {v.max_points:g}</td>"
                         f"<td>{esc(v.reason)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append(f"<p>Graded by nbgrader's tests in your notebook's kernel ({esc(result.verification)}).</p>")
    for gid, answered in result.written.items():
        parts.append(f"<p>Written answer {esc(gid)}: " + ("graded by hand by the course staff, against the "
                     "course's rubric; its points are not in the verified score above.</p>" if answered else
                     "no answer was written (0 points).</p>"))
    if result.in_kernel_status != GRADED and result.in_kernel_reason:
        parts.append(f"<p>The run of your notebook with nbgrader's tests: {esc(result.in_kernel_reason)}</p>")
    parts.append("</div>\n")
    return "".join(parts)


def _own_page(batch: Batch, result: StudentResult) -> None:
    """A feedback page of our own where nbgrader's cannot be made: the reason, what to do, the scores."""
    aid = batch.assignment_id
    path = batch.out / "feedback" / result.student_id / aid / f"{aid}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    if result.status == GRADED:
        title = f"graded: {sum(result.scores.values()):g} points"
        advice = "The page with your notebook could not be made; ask your instructor for it."
    elif result.status == ERROR:
        title = "not graded yet"
        advice = "The grading machine failed, not your notebook; your instructor will grade it again."
    else:
        title = "your submission could not be graded"
        advice = ("Submit the notebook of the release under its own name, with every cell of the release in "
                  "it, after a restart and a run of all cells. Ask your instructor if the reason is unclear.")
    reason = result.reason or result.in_kernel_reason
    path.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(aid)}</title></head><body>\n"
        f"<h1>{html.escape(aid)}: {html.escape(title)}</h1>\n"
        + (f"<p><b>Reason:</b> {html.escape(reason)}</p>\n" if reason else "")
        + (verification_html(result) if result.status == GRADED else "")
        + f"<p>{html.escape(advice)}</p>\n</body></html>\n"
    )


def write(batch: Batch, result: StudentResult, original: Path, page: bytes = b"") -> None:
    """nbgrader's page (``page``) with the verification section, or our own; then the two files
    that release_feedback needs."""
    aid = batch.assignment_id
    folder = batch.out / "feedback" / result.student_id / aid
    shutil.rmtree(folder, ignore_errors=True)
    if result.status == GRADED and page:
        text = page.decode(errors="replace")
        body = re.search(r"<body[^>]*>", text)
        at = body.end() if body else len(text)
        folder.mkdir(parents=True)
        (folder / f"{aid}.html").write_text(text[:at] + "\n" + verification_html(result) + text[at:])
    else:
        _own_page(batch, result)
    # nbgrader release_feedback reads both files beside every page and stops the whole release at
    # a missing one: copy the submission's, or complete the folder (a random secret: the page is
    # released under a name no one can guess, so no one fetches it).
    for name in KEPT_FILES:
        if not (folder / name).is_file():
            if (original / name).is_file():
                shutil.copy(original / name, folder / name)
            else:
                (folder / name).write_text("" if name == "timestamp.txt" else secrets.token_hex(32))
