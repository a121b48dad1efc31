"""Grade a folder of submissions: nbgrader's autograder in a sandbox, every score verified outside it.

Submissions follow nbgrader's ``submitted`` layout: ``<submissions>/<student_id>/<assignment_id>/
<assignment_id>.ipynb`` (``timestamp.txt`` and ``submission_secret.txt`` beside it, as ``nbgrader
submit`` writes them, are kept). Grading happens in a grading folder ``out`` that is a course
folder of its own, so ``nbgrader release_feedback`` runs there:

    out/source_notebooks/<id>/     a copy of the source, released again to fill the gradebook
    out/gradebook.db               nbgrader's gradebook: written by the grader only, final scores (or a
                                   database server's, ``db_url``: :mod:`dgm_course.course.gradebook`)
    out/submitted/<student>/<id>/  the validated notebook of each student (and its two text files)
    out/autograded/<student>/<id>/ the notebook as nbgrader's in-kernel run left it
    out/feedback/<student>/<id>/   one HTML feedback page per student, graded or not
    out/logs/<student>.log         what nbgrader said
    out/grades.csv                 one row per student (columns: :func:`final_rows`)
    out/grading_key.txt            the secret in each student's grading seed (made once, kept)
    out/grading_runs.jsonl         one line per run: its nonce (new each run) and whom it graded

Each student, in a pool of ``workers`` threads (each drives its student's child processes) or on
a worker of a Dask cluster (:mod:`dgm_course.course.cluster`: the same steps in a temp folder of
the worker, whose files come back to the grading process):

1. **Validate**: the notebook is there under its name, is JSON (not nested deeper than
   :data:`MAX_JSON_DEPTH`), is a valid notebook, no test cell is missing that nbgrader cannot put
   back, and every set-up cell is the release's; else the row says why (``rejected``: the
   student's to fix, never the grader's).
2. **In-kernel run** (:mod:`dgm_course.course.inkernel`): nbgrader's own autograde inside
   :mod:`dgm_course.course.sandbox` (its own namespaces and root, no view of the course, the
   gradebook or other submissions, memory and wall-clock limits), against a fresh copy of the
   assignment's gradebook that holds no student; the notebook's kernel may not start processes.
   It gives the cell outputs of the feedback and the *in-kernel score*, which student code can
   fool and which therefore only raises flags.
3. **Verification**: :func:`~dgm_course.course.verify.verify_submission` re-runs the student's
   solution cells in another sandbox and checks numbers against the grader's own references.
   Its score is the final one; a task whose in-kernel score differs is flagged with the reason.
   An assignment without a spec keeps its in-kernel score and is marked unverified.
4. **Feedback** (:mod:`dgm_course.course.pages`): nbgrader renders the feedback page of the
   autograded notebook with the final scores in a second, fresh sandbox: the kernel of the
   in-kernel run could write its home and plant templates or configuration there, so nothing of
   that run but the notebook and plain values goes on. A section lists each task's verified
   result; where nbgrader cannot make a page, a page of our own says why.
5. **Gradebook**: the grading process alone, as each student's result comes in, writes the final
   scores into the gradebook (one transaction per student, tried again on a conflict with another
   writer of a shared database).

What one row holds and what a batch shares: :mod:`dgm_course.course.records`. The threat model
and what this does and does not protect: ``docs/grading.md``.
"""

from __future__ import annotations

import csv
import json
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import Future, as_completed
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import gradebook, pages, roster, verify
from .cells import (MAX_NOTEBOOK_BYTES, grade_cells, is_setup_cell, nbgrader_meta, notebook_cells, read_notebook,
                    task_name, written_cells)
from .cluster import Runner, runner
from .config import CONFIG_FILE, Course, CourseError, execution_env, nbgrader_api
from .report import LEADING, TRAILING
from .inkernel import run_in_kernel
from .records import ERROR, FAILED, GRADED, INVALID, KEPT_FILES, MISSING, REJECTED, TIMEOUT, Batch, StudentResult
from .sandbox import SandboxError
from .spec import SpecError, grading_seed
from .verify import flag_verdicts

__all__ = ["StudentResult", "validate_submission", "grade", "reproduce", "final_rows", "write_csv", "GRADED",
           "REJECTED", "INVALID", "FAILED", "TIMEOUT", "ERROR", "MISSING"]

STUB = "YOUR ANSWER HERE"  # nbgrader's text for a cleared Markdown solution (ClearSolutions.text_stub)
MAX_JSON_DEPTH = 64  # a notebook needs about 8 levels; deeper JSON is refused before it is parsed
_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")  # no glob or path characters: nbgrader globs ids
_MARKER = ".dgm-course-grading"
_KEY_FILE = "grading_key.txt"  # the grader's secret in the grading seed; kept by every re-run
_RUNS_FILE = "grading_runs.jsonl"  # each run's nonce, with the grades: what reproduce() needs
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # unrolled: linear, fast on 20 MiB
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
CLUSTER_CONFIG = ("DgmCourseGrade", "cluster")  # c.DgmCourseGrade.cluster in nbgrader_config.py: --cluster's default


