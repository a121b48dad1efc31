"""The grading machinery on a tiny course of its own (one small notebook, no torch in the tests):
nbgrader's scoring rule, the stderr routing of the set-up, the wall-clock limit per student, and a
submission nbgrader itself refuses. Each kind of failure costs only its own student's row.
"""

from __future__ import annotations

import shutil

import nbformat
import pytest

from dgm_course.course.grade import FAILED, GRADED, TIMEOUT, grade

from ._course import TINY_ID as ID
from ._course import tiny_course
from .cycle_support import solve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-course")
    course, source = tiny_course(root)
    release_root = tmp_path_factory.mktemp("tiny-release")
    from dgm_course.course.build import generate

    generate(course, ID, release_root, solution=False)
    release = nbformat.read(release_root / course.release_name / ID / f"{ID}.ipynb", 4)
    solved = solve(release, source)
    hanging = nbformat.from_dict(solved)
    hanging.cells[2].source = "import time\ntime.sleep(1000)\n" + hanging.cells[2].source
    refused = nbformat.from_dict(solved)
    refused.cells[3].metadata.nbgrader["schema_version"] = 99  # a future format nbgrader refuses
    submitted = root / "submitted"
    # Graded in this order: zoe comes after the hanging and the refused submission.
    for student, nb in [("hal", hanging), ("max", refused), ("zoe", solved)]:
        (submitted / student / ID).mkdir(parents=True)
        nbformat.write(nb, submitted / student / ID / f"{ID}.ipynb")
    (submitted / "zoe" / ID / "submission_secret.txt").write_text("s3cret\n")  # from nbgrader submit
    (submitted / "zoe" / ID / "dgm_course.py").write_text("raise SystemExit('shadowed')\n")
    out = root / "grading"
    rows = grade(course, ID, submitted, out, timeout=40, progress=False, log=lambda _: None)
    yield {r["student_id"]: r for r in rows}, out
    shutil.rmtree(root, ignore_errors=True)


def test_nbgrader_scoring_rule_and_stderr_routing(tiny):
    rows, _ = tiny
    row = rows["zoe"]
    assert row["status"] == GRADED, row
    # The bare False scores full marks (hence: always assert); raw stderr scores 0 (hence: the
    # set-up routes it); after routing, warnings and stderr at both levels cost nothing.
    assert (row["answer"], row["bare_false"], row["stderr"], row["routed"]) == (1.0, 1.0, 0.0, 1.0)


def test_a_hanging_submission_is_stopped_and_the_batch_goes_on(tiny):
    rows, out = tiny
    assert rows["hal"]["status"] == TIMEOUT and "longer than 40 s" in rows["hal"]["reason"]
    assert "could not be graded" in (out / rows["hal"]["feedback"]).read_text()
    assert rows["zoe"]["status"] == GRADED  # graded after hal and max


def test_a_submission_nbgrader_refuses_is_reported_with_nbgraders_reason(tiny):
    rows, out = tiny
    row = rows["max"]
    assert row["status"] == FAILED and "could not autograde" in row["reason"], row
    assert "SchemaTooNew" in row["reason"] or "schema" in row["reason"].lower(), row["reason"]
    assert (out / row["feedback"]).is_file()


def test_only_the_notebook_and_nbgraders_files_reach_the_grading_folder(tiny):
    _, out = tiny
    for step in ("submitted", "autograded"):
        files = sorted(p.name for p in (out / step / "zoe" / ID).iterdir())
        assert files == [f"{ID}.ipynb", "submission_secret.txt"], (step, files)
    assert (out / "feedback" / "zoe" / ID / "submission_secret.txt").is_file()  # release_feedback needs it
