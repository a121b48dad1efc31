"""The adversarial corpus (issue #7): notebook 01's submissions, honest and hostile, graded in one batch.

Every case of :data:`tests.course.adversarial.notebook_01.CASES` is built from the committed release
and the source's solution, and all are graded by ``dgm-course grade`` in one batch with two workers.
Each gets its expected verified score and the reason in its row and feedback page.

The holes of stock nbgrader are shown with the new mechanism's own numbers: nbgrader's in-kernel
autograde still runs (now sandboxed), and its score is fooled by the patched comparisons, the
input transformer and the imported reference while the verified score is right; the self-consistent
wrong flow fools a weak test of a small exercise the same way. The two holes that need stock
nbgrader's in-place batch - a gradebook write that raises other students' grades, and one
``schema_version: 99`` that stops the batch - are shown against stock nbgrader itself.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from dgm_course.course import sandbox, verify
from dgm_course.course.cells import written_cells
from dgm_course.course.config import execution_env, nbgrader_api
from dgm_course.course.grade import ERROR, GRADED, grade, reproduce
from tests.course.adversarial import exercise, stock
from tests.course.adversarial.notebook_01 import (ANY, CASES, FULL, HIJACK_MARKER, ID, SETSID_MARKER, TASKS, load,
                                                  private_files, write)

from ._course import COURSE, notebook, processes_of_uids, processes_with, recording_run_uids

pytestmark = pytest.mark.slow

# The wall-clock limit of one student's in-kernel run, which stops the loop deaf to SIGINT (it holds
# one of the two workers that long): nbgrader's run of notebook 01 takes about 7 s of CPU, and up to
# a minute on a machine loaded fivefold.
TIMEOUT = 120
BY_NAME = {case.name: case for case in CASES}
GRADED_CASES = [c for c in CASES if c.points is not None]
WRITTEN = written_cells(notebook("source", ID))  # derivations graded by hand: in max_score, never autograded


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial")
    submitted, out = root / "submitted", root / "grading"
    notebooks = load(private_files(submitted, out))
    for case in CASES:
        write(case, notebooks, submitted)
    before = {path: Path(path).read_bytes() for path in notebooks.private if Path(path).is_file()}
    lines: list[str] = []
    start = time.monotonic()
    with recording_run_uids() as uids:  # as root, every sandboxed run of the batch has a uid of its own
        rows = grade(COURSE, ID, submitted, out, timeout=TIMEOUT, workers=2, progress=False, log=lines.append)
    return {"rows": {r["student_id"]: r for r in rows}, "order": [r["student_id"] for r in rows], "out": out,
            "private": notebooks.private, "before": before, "log": lines, "seconds": time.monotonic() - start,
            "uids": uids}


def _tasks(row: dict) -> dict[str, float]:
    return {task: row[task] for task in TASKS}


def _page(corpus, name: str) -> str:
    return (corpus["out"] / corpus["rows"][name]["feedback"]).read_text()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_case_gets_its_expected_verified_score_and_says_why(corpus, case):
    row = corpus["rows"][case.name]
    assert row["status"] == case.status, row
    assert row["max_score"] == sum(FULL.values()) + sum(WRITTEN.values())
    if case.points is None:  # not gradable: the reason, no points
        assert case.says in row["reason"] and row["score"] == 0 and set(_tasks(row).values()) == {""}, row
        assert html.escape(case.says) in _page(corpus, case.name)
        return
    assert (row["verified"], row["reason"]) == ("yes", ""), row
    assert _tasks(row) == case.points, row["details"]
    assert row["score"] == sum(case.points.values())
    if case.points == FULL:
        assert row["details"] == ""
    else:
        assert case.says in row["details"], row["details"]
        assert html.escape(case.says) in _page(corpus, case.name)  # the feedback says why


@pytest.mark.parametrize("case", [c for c in GRADED_CASES if c.in_kernel != ANY], ids=lambda c: c.name)
def test_the_in_kernel_score_and_a_flag_where_it_differs(corpus, case):
    row = corpus["rows"][case.name]
    assert row["in_kernel_score"] == ("" if case.in_kernel is None else case.in_kernel), row["in_kernel_status"]
    if case.in_kernel is None:  # no in-kernel score to compare: said so
        assert row["flags"].startswith("no in-kernel score to compare"), row
    elif case.in_kernel != row["score"]:
        assert "differs from the verified score" in row["flags"], row
    else:
        assert row["flags"] == "", row


@pytest.mark.parametrize("name", ["allclose_patch", "input_transformer", "reference_import"])
def test_the_in_kernel_tests_are_fooled_and_the_verified_score_is_not(corpus, name):
    row = corpus["rows"][name]
    assert row["in_kernel_status"] == GRADED and row["in_kernel_score"] == sum(FULL.values()), row
    assert row["score"] == sum(BY_NAME[name].points.values()) < row["in_kernel_score"]


def test_the_feedback_says_a_reference_import_earns_nothing(corpus):
    page = _page(corpus, "reference_import")
    assert "this task asks you to write it yourself, so it earns no points" in page
    assert "Verified score: 5 of 10" in page


def test_nothing_private_was_read_written_or_planted(corpus):
    assert _tasks(corpus["rows"]["snooping"]) == FULL  # one leak would have cost its log_abs_det points
    assert corpus["rows"]["snooping"]["in_kernel_score"] == 10.0  # nor in nbgrader's run
    for path, content in corpus["before"].items():
        assert Path(path).read_bytes() == content, path
    planted = [Path(p).parent / "planted.txt" for p in corpus["private"]]
    assert not any(p.exists() for p in planted)


def test_only_the_grader_writes_the_gradebook_and_it_holds_the_verified_scores(corpus):
    graded = {name: row["score"] for name, row in corpus["rows"].items() if row["status"] == GRADED}
    invalid = [name for name, row in corpus["rows"].items() if row["status"] != GRADED]
    assert stock.scores(corpus["out"], ID, list(graded)) == graded  # the gradebook_write case changed nothing
    assert stock.scores(corpus["out"], ID, invalid) == dict.fromkeys(invalid, 0.0)


def test_every_submission_has_a_row_and_a_feedback_folder_that_release_feedback_takes(corpus, tmp_path):
    out = corpus["out"]
    with open(out / "grades.csv") as fh:
        assert [r["student_id"] for r in csv.DictReader(fh)] == sorted(BY_NAME) == corpus["order"]
    for name in BY_NAME:
        folder = out / "feedback" / name / ID
        assert sorted(p.name for p in folder.iterdir()) == [f"{ID}.html", "submission_secret.txt", "timestamp.txt"]
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    with execution_env():
        result = nbgrader_api(COURSE, out, **{"Exchange.root": str(exchange)}).release_feedback(ID)
    assert result["success"], result.get("log", "") + result.get("error", "")
    assert len(list((exchange / COURSE.config.CourseDirectory.course_id / "feedback").glob("*.html"))) == len(CASES)


def test_a_bad_submission_stops_nothing(corpus):
    assert corpus["rows"]["schema_99"]["status"] == GRADED  # stock nbgrader stops the batch here
    after = [name for name in corpus["order"] if name > "schema_99"]
    assert after and all(corpus["rows"][name]["status"] == BY_NAME[name].status for name in after)


def _secrets(corpus, student: str) -> list[str | float]:
    """What tells this student's probes apart: the key, the run's nonce, the seeds (the student's,
    each task's, each worker generator's) as text, and the first number of each drawn input."""
    out = corpus["out"]
    key = (out / "grading_key.txt").read_text().strip()
    nonce = json.loads((out / "grading_runs.jsonl").read_text().splitlines()[-1])["nonce"]
    seed = verify.grading_seed(COURSE.config.CourseDirectory.course_id, ID, student, key=key, nonce=nonce)
    found: list[str | float] = [key, nonce, str(seed)]
    for task in verify.load_spec(ID).tasks:
        inputs, frame = verify._draw(task, seed)
        found += [str(verify._task_seed(task, seed)), str(json.loads(frame.split(b"\n", 1)[0])["rng"])]
        found += [float(v.ravel()[0]) for v in inputs.values() if v.dtype.kind == "f"]
    return found


def _shown(secret: str | float, text: str) -> bool:
    """Whether ``text`` shows ``secret``. A number counts where one written there agrees with it to
    every decimal it was written with, 6 significant digits at least: the page of a leaking case
    holds thousands of random floats of its own, and one of them shares a 6-digit prefix with an
    input now and then (0.6573637... against the input 0.6573633... failed a run)."""
    if isinstance(secret, str):
        return secret in text
    for number in re.findall(r"-?\d+\.\d+", text):
        decimals = len(number.split(".")[1])
        if len(number.lstrip("-").replace(".", "").lstrip("0")) >= 6 and \
                abs(float(number) - secret) <= 0.5 * 10 ** -decimals:
            return True
    return False


def test_nothing_that_tells_the_probes_apart_is_readable_or_reaches_the_feedback(corpus):
    row = corpus["rows"]["seed_leak"]
    assert row["log_abs_det"] == FULL["log_abs_det"]  # its inputs were nowhere before the call
    page = _page(corpus, "seed_leak")
    verification = page[page.index("dgm-verification"):]
    verification = verification[:verification.index("</div>")]
    assert "LEAK" not in row["details"] and "LEAK" not in verification  # the message never reaches the grader's part
    text = page + (corpus["out"] / "grades.csv").read_text()
    assert [s for s in _secrets(corpus, "seed_leak") if _shown(s, text)] == []


def test_no_submission_makes_the_grader_blame_itself(corpus):
    assert [name for name, row in corpus["rows"].items() if row["status"] == ERROR] == []
    assert not any("the grader failed" in line for line in corpus["log"]), corpus["log"]
    assert "grader error" not in (corpus["out"] / "grades.csv").read_text()


def test_no_process_a_submission_started_outlives_it(corpus):
    """After the batch, no process of any case's runs is left: none with the command line of the
    setsid case's children, and (as root, where each run has a uid of its own: the sandbox tests
    show this check seeing a live run) none with the uid of any run of the batch."""
    row = corpus["rows"]["setsid"]
    assert row["log_abs_det"] == FULL["log_abs_det"] and row["in_kernel_score"] == 10.0  # nothing escaped
    assert row["elementwise_log_det"] == 0.0 and "wall-clock limit" in row["details"]  # killed mid-task
    left = processes_with(SETSID_MARKER) + processes_of_uids(corpus["uids"])
    for pid in left:  # no stray left behind on the machine running the tests
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert left == []
    assert corpus["uids"] or os.geteuid() != 0 or sandbox.available_isolation() != "namespace"


def test_the_feedback_page_comes_from_the_graders_templates_only(corpus):
    """The template_hijack case planted a template (and configuration) in every Jupyter folder its
    kernel could write: the page is nbgrader's, like the solution's, and nothing it would run ran."""
    page, normal = _page(corpus, "template_hijack"), _page(corpus, "solution")
    assert f"<body>{HIJACK_MARKER}" not in page and "spawned-42" not in page  # its cell's source shows, escaped
    assert "Verified score: 10 of 10" in page
    cells = page.count('<div class="cell')
    assert _title(page) == _title(normal) and cells == normal.count('<div class="cell') + 1  # its own cell


def _title(page: str) -> str:
    return page[page.index("<title>"):page.index("</title>")]


@pytest.fixture(scope="module")
def stock_batch(tmp_path_factory):
    """Stock nbgrader on four students, graded in this order: a blank release, a gradebook write
    (blank otherwise), a schema_version 99 (solved otherwise), the solution."""
    notebooks = load()  # no private paths: the attack writes "../../../gradebook.db", stock nbgrader's
    students = {"a_blank": notebooks.release,
                "b_gradebook_write": BY_NAME["gradebook_write"].build(notebooks),
                "c_schema_99": BY_NAME["schema_99"].build(notebooks),
                "d_solution": notebooks.solved}
    root = tmp_path_factory.mktemp("stock")
    result = stock.autograde_all(root, ID, students)
    return result, stock.scores(root, ID, list(students))


def test_stock_nbgrader_lets_a_submission_raise_other_grades_and_stop_the_batch(stock_batch):
    result, scores = stock_batch
    assert not result["success"] and "newer version" in result["log"]
    top = sum(FULL.values()) + sum(WRITTEN.values())  # the write sets every grade to its maximum
    assert scores == {"a_blank": top,  # graded 0 first, then raised by b's sqlite3 write
                      "b_gradebook_write": top, "c_schema_99": 0.0,
                      "d_solution": None}  # never graded: the batch stopped at c


@pytest.fixture(scope="module")
def weak_exercise(tmp_path_factory):
    """The exercise with a weak planar test, graded three times: with one worker; reproduced from
    that run's record with two; and again into the first run's folder (a regrade). Also returns
    the grading seed of each student in each run."""
    root = tmp_path_factory.mktemp("exercise")
    course = exercise.course(root / "course")
    exercise.submissions(root / "submitted")
    first = root / "grading-1"
    kwargs = {"timeout": TIMEOUT, "progress": False, "log": lambda _: None, "spec": exercise.SPEC}
    runs, seeds = [], []
    with pytest.MonkeyPatch.context() as patch:
        real = verify.verify_submission

        def recording(spec, submitted, source, *, seed, **kw):
            seeds[-1][Path(submitted).parents[1].name] = seed
            return real(spec, submitted, source, seed=seed, **kw)

        patch.setattr(verify, "verify_submission", recording)
        for run in (lambda: grade(course, exercise.ID, root / "submitted", first, workers=1, **kwargs),
                    lambda: reproduce(course, first, root / "submitted", root / "grading-2", workers=2, **kwargs),
                    lambda: grade(course, exercise.ID, root / "submitted", first, workers=2, **kwargs)):
            seeds.append({})
            runs.append({r["student_id"]: r for r in run()})
    return runs, seeds


def test_a_self_consistent_wrong_flow_passes_a_weak_test_in_the_kernel_but_not_the_verifier(weak_exercise):
    weak_exercise, _ = weak_exercise
    row = weak_exercise[0]["identity"]
    assert (row["planar_tests"], row["sigmoid_tests"], row["jacobian_tests"]) == (0.0, 2.0, 2.0), row["details"]
    assert row["in_kernel_score"] == 6.0  # the identity's log-det 0 matches its own Jacobian
    assert "z = f(x) matches the reference" in row["details"] and "planar: in-kernel score 2" in row["flags"]
    assert weak_exercise[0]["solution"]["score"] == weak_exercise[0]["solution"]["in_kernel_score"] == 6.0


def test_grades_do_not_depend_on_the_number_of_workers_and_a_recorded_run_reproduces(weak_exercise):
    (one, two, _), seeds = weak_exercise
    assert seeds[0] == seeds[1] and len(seeds[0]) == len(one)  # the same inputs
    grades = ("status", "reason", "score", "planar_tests", "sigmoid_tests", "jacobian_tests", "details")
    assert {s: [r[k] for k in grades] for s, r in one.items()} == {s: [r[k] for k in grades] for s, r in two.items()}


def test_a_regrade_draws_fresh_probes(weak_exercise):
    _, (first, _, regrade) = weak_exercise
    assert set(first) == set(regrade) and all(first[s] != regrade[s] for s in first)
