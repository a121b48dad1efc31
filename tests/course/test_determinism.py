"""Compared outputs do not depend on the machine, its load or the clock (docs/notebooks.md, *Outputs
that depend on the machine*), and building or grading logs no warning a reader takes for an error.

- every cell that calls the clock or the machine, or prints what looks like a time, memory, a date or
  a path, carries ``nbval-ignore-output``; the build drops such a cell's outputs, nbval skips them;
- a cell's prints are one stream output however the kernel flushed them, so a loaded machine
  (which splits them into more messages) builds the same bytes;
- kernels started to build or check run torch, oneMKL and oneDNN on the pinned code paths
  (:data:`~dgm_course.course.config.PINNED_CODE_PATHS`), so the CPU does not change a digit.

``scripts/determinism`` builds and checks every notebook on an idle and on a loaded machine.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from benchmarks.report import machine
from dgm_course.course.build import MACHINE_DEPENDENT_TAG, build, check, machine_dependence
from dgm_course.course.config import PINNED_CODE_PATHS, execution_env

from ._course import ASSIGNMENT_IDS, COURSE, ROOT, TINY_ID, tiny_course

NOISE = ("without encryption", "Unwritable directory")  # ipykernel's and nbgrader's, on every run before

PROBE = Path(__file__).with_name("code_paths_probe.py")
# What the probe prints on the pinned paths with the constraints file's torch (2.13.0), recorded on an
# Intel Xeon with AVX-512. Another CPU must print the same: else the committed solutions' outputs do not
# reproduce on it either (re-record this with the solutions when the constraints change torch).
PINNED_DIGEST = "e0ae9e105a58af0ca91582874de315feb36bab2809f48ecaa3daad0e53596188"
# A CPU without AVX-512, as far as the libraries' own dispatchers can be told so: oneMKL's ceiling and
# glibc's view of the CPU (its libm picks exp and log by it).
NO_AVX512 = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"}


@functools.cache
def _probe(pinned: bool = True, **extra: str) -> tuple[str, str]:
    """ATen's capability and the probe's digest, in the environment of a build's kernel (run once for
    each environment: the result depends on nothing else)."""
    with execution_env():
        env = {k: v for k, v in os.environ.items() if pinned or k not in PINNED_CODE_PATHS} | extra
        out = subprocess.run([sys.executable, str(PROBE)], env=env, capture_output=True, text=True, check=True,
                             timeout=300).stdout.split()
    return out[0], out[1]


def test_build_kernels_compute_the_recorded_bits():
    capability, digest = _probe()
    if capability != "AVX2":
        pytest.skip(f"{machine()} has no AVX2 (ATen runs {capability}): the committed outputs are AVX2 machines'")
    assert digest == PINNED_DIGEST, (
        f"on {machine()}, the pinned code paths ({PINNED_CODE_PATHS}) give other bits than those the solutions "
        "were recorded with, so nbval and the sync check will fail here")


def test_pinned_paths_ignore_the_instruction_sets_beyond_avx2():
    unpinned = _probe(pinned=False)
    if _probe(pinned=False, **NO_AVX512) == unpinned:
        pytest.skip(f"{machine()} has no wider path than AVX2 for the libraries to drop: nothing to compare")
    assert _probe(**NO_AVX512) == _probe()


def _code(source: str, tags: tuple[str, ...] = ()) -> dict:
    return {"cell_type": "code", "id": "c", "metadata": {"tags": list(tags)}, "outputs": [], "source": source}


@pytest.mark.parametrize("assignment_id", ASSIGNMENT_IDS)
@pytest.mark.parametrize("kind", ["source", "solution"])
def test_no_cell_depends_on_the_machine_without_the_tag(assignment_id, kind):
    folder = COURSE.source_name if kind == "source" else COURSE.solution_name
    nb = json.loads((ROOT / folder / assignment_id / f"{assignment_id}.ipynb").read_text())
    assert machine_dependence(nb) == []
    if kind == "solution":
        assert all(not c.get("outputs") for c in nb["cells"] if MACHINE_DEPENDENT_TAG in c["metadata"].get("tags", []))


@pytest.mark.parametrize("source", [
    "t = time.perf_counter()", "from time import perf_counter\nstart = perf_counter()", "%timeit f(x)",
    "%%time\nfit(model)", "print(datetime.now())", "torch.get_num_threads()", "print(os.cpu_count())",
    "Path.cwd()", "tracemalloc.start()", "print(platform.processor())",
])
def test_a_cell_that_calls_the_clock_or_the_machine_needs_the_tag(source):
    assert len(machine_dependence({"cells": [_code(source)]})) == 1
    assert machine_dependence({"cells": [_code(source, (MACHINE_DEPENDENT_TAG,))]}) == []


@pytest.mark.parametrize("text", [
    "step took 0.53 s\n", "fit: 12.5 seconds\n", "3.1 ms per call", "peak memory 512 MiB", "120 MB resident",
    "run on 2026-12-04", "wrote /tmp/dgm-course-x/grades.csv", "home: /root/course", "13.2it/s",
])
def test_printed_times_memory_dates_and_paths_need_the_tag(text):
    cell = _code("print(x)")
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": text}]
    assert len(machine_dependence({"cells": [cell]})) == 1, text


@pytest.mark.parametrize("text", [
    "log p = -1.234 at x = 0.5", "2.211 bits/dim", "KL 0.053 nats", "tensor([0.5000, 1.0000])", "8 of 8 units",
    "m = 1024: slope 1.4", "a 2-D density", "L_5 = -7.386 ± 0.006",
])
def test_values_that_do_not_depend_on_the_machine_pass(text):
    cell = _code("print(x)")
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": text}]
    assert machine_dependence({"cells": [cell]}) == [], text


@pytest.mark.slow
def test_a_build_keeps_no_machine_dependent_output_and_one_stream_per_cell(tmp_path, capfd, caplog):
    """Two builds of a notebook whose tagged cell prints the clock, and whose untagged cell flushes
    its prints in three messages, give the same bytes; the build logs no kernel or exchange warning."""
    course, nb = tiny_course(tmp_path)
    # The tiny assignment's task and its test, without its cells that write to stderr from C (the
    # kernel reads fd 2 in a thread of its own: such lines land anywhere among a cell's prints).
    nb.cells = nb.cells[:4] + [
        new_code_cell("import sys, time\nprint('split', end='')\nsys.stdout.flush()\ntime.sleep(0.3)\n"
                      "print(' in three')\nsys.stdout.flush()\ntime.sleep(0.3)\nprint('done')", id="prints"),
        new_code_cell("print(f'this run took {time.perf_counter():.3f} s')", id="clock",
                      metadata={"tags": [MACHINE_DEPENDENT_TAG]}),
    ]
    source = tmp_path / COURSE.source_name / TINY_ID / f"{TINY_ID}.ipynb"
    nbformat.write(nb, source)
    caplog.set_level(logging.WARNING)
    build(course, [TINY_ID], log=lambda _: None)
    solution = nbformat.read(tmp_path / COURSE.solution_name / TINY_ID / f"{TINY_ID}.ipynb", as_version=4)
    cells = {c.id: c for c in solution.cells}
    assert cells["clock"].outputs == []
    assert [(o.output_type, o.text) for o in cells["prints"].outputs] == [("stream", "split in three\ndone\n")]
    assert check(course, [TINY_ID], log=lambda _: None) == []  # a second build: the same bytes
    logged = capfd.readouterr().err + caplog.text
    assert not [n for n in NOISE if n in logged], logged[-3000:]

    nb.cells[-1].metadata["tags"] = []  # the clock cell untagged: check names it and what to do
    nbformat.write(nb, source)
    problems = check(course, [TINY_ID], execute=False, log=lambda _: None)
    assert any("cell 5 (clock) calls time.perf_counter but is not tagged 'nbval-ignore-output'" in p
               and "tag it" in p for p in problems), problems
