"""The committed release and solution of every assignment equal a fresh build, byte for byte.

``check`` regenerates both in a temp course folder (the solution executed) and compares them with
``assignments/<id>/`` and ``solutions/<id>/``; it is the same code as ``dgm-course check``.
"""

from __future__ import annotations

import json

import pytest

from dgm_course.course.build import check, solution_errors

from ._course import ASSIGNMENT_IDS, COURSE, ROOT


@pytest.mark.slow
@pytest.mark.parametrize("assignment_id", ASSIGNMENT_IDS)
def test_release_and_solution_equal_a_fresh_build(assignment_id):
    assert check(COURSE, [assignment_id], log=lambda _: None) == []


@pytest.mark.parametrize("assignment_id", ASSIGNMENT_IDS)
def test_committed_solution_ran_cleanly_and_carries_no_run_times(assignment_id):
    path = ROOT / COURSE.solution_name / assignment_id / f"{assignment_id}.ipynb"
    assert solution_errors(path) == []
    nb = json.loads(path.read_text())
    assert "version" not in nb["metadata"].get("language_info", {})
    for cell in nb["cells"]:
        assert "execution" not in cell["metadata"], "record_timing is off"
        assert not any(o.get("name") == "stderr" for o in cell.get("outputs", [])), cell["id"]