def validate_submission(folder: Path, assignment_id: str, source: nbformat.NotebookNode,
                        setup_ids: tuple[str, ...] | None = None) -> tuple[Path | None, str]:
    """``(notebook, '')`` if ``folder`` holds a gradable ``<assignment_id>.ipynb``, else ``(None, reason)``.

    Every reason is the submission's fault. ``setup_ids``: the set-up cells the verifier runs (a
    spec's; default: the source's locked cells), which must be the source's.
    """
    expected = folder / f"{assignment_id}.ipynb"
    if not folder.is_dir():
        return None, f"no folder {assignment_id}/ in the submission"
    if expected.is_symlink():  # the grader would read whatever it points to, with its own rights
        return None, f"{expected.name} is a symbolic link: submit the notebook itself"
    if not expected.is_file():
        others = sorted(p.name for p in folder.glob("*.ipynb"))
        if others:
            return None, f"renamed notebook: found {', '.join(others)}, expected {expected.name}"
        return None, f"no notebook: expected {expected.name}"
    if expected.stat().st_size > MAX_NOTEBOOK_BYTES:
        return None, (f"notebook too large: {expected.stat().st_size / 2**20:.0f} MiB, the limit is "
                      f"{MAX_NOTEBOOK_BYTES >> 20} MiB (clear the outputs and submit again)")
    raw = expected.read_bytes()
    if _json_depth(raw) > MAX_JSON_DEPTH:
        return None, f"corrupt notebook: its JSON is nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as err:  # noqa: BLE001 - NotJSONError, UnicodeDecodeError, anything else a file can cause
        return None, f"corrupt notebook: not valid JSON ({type(err).__name__}: {_first_line(err)})"
    try:
        json.dumps(nb, ensure_ascii=False).encode()
    except (UnicodeEncodeError, RecursionError):
        return None, ("corrupt notebook: not valid Unicode (a lone surrogate, e.g. an escape \\ud800 with no pair): "
                      "remove it and submit again")
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        return None, f"corrupt notebook: not a valid notebook ({err.message[:200]})"
    except Exception as err:  # noqa: BLE001 - a structure the validator itself cannot walk
        return None, f"corrupt notebook: not a valid notebook ({type(err).__name__})"
    try:
        problem = _unrestorable_cells(source, nb) or _changed_setup(source, nb, setup_ids)
    except Exception as err:  # noqa: BLE001 - metadata of odd shapes that the schema lets through
        problem = f"corrupt notebook: unreadable nbgrader metadata ({type(err).__name__})"
    return (None, problem) if problem else (expected, "")


def _restore_written(source: nbformat.NotebookNode, path: Path) -> None:
    """Put a written answer the student deleted back, empty (nbgrader's stub), after the cell that
    precedes it in the source: nbgrader itself can put a deleted cell back only after a solution or
    test cell, and would fail on the whole notebook. The answer scores 0, like any left empty."""
    written = written_cells(source)
    submitted = nbformat.read(path, as_version=4)
    ids = [nbgrader_meta(c).get("grade_id") for c in submitted.cells]  # any metadata a student wrote
    missing = [gid for gid in written if gid not in ids]
    if not missing:
        return
    order = [nbgrader_meta(c).get("grade_id") for c in source.cells]
    for gid in missing:
        meta = dict(nbgrader_meta(source.cells[order.index(gid)]))
        stub = nbformat.v4.new_markdown_cell(STUB, metadata={"nbgrader": meta})
        before = [g for g in order[:order.index(gid)] if g in ids]
        at = ids.index(before[-1]) + 1 if before else len(ids)
        submitted.cells.insert(at, stub)
        ids.insert(at, gid)
    nbformat.write(submitted, path)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else ""


def _json_depth(raw: bytes) -> int:
    """How deeply the JSON text ``raw`` nests (an estimate where it is not JSON), without parsing it:
    the parsers recurse, so a deep file would exhaust the stack of whatever reads it."""
    import numpy as np

    brackets = np.frombuffer(_NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw)), dtype=np.uint8)
    if not brackets.size:
        return 0
    opening = (brackets == ord("[")) | (brackets == ord("{"))
    return int(np.cumsum(np.where(opening, 1, -1)).max())


def _changed_setup(source: nbformat.NotebookNode, submitted: nbformat.NotebookNode,
                   setup_ids: tuple[str, ...] | None) -> str:
    """Why the submission's set-up cells are not the source's, or ''.

    The verifier runs the source's set-up, never the submission's; a submission that changed or
    deleted one was not tested with the set-up it is graded with, which is the student's to fix
    (and a set-up that fails from the source is then the grading machine's fault alone).
    """
    theirs: dict[str, str] = {}
    for cell in notebook_cells(submitted):
        if cell.grade_id is not None:
            theirs.setdefault(cell.grade_id, cell.source)
    for cell in notebook_cells(source):
        if not is_setup_cell(cell, setup_ids):
            continue
        if cell.grade_id not in theirs:
            return f"the set-up cell {cell.grade_id!r} is missing: restore it from the release and submit again"
        if theirs[cell.grade_id].strip() != cell.source.strip():
            return (f"the set-up cell {cell.grade_id!r} differs from the release's: grading runs the release's "
                    "set-up, so restore that cell and submit again")
    return ""


