"""What the course-cycle tests share: nbgrader's commands run as a person runs them, the reference
solution of a source notebook, and the scores of a feedback page.

A student who "solves" an assignment here writes the instructor's own solution: each solution
region of the source notebook (between ``### BEGIN SOLUTION`` and ``### END SOLUTION``) replaces the
``raise NotImplementedError()`` stub that nbgrader left for it in the released notebook.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

__all__ = ["ROOT", "hub_config", "nbgrader", "person_env", "solution_regions", "STUB", "solve", "feedback_scores",
           "graded_points"]

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "raise NotImplementedError()"
NBGRADER_TIMEOUT_S = 300


def hub_config(exchange: Path, course_id: str) -> str:
    """The ``nbgrader_config.py`` every user of a shared JupyterHub reads (docs/instructor.md)."""
    return f"""c = get_config()
c.Exchange.root = {str(exchange)!r}
c.CourseDirectory.course_id = {course_id!r}
# Validate runs the whole notebook: a cell may take a while, and on a busy machine the kernel's
# last output may come more than nbgrader's default 4 s after its reply.
c.Execute.timeout = 120
c.Execute.iopub_timeout = 30
"""


def person_env(home: Path, config: str | None = None) -> dict[str, str]:
    """The environment of one person (instructor or student): their own home, Jupyter folders and,
    if given, ``config`` as their ``~/.jupyter/nbgrader_config.py``."""
    env = dict(os.environ)
    # This environment's bin first: nbgrader runs alembic, and kernels must be this Python's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for var, sub in [("HOME", ""), ("JUPYTER_CONFIG_DIR", ".jupyter"), ("JUPYTER_DATA_DIR", ".local/share/jupyter"),
                     ("JUPYTER_RUNTIME_DIR", ".local/share/jupyter/runtime"), ("IPYTHONDIR", ".ipython"),
                     ("MPLCONFIGDIR", ".mpl")]:
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    env.pop("JUPYTERHUB_USER", None)
    if config is not None:
        (home / ".jupyter" / "nbgrader_config.py").write_text(config)
    return env


def nbgrader(*args: str, cwd: Path, env: dict[str, str], command: str = "nbgrader") -> str:
    """Run ``nbgrader ARGS`` (or another console script of this environment) and return its log;
    fail with the whole log when it exits non-zero."""
    exe = Path(sys.executable).parent / command
    proc = subprocess.run([str(exe), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=NBGRADER_TIMEOUT_S)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"`{command} {' '.join(args)}` in {cwd} exited {proc.returncode}:\n{log}")
    return log


def solution_regions(source: str) -> list[list[str]]:
    """The lines of each solution region of a source cell, markers excluded, in order."""
    regions, current = [], None
    for line in source.splitlines():
        if line.strip() == BEGIN:
            current = []
        elif line.strip() == END:
            regions.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return regions


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def solve(released: nbformat.NotebookNode, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The released notebook with every stub replaced by the source's solution region (a written
    answer by its model answer and rubric: what a student who copied the instructor's copy would hand in)."""
    by_id = {_grade_id(c): c for c in source.cells if _grade_id(c)}
    solved = nbformat.from_dict(released)
    for cell in solved.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "markdown":  # a written answer: the model answer
            cell.source = "\n".join(line for region in solution_regions(by_id[meta["grade_id"]].source) for line in region)
            continue
        if not meta.get("solution") or cell.cell_type != "code":
            continue
        lines = cell.source.splitlines()
        for region in solution_regions(by_id[meta["grade_id"]].source):
            stub = next(i for i, line in enumerate(lines) if line.strip() == STUB)
            # nbgrader writes "# YOUR CODE HERE" above each stub: the student replaces both.
            start = stub - 1 if stub and lines[stub - 1].strip() == "# YOUR CODE HERE" else stub
            lines[start:stub + 1] = region
        cell.source = "\n".join(lines)
    return solved


def graded_points(notebook: nbformat.NotebookNode) -> dict[str, float]:
    """Points of each graded test cell, by grade id."""
    return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"])
            for c in notebook.cells
            if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata.nbgrader.get("solution")}



def feedback_scores(page: str) -> dict[str, tuple[float, float]]:
    """``{"total": (score, max), grade_id: (score, max), ...}`` as printed on nbgrader's feedback page."""
    heading = re.search(r"<h4>.*?\(Score: ([0-9.]+) / ([0-9.]+)\)</h4>", page, re.S)
    assert heading, "the feedback page shows no total score"
    scores = {"total": (float(heading[1]), float(heading[2]))}
    for grade_id, got, out_of in re.findall(
            r'<li><a href="#([^"]+)">[^<]*</a>\s*\(Score: ([0-9.]+) / ([0-9.]+)\)</li>', page):
        scores[html.unescape(grade_id)] = (float(got), float(out_of))
    return scores
