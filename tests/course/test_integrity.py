"""Grading integrity, without a grading run (seconds): nothing secret in the worker's job, a result
channel taken in order only, feedback in a fixed vocabulary, fresh seeds per run, and rejections of
submissions that are at fault (a changed set-up cell, JSON too deep to parse)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from dgm_course.course.grade import MAX_JSON_DEPTH, validate_submission
from dgm_course.course.verify import (
    NOT_NUMBERS,
    _describe,
    _draw,
    _Events,
    _program,
    _task_seed,
    _write_job,
    grading_seed,
    load_spec,
    notebook_cells,
)

from ._course import cell_by_id, notebook, processes_with

ID = "01_change_of_variables"
SEED = grading_seed("dgm-course", ID, "student-1", key="k", nonce="n")


def test_a_new_nonce_draws_new_probes_and_a_recorded_one_the_same():
    assert grading_seed("dgm-course", ID, "student-1", key="k", nonce="n") == SEED
    assert grading_seed("dgm-course", ID, "student-1", key="k", nonce="m") != SEED
    assert grading_seed("dgm-course", ID, "student-1", key="k") != SEED


def test_the_workers_job_holds_no_seed_no_input_and_no_reference(tmp_path):
    spec = load_spec(ID)
    source = notebook_cells(json.loads(json.dumps(notebook("source", ID))))
    program, _ = _program(spec, source, source)
    _write_job(tmp_path, spec, program)
    files = b"".join(p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file())
    assert not list(tmp_path.rglob("*.npz"))
    for task in spec.tasks:
        inputs, frame = _draw(task, SEED)
        head = json.loads(frame.split(b"\n", 1)[0])
        for secret in (str(SEED), str(_task_seed(task, SEED)), str(head["rng"])):
            assert secret.encode() not in files, (task.task_id, secret)
        for name, value in inputs.items():
            if value.dtype.kind == "f":  # neither its bytes nor its first number in text
                first = np.ascontiguousarray(value).ravel()[:2]
                assert first.tobytes() not in files, (task.task_id, name)
                assert repr(float(first[0])).encode() not in files, (task.task_id, name)


ORDER = ["cell:0", "cell:1", "task:a", "task:b"]


def _events(outbox: bytearray) -> _Events:
    return _Events(ORDER, dict.fromkeys(ORDER, 5.0), {"task:a": b"INPUTS-A", "task:b": b"INPUTS-B"}, outbox)


def _line(event: str, step: str, error=None, payload: bytes = b"") -> bytes:
    return json.dumps({"event": event, "step": step, "error": error, "nbytes": len(payload)}).encode() + b"\n" + payload


def test_a_task_gets_its_inputs_only_when_it_starts_after_every_cell():
    outbox = bytearray()
    events = _events(outbox)
    events.feed(_line("start", "cell:0") + _line("end", "cell:0") + _line("start", "cell:1"))
    assert outbox == b""  # a cell is running: nothing to read on stdin
    events.feed(_line("end", "cell:1") + _line("start", "task:a"))
    assert outbox == b"INPUTS-A" and not events.broken
    events.feed(_line("end", "task:a", payload=b"xy") + _line("start", "task:b"))
    assert outbox == b"INPUTS-AINPUTS-B" and events.ended["task:a"] == (None, b"xy")


@pytest.mark.parametrize("forged", [
    _line("start", "cell:0"),  # a set-up cell again, while the student's cell runs
    _line("end", "cell:0", {"type": "ImportError", "message": "libtorch_cpu.so"}),  # its failure
    _line("start", "task:a"),  # a task's inputs while a cell runs
    b"not json\n",
])
def test_student_code_cannot_forge_a_set_up_failure_or_take_inputs_early(forged):
    outbox = bytearray()
    events = _events(outbox)
    deadline = events.feed(_line("start", "cell:0") + _line("end", "cell:0") + _line("start", "cell:1") + forged)
    assert events.broken and deadline == 0.0  # the run ends at once
    assert outbox == b"" and list(events.ended) == ["cell:0"]
    assert events.ended["cell:0"] == (None, b"")  # the trusted set-up cell ran without error


@pytest.mark.parametrize("line", [
    b'{"event": "start", "step": "cell:0", "nbytes": 1e400}',  # an infinite float: OverflowError in int()
    b'{"event": "start", "step": "cell:0", "nbytes": NaN}',
    b'{"event": "start", "step": "cell:0", "nbytes": 1.5}',
    b"[" * 30_000 + b"]" * 30_000,  # RecursionError in the parser
], ids=["infinite", "nan", "float", "deep"])
def test_a_line_that_no_parser_takes_ends_the_run_as_garbled_without_an_exception(line):
    events = _events(bytearray())
    events.feed(_line("start", "cell:0") + _line("end", "cell:0") + _line("start", "cell:1"))
    assert events.feed(line + b"\n") == 0.0 and events.broken
    assert list(events.ended) == ["cell:0"]


def test_error_fields_of_other_shapes_than_the_workers_read_as_an_exception():
    events = _events(bytearray())
    odd = {"type": [], "cell": {}, "line": 1.5, "message": ["x"]}
    events.feed(_line("start", "cell:0") + _line("end", "cell:0") + _line("start", "cell:1") + _line("end", "cell:1", odd))
    assert events.ended["cell:1"] == ({}, b"")
    assert _describe(events.ended["cell:1"][0], CELLS) == "an exception"


CELLS = {"<cell log_abs_det>": 4}


@pytest.mark.parametrize("error, shown, hidden", [
    ({"type": "ValueError", "message": "seed 123456789", "cell": "<cell log_abs_det>", "line": 3},
     "ValueError (cell log_abs_det, line 3)", "123456789"),
    ({"type": "s123456789", "message": "", "cell": "<cell log_abs_det>", "line": 2}, "an exception", "123456789"),
    ({"type": "RuntimeError", "message": "x", "cell": "<cell log_abs_det>", "line": 123456789}, "RuntimeError",
     "123456789"),
    ({"type": "RuntimeError", "message": "x", "cell": "<cell s123456789>", "line": 1}, "RuntimeError", "123456789"),
    ({"type": "TypeError", "message": NOT_NUMBERS}, f"TypeError: {NOT_NUMBERS}", "123456789"),
    ({"type": "AttributeError", "message": "dgm_course.jacobian.s123456789 is not available while grading: write it "
      "yourself"}, "not available while grading", "123456789"),
    ({"type": "NameError", "message": "name 'log_abs_det' is not defined"}, "name 'log_abs_det' is not defined",
     "123456789"),
    ({"type": "NameError", "message": "name 's123456789' is not defined"}, "NameError", "123456789"),
    ("ValueError: 123456789", "the step failed", "123456789"),
])
def test_feedback_on_a_failure_comes_from_a_fixed_vocabulary(error, shown, hidden):
    text = _describe(error, CELLS, names={"log_abs_det"})
    assert shown in text and hidden not in text, text


def test_a_spec_message_is_quoted_only_when_it_matches_in_full():
    messages = load_spec("04_planar_sylvester").tasks[0].messages
    said = "linalg_slogdet was called: the task asks for the log-det from its formula (the matrix determinant " \
           "lemma, the diagonals of R1 and R2), without determinants, inverses or general solves"
    assert _describe({"type": "AssertionError", "message": said}, {}, messages) == f"AssertionError: {said}"
    assert _describe({"type": "AssertionError", "message": "s123456789 " + said[15:]}, {}, messages) == \
        "AssertionError"


# ---------------------------------------------------------------------------------------------
# Rejections: the submission's fault, before any grading


def _submit(tmp_path: Path, content) -> Path:
    folder = tmp_path / ID
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ID}.ipynb"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        nbformat.write(content, path)
    return folder


def test_the_release_passes_validation(tmp_path):
    assert validate_submission(_submit(tmp_path, notebook("release", ID)), ID, notebook("source", ID))[1] == ""


@pytest.mark.parametrize("edit, says", [
    (lambda nb: setattr(cell_by_id(nb, "setup"), "source", "raise ImportError('libtorch_cpu.so')"),
     "the set-up cell 'setup' differs from the release's"),
    (lambda nb: nb.cells.remove(cell_by_id(nb, "setup")), "the set-up cell 'setup' is missing"),
    (lambda nb: cell_by_id(nb, "test_log_abs_det").metadata.nbgrader.pop("grade_id"),
     "unreadable nbgrader metadata"),
])
def test_a_changed_set_up_or_odd_metadata_is_rejected_with_the_reason(tmp_path, edit, says):
    nb = copy.deepcopy(notebook("release", ID))
    edit(nb)
    path, reason = validate_submission(_submit(tmp_path, nb), ID, notebook("source", ID))
    assert path is None and says in reason, reason


def _with_surrogate(nb):
    cell_by_id(nb, "log_abs_det").source += "\n# \ud800"


@pytest.mark.parametrize("edit, says", [
    (_with_surrogate, "not valid Unicode (a lone surrogate"),
    (lambda nb: nb.cells.append(nbformat.v4.new_markdown_cell("a note", metadata={"nbgrader": "grade"})),
     "unreadable nbgrader metadata"),
])
def test_text_with_no_utf8_encoding_or_metadata_of_another_shape_is_rejected(tmp_path, edit, says):
    nb = copy.deepcopy(notebook("release", ID))
    edit(nb)
    path, reason = validate_submission(_submit(tmp_path, json.dumps(nb).encode()), ID, notebook("source", ID))
    assert path is None and says in reason, reason


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000, 10_000_000])
def test_json_of_any_depth_is_rejected_without_parsing_it(tmp_path, depth):
    raw = b'{"cells": ' + b"[" * depth + b"]" * depth + b', "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    start = time.monotonic()
    path, reason = validate_submission(_submit(tmp_path, raw), ID, notebook("source", ID))
    assert path is None and f"nested deeper than {MAX_JSON_DEPTH} levels" in reason, reason
    assert time.monotonic() - start < 30  # 20 MiB of brackets, on a loaded machine


# ---------------------------------------------------------------------------------------------
# The detector of the corpus's setsid case finds a process that outlives its parent


def test_the_detector_sees_a_setsid_process_started_outside_the_sandbox():
    marker = f"dgm-detector-{os.getpid()}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker], start_new_session=True)
    try:
        deadline = time.monotonic() + 30  # until the child has exec'd (its command line is pytest's before)
        while not processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_with(marker) == [proc.pid]
    finally:
        proc.kill()
        proc.wait()
    assert processes_with(marker) == []