def _unrestorable_cells(source: nbformat.NotebookNode, submitted: nbformat.NotebookNode) -> str:
    """nbgrader puts a deleted test cell back after the nbgrader cell before it in the source; if
    that one is gone too (or is not a solution or test cell), nbgrader fails: say so instead.
    Strict on purpose: nbgrader metadata of another shape raises here, and the caller rejects the
    notebook ("unreadable nbgrader metadata") rather than grading a cell nbgrader may misread."""
    present = {c.metadata["nbgrader"]["grade_id"] for c in submitted.cells
               if c.metadata.get("nbgrader", {}).get("grade") or c.metadata.get("nbgrader", {}).get("solution")}
    ordered = [c for c in source.cells if "nbgrader" in c.metadata]
    written = written_cells(source)  # a deleted written answer comes back empty (_restore_written)
    for index, cell in enumerate(ordered):
        gid = cell.metadata["nbgrader"]["grade_id"]
        if not cell.metadata["nbgrader"].get("grade") or gid in present or gid in written:
            continue
        before = ordered[index - 1].metadata["nbgrader"]["grade_id"] if index else None
        if before is not None and before not in present:
            return (f"missing grade cell: the test cell {gid!r} and the cell {before!r} before it were deleted, "
                    f"so nbgrader cannot put the test back; restore both from the release")
    return ""


