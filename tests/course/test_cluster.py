"""Grading on a Dask cluster (``dgm-course grade --cluster``), tested on a LocalCluster of worker
processes: the same grades as the local run, a worker killed in the middle of the batch loses no
student, and a scheduler that does not answer, or workers that run other code, stop the run before
anyone is graded. The default path (threads, sqlite) never imports dask or a database driver."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from nbgrader.api import Gradebook

from benchmarks.grading_workers import comparable
from dgm_course.course import cluster
from dgm_course.course.cli import main
from dgm_course.course.config import CONFIG_FILE, Course, CourseError
from dgm_course.course.grade import GRADED, grade, reproduce

from ._course import COURSE, ROOT
from .process_support import still_running

ASSIGNMENT = "01_change_of_variables"
BATCH = {"ada": "solution", "bob": "release", "cy": "solution"}  # the committed files: 10 and 0 points


def _submissions(folder: Path, batch: dict[str, str]) -> Path:
    name = f"{ASSIGNMENT}.ipynb"
    for student, kind in batch.items():
        (folder / student / ASSIGNMENT).mkdir(parents=True)
        source = {"solution": COURSE.solution_name, "release": COURSE.release_name}[kind]
        shutil.copy(ROOT / source / ASSIGNMENT / name, folder / student / ASSIGNMENT / name)
    return folder


class _WorkerKiller(threading.Thread):
    """SIGKILLs, once, a worker process of this test's cluster while it runs a student's sandbox
    (once ``out/logs`` exists: the workers' checks before grading also run the sandbox)."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True)
        self.out = out
        self.stop = threading.Event()
        self.killed: psutil.Process | None = None
        self.sandbox: psutil.Process | None = None

    def run(self) -> None:
        while not self.stop.is_set() and self.killed is None:
            for proc in [] if not (self.out / "logs").is_dir() else psutil.Process().children(recursive=True):
                try:
                    parent = proc.parent()
                    if proc.name() == "unshare" and parent and "spawn_main" in " ".join(parent.cmdline()):
                        self.sandbox, self.killed = proc, parent
                        parent.send_signal(signal.SIGKILL)
                        return
                except psutil.Error:
                    continue
            time.sleep(0.2)


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_no_student_and_the_grades_equal_the_local_run(tmp_path):
    submitted = _submissions(tmp_path / "submitted", BATCH)
    local = grade(COURSE, ASSIGNMENT, submitted, tmp_path / "local", workers=2, progress=False, log=lambda _: None)
    out = tmp_path / "cluster"

    killer = _WorkerKiller(out)
    killer.start()
    try:  # the local run again (its key and nonce: the same seeds), on the cluster
        rows = reproduce(COURSE, tmp_path / "local", submitted, out, cluster="local:2", progress=False,
                         log=lambda _: None)
    finally:
        killer.stop.set()
        killer.join()

    assert killer.killed is not None, "no worker was caught grading: the test killed nothing"
    assert not still_running([killer.sandbox], within_s=3), "the killed worker's sandbox outlived it"
    assert [r["score"] for r in local] == [10.0, 0.0, 10.0] and all(r["status"] == GRADED for r in local)
    assert comparable(rows) == comparable(local)
    with open(out / "grades.csv", newline="") as fh:
        assert [r["student_id"] for r in csv.DictReader(fh)] == list(BATCH)
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}", "dgm-course") as gb:
        submissions = gb.find_assignment(ASSIGNMENT).submissions
        assert sorted((s.student.id, s.score) for s in submissions) == [("ada", 10.0), ("bob", 0.0), ("cy", 10.0)]
    for student in BATCH:
        for folder in ("submitted", "autograded", "feedback"):
            assert len(list((out / folder / student / ASSIGNMENT).glob("*.ipynb" if folder != "feedback" else
                                                                         "*.html"))) == 1, (folder, student)
        assert (out / "logs" / f"{student}.log").is_file()


def _previous_grading(out: Path) -> dict[str, bytes]:
    """A grading folder as an earlier run left it; returns its files."""
    (out / "feedback" / "ada").mkdir(parents=True)
    files = {".dgm-course-grading": f"{ASSIGNMENT}\n", "grades.csv": "student_id,status\nada,graded\n",
             "gradebook.db": "an earlier gradebook", "grading_key.txt": "0" * 64, "feedback/ada/page.html": "<p>10</p>"}
    for name, text in files.items():
        (out / name).write_text(text)
    return _tree(out)


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_an_unreachable_scheduler_stops_grading_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 3)
    submitted = _submissions(tmp_path / "submitted", {"ada": "solution"})
    out = tmp_path / "grading"
    before = _previous_grading(out)
    code = main(["--course", str(ROOT), "grade", ASSIGNMENT, str(submitted), "--out", str(out),
                 "--cluster", "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dgm-course: error: cannot reach the Dask scheduler at tcp://127.0.0.1:1"), err
    assert len(err.strip().splitlines()) == 1, err
    assert _tree(out) == before


@pytest.mark.parametrize("address", ["local:0", "local:two"])
def test_a_local_cluster_needs_a_size(address):
    with pytest.raises(CourseError, match="local:N with N >= 1"):
        with cluster.runner(address):
            pass


def test_workers_that_run_other_code_are_refused_before_grading(monkeypatch):
    monkeypatch.setattr(cluster, "code_fingerprint", lambda: "not-this-code")
    with pytest.raises(CourseError, match="run another version of dgm-course"):
        with cluster.runner("local:1", require="userns"):
            pytest.fail("the runner must not start")


def test_the_default_path_imports_neither_dask_nor_a_database_driver(tmp_path):
    code = """
import sys
from dgm_course.course import cli, grade
from dgm_course.course.cluster import runner
with runner(None, workers=2) as work:
    assert work.submit(sum, [1, 2]).result() == 3
print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'psycopg', 'psycopg2')))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_cluster_can_come_from_the_course_configuration(tmp_path):
    from dgm_course.course.grade import _configured_cluster

    shutil.copy(ROOT / CONFIG_FILE, tmp_path / CONFIG_FILE)
    with open(tmp_path / CONFIG_FILE, "a") as fh:
        fh.write('\nc.DgmCourseGrade.cluster = "tcp://scheduler.example.org:8786"\n')
    assert _configured_cluster(Course.load(tmp_path)) == "tcp://scheduler.example.org:8786"
    assert _configured_cluster(COURSE) is None  # the repository's course: threads


def test_what_a_worker_sends_back_is_written_only_into_its_students_folders():
    from dgm_course.course.grade import _students_own

    sent = {f"{folder}/ada/{ASSIGNMENT}/x": b"1" for folder in ("submitted", "autograded", "feedback")}
    sent |= {"logs/ada.log": b"log", "grades.csv": b"forged", "gradebook.db": b"forged", "logs/bob.log": b"forged",
             f"feedback/bob/{ASSIGNMENT}/x": b"forged", f"feedback/ada/../bob/{ASSIGNMENT}/x": b"forged"}
    assert sorted(_students_own(sent, "ada")) == sorted(name for name, data in sent.items() if data != b"forged")
