"""nbval, strict (``--nbval``, not ``--nbval-lax``), over every committed solution notebook.

It runs in a child pytest, one per notebook, with the same environment as the build (see
:func:`dgm_course.course.config.execution_env`). The sanitizer touches memory addresses and timings
only, and none of the committed outputs: every result a cell prints is compared.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys

import pytest

from dgm_course.course.build import output_texts
from dgm_course.course.config import execution_env

from ._course import ASSIGNMENT_IDS, COURSE, ROOT, notebook

SANITIZE = ROOT / "tests" / "course" / "nbval_sanitize.cfg"


def _patterns() -> dict[str, re.Pattern]:
    parser = configparser.ConfigParser()
    parser.read(SANITIZE)
    return {section: re.compile(parser[section]["regex"]) for section in parser.sections()}


def test_sanitizer_is_for_addresses_and_timings_only():
    patterns = _patterns()
    assert patterns and all(s.startswith(("memory addresses", "timings")) for s in patterns)
    assert patterns["memory addresses"].search("<object at 0x7f3a2c1b5e10>")
    assert not any(p.search("log p = -1.234 at x = 0.5; 3 students; 2.5 s") for p in patterns.values())


@pytest.mark.parametrize("assignment_id", ASSIGNMENT_IDS)
def test_sanitizer_leaves_every_committed_output_as_it_is(assignment_id):
    for cell in notebook("solution", assignment_id).cells:
        for out in cell.get("outputs", []):
            for text in output_texts(out):
                for name, pattern in _patterns().items():
                    assert not pattern.search(text), f"{cell.id}: {name!r} would hide {pattern.search(text)[0]!r}"


@pytest.mark.slow
@pytest.mark.parametrize("assignment_id", ASSIGNMENT_IDS)
def test_solution_reproduces_its_outputs_under_nbval(assignment_id):
    path = ROOT / COURSE.solution_name / assignment_id / f"{assignment_id}.ipynb"
    command = [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", f"--nbval-sanitize-with={SANITIZE}",
               "--nbval-cell-timeout=120", "-p", "no:cacheprovider", "-q", "-o", "addopts=", str(path)]
    with execution_env():
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", proc.stdout) and "failed" not in proc.stdout, proc.stdout[-2000:]