def _grading_key(out: Path) -> str:
    """The grading folder's secret, made on its first grading (only the grader can read it)."""
    path = out / _KEY_FILE
    if not path.is_file():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def _prepare(course: Course, assignment_id: str, out: Path, server: str | None,
             records: roster.CourseRecords = roster.CourseRecords(), only: list[str] | None = None) -> bytes:
    """Make ``out`` a grading folder for ``assignment_id``; return the gradebook of its in-kernel runs.

    That gradebook is always a fresh sqlite file that holds the assignment and no student (each
    in-kernel run gets a copy: no network in the sandbox). It is ``out/gradebook.db`` too unless
    the grades go to a ``server``: then the assignment is added there (a server's gradebook holds the
    whole course: nothing is removed), and ``out``'s configuration points at it, so that ``nbgrader
    release_feedback`` in ``out`` reads the same gradebook. The roster and the due date of the
    course's gradebook (``records``) go into the grading gradebook.

    ``only``: grade just these students again (or for the first time) and keep everyone else's
    files, rows and gradebook entries; the folder must then be ``assignment_id``'s grading folder.
    """
    marker = out / _MARKER
    if out.exists() and any(p.name != _KEY_FILE for p in out.iterdir()) and not marker.exists():
        raise CourseError(f"{out} is not empty and is not a grading folder: choose another --out")
    keep = only is not None and marker.exists()
    if keep and marker.read_text().strip() != assignment_id:
        raise CourseError(f"{out} is the grading folder of {marker.read_text().strip()}, not of {assignment_id}")
    for name in (course.source_name, course.release_name):
        shutil.rmtree(out / name, ignore_errors=True)
    if keep:  # only these students' files go
        for sid in only:
            for step in ("submitted", "autograded", "feedback"):
                shutil.rmtree(out / step / sid, ignore_errors=True)
            (out / "logs" / f"{sid}.log").unlink(missing_ok=True)
    else:
        for name in ("submitted", "autograded", "feedback", "logs"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("gradebook.db", "grades.csv"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{assignment_id}\n")
    shutil.copy(course.root / CONFIG_FILE, out / CONFIG_FILE)
    shutil.copytree(course.root / course.source_name / assignment_id, out / course.source_name / assignment_id)
    with tempfile.TemporaryDirectory(prefix="dgm-gradebook-") as tmp:
        _generate_assignment(course, out, assignment_id, gradebook.sqlite_url(Path(tmp)))
        template = (Path(tmp) / "gradebook.db").read_bytes()
    if server is not None:
        with open(out / CONFIG_FILE, "a") as fh:
            fh.write(f"\n# dgm-course grade: the gradebook is a database server's\nc.CourseDirectory.db_url = {server!r}\n")
        gradebook.ensure_schema(server, course.config.CourseDirectory.get("course_id", ""))
        _generate_assignment(course, out, assignment_id, server, attempts=gradebook.ATTEMPTS)
    elif not (keep and (out / "gradebook.db").is_file()):
        (out / "gradebook.db").write_bytes(template)
    gradebook.write(server or gradebook.sqlite_url(out), course.config.CourseDirectory.get("course_id", ""),
                    lambda gb: roster.add_to(gb, assignment_id, records))
    (out / "logs").mkdir(exist_ok=True)
    return template


def _generate_assignment(course: Course, out: Path, assignment_id: str, db_url: str, attempts: int = 1) -> None:
    """nbgrader's generate_assignment into the gradebook at ``db_url`` (tried ``attempts`` times: on a
    shared server another grader may be adding the same assignment's cells at the same moment)."""
    for _ in range(attempts):
        with execution_env():
            result = nbgrader_api(course, out, **{"CourseDirectory.db_url": db_url}).generate_assignment(assignment_id)
        if result["success"]:
            return
    raise CourseError(f"nbgrader generate_assignment into {gradebook.shown(db_url)} failed:\n"
                      f"{result.get('log', '')}{result.get('error', '')}")


# ---------------------------------------------------------------------------------------------
# Verification


def _verify(batch: Batch, result: StudentResult) -> None:
    """Final scores from the verifier; a grader-side failure (tried twice) is an ``error`` row."""
    seed = grading_seed(batch.course_id, batch.assignment_id, result.student_id, key=batch.key, nonce=batch.nonce)
    error: Exception | None = None
    # Tried twice: a trusted set-up cell that failed on a loaded machine (an import past its time)
    # may pass the next time; the sandbox already tries its own start again (sandbox.run).
    for _ in range(2):
        try:
            verdicts = verify.verify_submission(batch.spec, result.notebook, batch.source_path, seed=seed,
                                                require=batch.require)
            break
        except (SpecError, verify.SetupError, SandboxError) as exc:
            error = exc
    else:
        result.status = ERROR
        result.reason = f"grader error, not the student's (tried twice): {type(error).__name__}: {error}"
        return
    verified = verify.gradebook_scores(batch.spec, verdicts, batch.source_path)
    # A graded code cell no task covers would score 0: specs must cover every one (check_spec). A
    # written answer scores what a grader gave it in the formgrader (see _write_gradebook), never here.
    result.scores = {gid: verified.get(gid, 0.0) for gid in batch.max_scores}
    result.written = _written_answers(result.notebook, written_cells(batch.source))
    result.needs_manual_grade = any(result.written.values())
    result.verdicts = verdicts
    result.verification = verdicts[0].isolation if verdicts else "nothing to verify"
    result.status, result.reason = GRADED, ""


# ---------------------------------------------------------------------------------------------
# Gradebook


def _written_answers(notebook: Path | None, ids: Iterable[str]) -> dict[str, bool]:
    """Which written answers (grade ids of Markdown answer cells) the submission fills in.

    Read by the grader from the submitted file, never from the kernel, and defensively: a cell
    that is missing, malformed or still nbgrader's stub counts as not answered.
    """
    answered = dict.fromkeys(ids, False)
    try:
        cells = notebook_cells(read_notebook(notebook), cell_type="markdown")
    except (OSError, TypeError, ValueError):
        return answered
    for cell in cells:
        if cell.grade_id in answered:
            answered[cell.grade_id] = cell.source.strip() not in ("", STUB)
    return answered


def _timestamp(folder: Path):
    from nbgrader.utils import parse_utc

    try:
        return parse_utc((folder / "timestamp.txt").read_text().strip())
    except (OSError, ValueError, OverflowError):
        return None


def _write_gradebook(batch: Batch, result: StudentResult, folder: Path) -> None:
    """The final scores of one student into the gradebook (the grading process is its only writer
    among the graders' processes; :func:`gradebook.write` retries a conflict with other writers)."""
    aid, sid = batch.assignment_id, result.student_id
    manual = result.needs_manual_grade and result.verdicts is None
    timestamp = _timestamp(folder)
    result.timestamp = timestamp.isoformat(sep=" ") if timestamp else ""

    def scores(gb) -> None:
        gb.update_or_create_student(sid)
        if result.status == MISSING:  # nothing submitted (any earlier submission's grades go)
            if sid in {s.student.id for s in gb.find_assignment(aid).submissions}:
                gb.remove_submission(aid, sid)
            return
        gb.update_or_create_submission(aid, sid, **({"timestamp": timestamp} if timestamp else {}))
        for g in gb.find_submission_notebook(aid, aid, sid).grades:
            if g.name in result.written:  # graded by hand: a grader's score stays, flagged for review
                g.auto_score = None if result.written[g.name] else 0.0  # as nbgrader: no response scores 0
                g.needs_manual_grade = result.written[g.name] or g.manual_score is not None
                result.scores[g.name] = float(g.manual_score or 0.0)
                result.needs_manual_grade = result.needs_manual_grade or g.needs_manual_grade
                continue
            g.auto_score = result.scores.get(g.name, 0.0)
            g.manual_score = None
            g.needs_manual_grade = manual
        result.late_penalty = roster.late_penalty(batch.course, gb, aid, sid, sum(result.scores.values()))

    gradebook.write(batch.db_url, batch.course_id, scores)


# ---------------------------------------------------------------------------------------------
# One student, the batch


def _grade_student(batch: Batch, student_id: str) -> StudentResult:
    """Every step for one student but the gradebook (:func:`_record`); nothing that happens here
    stops the batch. A thread of the grading process or a cluster's worker runs it."""
    original = batch.submissions / student_id / batch.assignment_id
    try:
        result = _grade_student_steps(batch, student_id, original)
    except Exception as exc:  # noqa: BLE001 - a grader bug costs one row, never the batch
        result = _grader_error(student_id, exc)
    _ensure_feedback(batch, result)
    return result


def _grader_error(student_id: str, exc: BaseException, what: str = "grader error") -> StudentResult:
    return StudentResult(student_id, ERROR, f"{what}, not the student's: {type(exc).__name__}: {exc}")


def _ensure_feedback(batch: Batch, result: StudentResult) -> None:
    """Our own page where the student has none, or where the row is not (or no longer) graded."""
    sid = result.student_id
    if result.status in (ERROR, REJECTED) or not (batch.out / "feedback" / sid).exists():
        original = batch.submissions / sid / batch.assignment_id
        try:
            pages.write(batch, result, original if _STUDENT_ID.match(sid) else batch.out / "logs")
        except Exception:  # noqa: BLE001 - the row still says what happened
            pass


def _record(batch: Batch, result: StudentResult) -> StudentResult:
    """The gradebook entry of one student, written by the grading process as the result comes in;
    a gradebook that cannot be written turns the row into ``error`` (grade again)."""
    if result.status == ERROR or not _STUDENT_ID.match(result.student_id):
        return result  # graded again later, or no usable id: no gradebook entry
    try:
        _write_gradebook(batch, result, batch.submissions / result.student_id / batch.assignment_id)
    except Exception as exc:  # noqa: BLE001 - one row says it; the next student may get through
        result = _grader_error(result.student_id, exc, f"the gradebook {gradebook.shown(batch.db_url)} was not written")
        _ensure_feedback(batch, result)
    return result


def _validate(batch: Batch, original: Path) -> tuple[Path | None, str]:
    """:func:`validate_submission` with the set-up cells the batch's verifier runs."""
    return validate_submission(original, batch.assignment_id, batch.source,
                               batch.spec.setup_ids if batch.spec is not None else None)


def _grade_student_steps(batch: Batch, student_id: str, original: Path) -> StudentResult:
    if not _STUDENT_ID.match(student_id):
        return StudentResult(student_id, REJECTED, "the folder name is not a usable student id "
                             "(letters, digits, '.', '_', '@', '-')")
    notebook, reason = _validate(batch, original)
    if reason:
        return StudentResult(student_id, REJECTED, reason)
    target = batch.out / "submitted" / student_id / batch.assignment_id
    target.mkdir(parents=True)
    shutil.copy(notebook, target / notebook.name)  # the notebook only: no student module beside it
    _restore_written(batch.source, target / notebook.name)
    for name in KEPT_FILES:
        if (original / name).is_file():
            shutil.copy(original / name, target / name)
    result = StudentResult(student_id, GRADED, notebook=target / notebook.name)
    if batch.spec is not None:
        _verify(batch, result)
        if result.status == ERROR:
            return result  # graded again later: no in-kernel run, no gradebook entry
    notebook, report = run_in_kernel(batch, result, target)
    if batch.spec is not None:
        flag_verdicts(batch.spec, result.verdicts, result.in_kernel)
    else:
        result.verification = "unverified: no spec for this assignment"
        result.status, result.reason = result.in_kernel_status, result.in_kernel_reason
        if result.status == GRADED and result.in_kernel is None:
            result.status, result.reason = FAILED, "nbgrader wrote no scores to the gradebook"
        result.scores = dict(result.in_kernel or {})
    page = pages.render(batch, result, notebook, report) if report is not None and result.status == GRADED else b""
    pages.write(batch, result, original, page)
    return result


# ---------------------------------------------------------------------------------------------
# On a cluster's worker: the same steps in a temp folder, the files sent back


@dataclass(frozen=True)
class _Shared:
    """What a worker needs of the batch, as plain values (a worker shares no file with the grader):
    the course's configuration and the assignment's source folder, the spec, the limits, the
    in-kernel runs' gradebook, the grading key and the run's nonce."""

    assignment_id: str
    course_files: dict[str, bytes]
    max_scores: dict[str, float]
    spec: object | None
    timeout: float
    cell_timeout: float | None
    require: str | None
    gradebook: bytes
    key: str
    nonce: str
    fingerprint: str


@dataclass(frozen=True)
class _Outcome:
    """A worker's answer: the student's result and the files of its grading folder, by relative path."""

    result: StudentResult
    files: dict[str, bytes]


def _files(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` by its relative path (symbolic links are not followed)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _shared(batch: Batch) -> _Shared:
    from .cluster import code_fingerprint

    source = Path(batch.course.source_name) / batch.assignment_id
    course_files = {CONFIG_FILE: (batch.course.root / CONFIG_FILE).read_bytes()}
    course_files |= {f"{source.as_posix()}/{name}": data
                     for name, data in _files(batch.course.root / source).items()}
    return _Shared(batch.assignment_id, course_files, batch.max_scores, batch.spec, batch.timeout, batch.cell_timeout,
                   batch.require, batch.gradebook, batch.key, batch.nonce, code_fingerprint())


def _submission_files(batch: Batch, student_id: str) -> dict[str, bytes] | None:
    """The validated notebook and its text files, to send to a worker; ``None`` where the student
    is not gradable (the grading process then writes that row itself, with no sandbox to run)."""
    original = batch.submissions / student_id / batch.assignment_id
    if not _STUDENT_ID.match(student_id):
        return None
    notebook, _ = _validate(batch, original)
    if notebook is None:
        return None
    names = [notebook.name] + [name for name in KEPT_FILES if (original / name).is_file()]
    return {name: (original / name).read_bytes() for name in names}


def _grade_remote(shared: _Shared, student_id: str, submission: dict[str, bytes]) -> _Outcome:
    """One student on a cluster's worker: :func:`_grade_student` in a temp course and grading folder
    built from ``shared``; the files it wrote there come back with the result."""
    from .cluster import code_fingerprint

    if shared.fingerprint != code_fingerprint():
        raise CourseError(f"this worker runs another version of dgm-course ({code_fingerprint()}) than the grader "
                          f"({shared.fingerprint})")
    with tempfile.TemporaryDirectory(prefix="dgm-grade-worker-") as tmp:
        tmp = Path(tmp)
        _write_files(tmp / "course", shared.course_files)
        _write_files(tmp / "submitted" / student_id / shared.assignment_id, submission)
        (tmp / "out" / "logs").mkdir(parents=True)
        course = Course.load(tmp / "course")
        source_path = course.source_notebook(shared.assignment_id)
        batch = Batch(course, shared.assignment_id, source_path, nbformat.read(source_path, as_version=4),
                       shared.max_scores, shared.spec, tmp / "submitted", tmp / "out", shared.timeout,
                       shared.cell_timeout, shared.require, shared.gradebook, shared.key,
                       gradebook.sqlite_url(tmp / "out"), shared.nonce)  # never written here
        result = _grade_student(batch, student_id)
        result.notebook = None  # a path on the worker
        return _Outcome(result, _files(tmp / "out"))


def _students_own(files: dict[str, bytes], student_id: str) -> dict[str, bytes]:
    """Only the files of this student's folders: whatever a worker sends, it cannot write another
    student's files, the CSV or the gradebook."""
    prefixes = tuple(f"{folder}/{student_id}/" for folder in ("submitted", "autograded", "feedback"))
    return {name: data for name, data in files.items() if ".." not in name.split("/")
            and (name.startswith(prefixes) or name == f"logs/{student_id}.log")}


def _collect(batch: Batch, student_id: str, future: Future) -> StudentResult:
    """One student's result as the grading process receives it: the worker's files into the grading
    folder, then the gradebook. A task the cluster gave up on is an ``error`` row."""
    try:
        outcome = future.result()
    except Exception as exc:  # noqa: BLE001 - KilledWorker, a worker that could not run it: grade again
        result = _grader_error(student_id, exc, "the cluster could not grade it")
        _ensure_feedback(batch, result)
        return result
    if isinstance(outcome, _Outcome):
        _write_files(batch.out, _students_own(outcome.files, student_id))
        result = outcome.result
        notebook = batch.out / "submitted" / student_id / batch.assignment_id / f"{batch.assignment_id}.ipynb"
        result.notebook = notebook if notebook.is_file() else None
    else:
        result = outcome
    return _record(batch, result)


def _submit(batch: Batch, work: Runner, shared: _Shared | None, student_id: str) -> Future:
    """Start one student: in a thread of this process, on a worker (with a copy of the submission),
    or, for a student a worker has nothing to do for, here and now."""
    if not work.remote:
        return work.submit(_grade_student, batch, student_id)
    submission = _submission_files(batch, student_id)
    if submission is not None:
        return work.submit(_grade_remote, shared, student_id, submission)
    done: Future = Future()
    done.set_result(_grade_student(batch, student_id))
    return done


def _grade_all(batch: Batch, ids: list[str], work: Runner, progress: bool) -> list[StudentResult]:
    """Every student's result, in the order of ``ids``; the gradebook written as they come in."""
    from tqdm.auto import tqdm

    shared = _shared(batch) if work.remote else None
    futures = {_submit(batch, work, shared, student_id): student_id for student_id in ids}
    results: dict[str, StudentResult] = {}
    for future in tqdm(as_completed(futures), total=len(futures), desc=f"grading {batch.assignment_id}",
                       unit="student", disable=not progress):
        results[futures[future]] = _collect(batch, futures[future], future)
    return [results[student_id] for student_id in ids]


def final_rows(course: Course, assignment_id: str, results: list[StudentResult],
               max_scores: dict[str, float]) -> list[dict]:
    """The CSV rows, one per student, in the order of ``results``: the columns of
    :data:`~dgm_course.course.report.LEADING`, one per task, then those of
    :data:`~dgm_course.course.report.TRAILING`.

    ``max_scores`` maps each test cell's grade id to its points, in notebook order. Columns:

    - ``student_id``, ``status`` (graded; rejected: the submission's fault, see ``reason``;
      failed or timeout: nbgrader's run of an assignment without a spec; missing: on the course's
      roster, nothing submitted; error: the grading machine's own failure, to grade again),
      ``reason`` (why it is not graded), ``score`` (after the late penalty), ``max_score``,
      ``late_penalty`` (points off, nbgrader's late-submission plugin), ``timestamp`` (of the
      submission, as nbgrader recorded it, UTC), ``needs_manual_grade`` (a written answer awaits a
      grader, or a grader's score on one awaits review after a regrade);
    - one column per task, named after its function (``test_<name>`` -> ``<name>``): final points;
      a written answer's column (``derive_<name>``) holds the score a grader gave it in the
      formgrader (0 until then, and for no answer), and ``max_score`` counts its points;
    - ``verified``: ``yes`` when the verifier's scores are the final ones; ``isolation``: the
      sandbox level of the verification (or why there is none);
    - ``in_kernel_score`` / ``in_kernel_status``: what nbgrader's tests in the student's kernel gave;
    - ``flags``: each task whose in-kernel score differs from the verified one, with the reason;
    - ``details``: each task that lost points, with the verifier's reason (the feedback shows it too);
    - ``feedback``: the feedback page, relative to the grading folder (none for a missing student).
    """
    rows = []
    for result in results:
        scores = {task_name(gid): points for gid, points in result.scores.items()}
        verdicts = result.verdicts or []
        flags = [f"{v.task_id}: {v.flag}" for v in verdicts if v.flag]
        if result.verdicts is not None and result.in_kernel is None:
            flags.insert(0, f"no in-kernel score to compare: {result.in_kernel_reason or result.in_kernel_status}")
        raw = round(sum(scores.values()), 6)
        values = {
            "student_id": result.student_id, "status": result.status, "reason": result.reason,
            "score": "" if result.status == ERROR else round(raw - result.late_penalty, 6),
            "max_score": sum(max_scores.values()), "late_penalty": result.late_penalty,
            "timestamp": result.timestamp, "needs_manual_grade": result.needs_manual_grade,
            "verified": "yes" if result.verdicts is not None else "no",
            "isolation": result.verification,
            "in_kernel_score": "" if result.in_kernel is None else round(sum(result.in_kernel.values()), 6),
            "in_kernel_status": " ".join(filter(None, [result.in_kernel_status, result.in_kernel_reason and
                                                       f"({result.in_kernel_reason})"])),
            "flags": "; ".join(flags),
            "details": "; ".join(f"{v.task_id}: {v.reason}" for v in verdicts if v.points < v.max_points),
            "feedback": "" if result.status == MISSING else
            f"feedback/{result.student_id}/{assignment_id}/{assignment_id}.html",
        }
        tasks = {task_name(gid): 0.0 if result.status == MISSING else scores.get(task_name(gid), "")
                 for gid in max_scores}
        rows.append({**{c: values[c] for c in LEADING}, **tasks, **{c: values[c] for c in TRAILING}})
    return rows


def _merged(path: Path, rows: list[dict]) -> list[dict]:
    """The rows of an earlier ``grades.csv`` at ``path`` for every other student, and ``rows``, by id."""
    try:
        with open(path, newline="") as fh:
            kept = [{c: r.get(c) or "" for c in rows[0]} for r in csv.DictReader(fh)
                    if r["student_id"] not in {n["student_id"] for n in rows}]
    except FileNotFoundError:
        kept = []
    return sorted(kept + rows, key=lambda r: r["student_id"])


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["student_id"])
        writer.writeheader()
        writer.writerows(rows)


def _spec(assignment_id: str, spec, source_path: Path):
    """The assignment's verification spec, checked against the source; ``None`` if it has none."""
    try:
        return verify.check_spec(spec if spec is not None else verify.load_spec(assignment_id), source_path)
    except SpecError as err:
        if spec is None and str(err).startswith("no verification spec"):
            return None
        raise CourseError(f"the verification spec of {assignment_id} does not fit its source notebook: {err}") \
            from None


def _configured_cluster(course: Course) -> str | None:
    section, key = CLUSTER_CONFIG
    return course.config[section].get(key) if section in course.config else None


def grade(course: Course, assignment_id: str, submissions: Path, out: Path, timeout: float = 600,
          progress: bool = True, students: Iterable[str] | None = None,
          log: Callable[[str], None] = print, workers: int = 1, cell_timeout: float | None = None,
          spec=None, require: str | None = "userns", cluster: str | None = None,
          db_url: str | None = None, nonce: str | None = None) -> list[dict]:
    """Grade every student folder in ``submissions``; write ``out/grades.csv``; return its rows.

    ``timeout``: the wall-clock limit of one student's in-kernel run (cells also stop after
    nbgrader's ``Execute.timeout``, or ``cell_timeout`` when given); the verifier's limits are
    its spec's. ``workers``: students graded at once (the grades do not depend on it).
    ``spec``: the :class:`~dgm_course.course.spec.AssignmentSpec` (default: the assignment's,
    none: unverified). ``require``: the weakest sandbox level accepted (``None``: any, even none).
    ``cluster``: a Dask scheduler's address, or ``local:N`` (default: ``c.DgmCourseGrade.cluster`` of
    the course's configuration, else ``workers`` threads here; :mod:`dgm_course.course.cluster`).
    ``db_url``: a database server for the gradebook (default: the course's ``CourseDirectory.db_url``
    if it names one, else ``out/gradebook.db``; :mod:`dgm_course.course.gradebook`). An unreachable
    scheduler or database stops the run before ``out`` is touched.
    The grading seeds use ``out/grading_key.txt`` (made on the first run) and ``nonce`` (default: a
    fresh random one), which ``out/grading_runs.jsonl`` records with the run: every run, re-runs
    into ``out`` included, checks on new inputs; :func:`reproduce` runs a recorded one again.

    ``students``: grade only these (again, or late ones for the first time) and keep every other
    student's row, feedback and gradebook entry in ``out``; default: everyone, ``out`` made afresh.
    Everyone means each student folder in ``submissions`` and each student of the course's roster
    (:mod:`dgm_course.course.roster`); one with nothing submitted gets a ``missing`` row with 0.
    The due date there and nbgrader's late-submission plugin set each late submission's penalty.

    Every student who submitted gets a row and a feedback page, also when the submission could not
    be graded. Returns the rows of the students graded in this run; ``grades.csv`` holds everyone's.
    """
    source_path = course.source_notebook(assignment_id)
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    if not submissions.is_dir():
        raise CourseError(f"no submissions folder {submissions}")
    records = roster.read(course, assignment_id)
    everyone = {p.name for p in submissions.iterdir() if p.is_dir()} | {s.id for s in records.students}
    ids = sorted(set(students)) if students else sorted(everyone)
    if not ids:
        raise CourseError(f"{submissions} holds no student folders (<student_id>/{assignment_id}/{assignment_id}.ipynb)"
                          " and the course's gradebook no students")
    absent = [sid for sid in ids if not (submissions / sid / assignment_id).is_dir()]
    source = nbformat.read(source_path, as_version=4)
    checked = _spec(assignment_id, spec, source_path)
    server = gradebook.server_url(course, db_url)
    if server is not None:
        gradebook.check_reachable(server)
    with runner(cluster or _configured_cluster(course), workers, require) as work:
        template = _prepare(course, assignment_id, out, server, records, only=ids if students else None)
        batch = Batch(course, assignment_id, source_path, source, grade_cells(source), checked, submissions, out,
                       timeout, cell_timeout, require, template, _grading_key(out), server or gradebook.sqlite_url(out),
                       nonce or secrets.token_hex(16))
        graded = iter(_grade_all(batch, [sid for sid in ids if sid not in absent], work, progress))
        results = [_record(batch, StudentResult(sid, MISSING, "nothing submitted")) if sid in absent else next(graded)
                   for sid in ids]

    rows = final_rows(course, assignment_id, results, batch.max_scores)
    write_csv(_merged(out / "grades.csv", rows) if students else rows, out / "grades.csv")
    with open(out / _RUNS_FILE, "a") as fh:  # with the grades: the run can be reproduced from it
        fh.write(json.dumps({"assignment_id": assignment_id, "nonce": batch.nonce, "students": ids,
                             "grades": {r["student_id"]: [r["status"], r["score"]] for r in rows}}) + "\n")
    log(f"wrote {out / 'grades.csv'} ({len(rows)} students) and feedback/ in {out}")
    flagged = [row["student_id"] for row in rows if row["flags"]]
    if flagged:
        log(f"flagged (see the flags column): {', '.join(flagged)}")
    errors = [r.student_id for r in results if r.status == ERROR]
    if errors:
        log(f"warning: the grader failed for {', '.join(errors)} (see their reason): grade them again")
    if checked is None:
        log(f"warning: {assignment_id} has no verification spec: its scores are nbgrader's in-kernel ones")
    return rows


def reproduce(course: Course, record: Path, submissions: Path, out: Path, run: int = -1, **kwargs) -> list[dict]:
    """Grade again as the run ``run`` (default: the last) recorded in the grading folder ``record``:
    its key and nonce, so the same inputs and, for the same submissions, the same grades.

    ``out`` may be ``record`` itself or a new folder (the key is copied there); ``kwargs`` go to
    :func:`grade`. Only the grader can do this: the key and the record never leave the grading folder.
    """
    record, out = Path(record), Path(out)
    entry = json.loads((record / _RUNS_FILE).read_text().splitlines()[run])
    if out.resolve() != record.resolve():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(record / _KEY_FILE, out / _KEY_FILE)
    return grade(course, entry["assignment_id"], submissions, out, students=entry["students"], nonce=entry["nonce"],
                 **kwargs)
