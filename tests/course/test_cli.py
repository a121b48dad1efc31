"""``dgm-course`` as an instructor meets it: clear errors, and ``check`` saying what to run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dgm_course.course.cli import main
from dgm_course.course.config import CONFIG_FILE, Course

from ._course import ASSIGNMENT_IDS, COURSE, ROOT, TINY_ID, tiny_course


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "dgm-course"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "build" in proc.stdout and "grade" in proc.stdout


def test_a_folder_without_nbgrader_config_is_refused(tmp_path, capsys):
    assert main(["--course", str(tmp_path), "check"]) == 2
    assert f"has no {CONFIG_FILE}" in capsys.readouterr().err


def test_an_unknown_assignment_is_refused_with_the_known_ones(capsys):
    assert main(["--course", str(ROOT), "build", "99_nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown assignment '99_nope'" in err and ASSIGNMENT_IDS[0] in err


def test_a_missing_source_notebook_is_refused(tmp_path, capsys):
    shutil.copy(ROOT / CONFIG_FILE, tmp_path / CONFIG_FILE)
    (tmp_path / COURSE.source_name / "02_empty").mkdir(parents=True)
    (tmp_path / COURSE.source_name / "02_empty" / "notes.ipynb").write_text("{}")
    assert main(["--course", str(tmp_path), "check", "02_empty"]) == 2
    assert "missing source notebook" in capsys.readouterr().err


def test_grading_a_missing_submissions_folder_is_refused(tmp_path, capsys):
    assert main(["--course", str(ROOT), "grade", ASSIGNMENT_IDS[0], str(tmp_path / "nothing")]) == 2
    assert "no submissions folder" in capsys.readouterr().err


def _copy_course(tmp_path: Path, assignment_id: str) -> Course:
    for name in (COURSE.source_name, COURSE.release_name, COURSE.solution_name):
        shutil.copytree(ROOT / name / assignment_id, tmp_path / name / assignment_id)
    shutil.copy(ROOT / CONFIG_FILE, tmp_path / CONFIG_FILE)
    return Course.load(tmp_path)


@pytest.mark.parametrize("assignment_id", ASSIGNMENT_IDS[:1])
def test_check_exits_1_and_names_what_is_stale_and_what_to_run(tmp_path, capsys, assignment_id):
    course = _copy_course(tmp_path, assignment_id)
    source = tmp_path / course.source_name / assignment_id / f"{assignment_id}.ipynb"
    nb = json.loads(source.read_text())
    nb["cells"][0]["source"] = ["# A new title\n"] + nb["cells"][0]["source"][1:]
    source.write_text(json.dumps(nb, indent=1))
    (tmp_path / course.release_name / "99_gone").mkdir()
    assert main(["--course", str(tmp_path), "check", "--no-execute"]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("out of sync: ")]
    assert f"out of sync: {course.release_name}/99_gone has no source notebook: delete it" in lines
    stale = [line for line in lines if assignment_id in line]
    assert len(stale) == 2 and all(line.endswith(f"(run: dgm-course build {assignment_id})") for line in stale)
    assert any("cell 0 (intro) differs in its source" in line for line in stale)  # the release
    assert any(course.solution_name in line and "cells differ" in line for line in stale)


@pytest.mark.slow
def test_demo_builds_every_assignment_then_grades_a_solution_and_a_blank_release(tmp_path, capsys):
    course, _ = tiny_course(tmp_path / "course")
    assert main(["--course", str(course.root), "demo", "--out", str(tmp_path / "demo")]) == 0
    for folder in (course.release_name, course.solution_name):
        assert (course.root / folder / TINY_ID / f"{TINY_ID}.ipynb").is_file()
    table = capsys.readouterr().out.split(f"{TINY_ID} (ada hands in the solution, bob hands in the release):")[1]
    lines = table.strip().splitlines()
    header, ada, bob = lines[:3]
    assert header.split() == ["student", "status", "score", "/", "max", "points", "per", "task"]
    # The tiny course's scores: a bare False passes even for bob, stderr fails even for ada.
    assert ada.split() == ["ada", "graded", "3", "/", "4", "1", "1", "0", "1"]
    assert bob.split() == ["bob", "graded", "1", "/", "4", "0", "1", "0", "0"]
    assert "tasks: answer, bare_false, stderr, routed" in lines
    csv = tmp_path / "demo" / "grading" / TINY_ID / "grades.csv"
    assert f"every column: {csv}" in lines and csv.is_file()
    assert all(len(line) <= 80 for line in lines if not line.startswith("every column: ")), table


def test_grade_exits_1_when_the_grader_itself_failed_on_a_student(tmp_path, capsys, monkeypatch):
    from dgm_course.course import grade as grading

    def broken(batch, student_id, original):
        raise RuntimeError("disk full")

    monkeypatch.setattr(grading, "_grade_student_steps", broken)
    assignment_id = ASSIGNMENT_IDS[0]
    (tmp_path / "submitted" / "ada" / assignment_id).mkdir(parents=True)
    code = main(["--course", str(ROOT), "grade", assignment_id, str(tmp_path / "submitted"),
                 "--out", str(tmp_path / "grading")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "ada" in out and "error" in out and "disk full" in out


NOTEBOOK_01 = "01_change_of_variables"
BROKEN_TORCH = "raise ImportError('libtorch_cpu.so: cannot open shared object file (the machine is broken)')"


def _grade_one(tmp_path: Path, setup: str | None = None) -> tuple[int, list[dict]]:
    """``dgm-course grade`` of notebook 01 on one student, ``ada``: the release, its set-up cell
    replaced by ``setup`` where given; the exit status and the rows of grades.csv."""
    import csv

    import nbformat

    from ._course import cell_by_id, notebook

    nb = notebook("release", NOTEBOOK_01)
    if setup is not None:
        cell_by_id(nb, "setup").source = setup
    folder = tmp_path / "submitted" / "ada" / NOTEBOOK_01
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{NOTEBOOK_01}.ipynb")
    code = main(["--course", str(ROOT), "grade", NOTEBOOK_01, str(tmp_path / "submitted"),
                 "--out", str(tmp_path / "grading"), "--timeout", "300"])
    with open(tmp_path / "grading" / "grades.csv") as fh:
        return code, list(csv.DictReader(fh))


@pytest.mark.slow
def test_a_set_up_cell_that_blames_the_machine_is_the_students_rejection_and_exits_0(tmp_path, capsys):
    code, rows = _grade_one(tmp_path, BROKEN_TORCH)
    assert code == 0, capsys.readouterr().out
    assert rows[0]["status"] == "rejected" and "the set-up cell 'setup' differs" in rows[0]["reason"], rows
    assert "grader" not in rows[0]["reason"] and "libtorch" not in rows[0]["reason"]


@pytest.mark.slow
def test_a_trusted_set_up_that_fails_on_the_machine_is_an_error_and_exits_1(tmp_path, capsys, monkeypatch):
    from dgm_course.course import verify

    (tmp_path / "no-library").mkdir()  # the grading machine lost the library the set-up imports
    monkeypatch.setattr(verify, "LIBRARY", tmp_path / "no-library")
    code, rows = _grade_one(tmp_path)  # the release's own set-up
    assert code == 1, capsys.readouterr().out
    assert rows[0]["status"] == "error", rows
    assert "the trusted set-up cell setup failed: ModuleNotFoundError" in rows[0]["reason"], rows
