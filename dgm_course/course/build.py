"""Build the student release and the executed solution of each source notebook, and check them.

Both are nbgrader's own steps, run on a fresh copy of the source in a temp course folder:

- release: ``generate_assignment`` (solution regions become stubs, hidden tests and markers go);
- solution: ``generate_solution``, i.e. the source (solution code and hidden tests kept) executed
  top to bottom; any error fails the build.

:func:`build` copies the results into the course; :func:`check` compares them with the committed
ones, byte for byte, and says what differs and what to run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor

from .config import Course, CourseError, execution_env, nbgrader_api

__all__ = ["generate", "build", "check", "notebook_differences", "solution_errors"]


class DropKernelVersion(NbGraderPreprocessor):
    """Remove the executing interpreter's exact version from a solution's metadata.

    Solutions are compared byte for byte with a fresh build; a patch release of Python must not
    make them differ.
    """

    def preprocess(self, nb, resources):
        nb.metadata.get("language_info", {}).pop("version", None)
        return nb, resources


def _solution_preprocessors(execute: bool) -> list:
    from nbgrader.preprocessors import ClearMarkScheme, ClearOutput, Execute, IncludeHeaderFooter, LockCells

    steps = [IncludeHeaderFooter, LockCells, ClearOutput, ClearMarkScheme]
    return [*steps, Execute, DropKernelVersion] if execute else steps


def solution_errors(notebook: Path) -> list[str]:
    """The errors an executed notebook recorded, one line per failing cell."""
    nb = json.loads(notebook.read_text())
    found = []
    for index, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                found.append(f"cell {index} ({_cell_name(cell)}): {out['ename']}: {out['evalue']}")
    return found


def _cell_name(cell: dict) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or cell.get("id", "?")


def generate(course: Course, assignment_id: str, dest: Path, solution: bool = True, execute: bool = True) -> None:
    """Release (and solution) of one assignment, built in ``dest`` as a course folder of its own.

    ``dest`` receives a copy of the source folder, the release, the solution (executed unless
    ``execute=False``) and the gradebook that ``generate_assignment`` fills.
    """
    from nbgrader.converters import GenerateSolution
    from nbgrader.utils import capture_log, temp_attrs

    course.source_notebook(assignment_id)
    shutil.copytree(course.root / course.source_name / assignment_id, dest / course.source_name / assignment_id)
    with execution_env():
        api = nbgrader_api(course, dest, **{"GenerateSolution.preprocessors": _solution_preprocessors(execute)})
        steps: list[tuple[str, Callable[[], dict]]] = [("generate_assignment", lambda: api.generate_assignment(assignment_id))]
        if solution:

            def generate_solution() -> dict:
                with temp_attrs(api.coursedir, assignment_id=assignment_id):
                    app = GenerateSolution(coursedir=api.coursedir, parent=api)
                    app.force = True
                    return capture_log(app)

            steps.append(("generate_solution", generate_solution))
        for name, step in steps:
            result = step()
            if not result["success"]:
                raise CourseError(f"nbgrader {name} failed for {assignment_id}:\n{result.get('log', '')}"
                                  f"{result.get('error', '')}")
    if solution and execute:
        errors = solution_errors(dest / course.solution_name / assignment_id / f"{assignment_id}.ipynb")
        if errors:
            raise CourseError(f"the solution of {assignment_id} does not run cleanly:\n  " + "\n  ".join(errors))


def build(course: Course, assignment_ids: Iterable[str] | None = None, solution: bool = True,
          log: Callable[[str], None] = print) -> list[Path]:
    """Write the release (and executed solution) of each assignment into the course; all when empty.

    Returns the folders written. Each assignment is generated in a temp folder first, so a failed
    build leaves the committed files as they were.
    """
    written = []
    for assignment_id in course.resolve(assignment_ids):
        with tempfile.TemporaryDirectory(prefix="dgm-course-build-") as tmp:
            log(f"building {assignment_id} ({'release and solution' if solution else 'release'})")
            generate(course, assignment_id, Path(tmp), solution=solution)
            kinds = [course.release_name] + ([course.solution_name] if solution else [])
            for kind in kinds:
                target = course.root / kind / assignment_id
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(Path(tmp) / kind / assignment_id, target)
                written.append(target)
                log(f"  wrote {kind}/{assignment_id}")
    return written


def notebook_differences(expected: Path, actual: Path) -> str:
    """Where two notebook files differ, in words ('' when they are equal byte for byte)."""
    if expected.read_bytes() == actual.read_bytes():
        return ""
    try:
        a, b = json.loads(expected.read_text()), json.loads(actual.read_text())
    except ValueError:
        return "not valid JSON"
    if len(a["cells"]) != len(b["cells"]):
        return f"{len(b['cells'])} cells, a fresh build has {len(a['cells'])}"
    for index, (ca, cb) in enumerate(zip(a["cells"], b["cells"])):
        for key in ("cell_type", "source", "metadata", "outputs", "execution_count", "id"):
            if ca.get(key) != cb.get(key):
                return f"cell {index} ({_cell_name(ca)}) differs in its {key}"
    return "notebook metadata or formatting differs"


def _tree_differences(expected: Path, actual: Path, label: str) -> list[str]:
    if not actual.is_dir():
        return [f"{label} is missing"]
    want = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file()}
    have = {p.relative_to(actual) for p in actual.rglob("*") if p.is_file()}
    problems = [f"{label}/{p} is missing" for p in sorted(want - have)]
    problems += [f"{label}/{p} is not part of a build" for p in sorted(have - want)]
    for rel in sorted(want & have):
        if rel.suffix == ".ipynb":
            why = notebook_differences(expected / rel, actual / rel)
        else:
            why = "" if (expected / rel).read_bytes() == (actual / rel).read_bytes() else "content differs"
        if why:
            problems.append(f"{label}/{rel}: {why}")
    return problems


def _solution_sources_differences(fresh: Path, committed: Path, label: str) -> list[str]:
    """Without executing: the committed solution has the cells of an unexecuted fresh one."""
    if not committed.is_file():
        return [f"{label} is missing"]
    a, b = json.loads(fresh.read_text()), json.loads(committed.read_text())
    strip = lambda nb: [(c["cell_type"], c["source"], c["metadata"]) for c in nb["cells"]]  # noqa: E731
    return [] if strip(a) == strip(b) else [f"{label}: its cells differ from the source's"]


def check(course: Course, assignment_ids: Iterable[str] | None = None, execute: bool = True,
          log: Callable[[str], None] = print) -> list[str]:
    """Problems that make the committed release or solution differ from a fresh build; ``[]`` if none.

    With ``execute=False`` the solution is not run: only its cells (not its outputs) are compared,
    which takes seconds. Each problem ends with the command that fixes it.
    """
    ids = course.resolve(assignment_ids)
    problems = []
    if not assignment_ids:
        for kind in (course.release_name, course.solution_name):
            for stray in sorted(p for p in (course.root / kind).glob("*") if p.is_dir() and p.name not in ids):
                problems.append(f"{kind}/{stray.name} has no source notebook: delete it")
    for assignment_id in ids:
        log(f"checking {assignment_id}")
        found = []
        with tempfile.TemporaryDirectory(prefix="dgm-course-check-") as tmp:
            tmp = Path(tmp)
            generate(course, assignment_id, tmp, solution=True, execute=execute)
            release = f"{course.release_name}/{assignment_id}"
            found += _tree_differences(tmp / release, course.root / release, release)
            solution = f"{course.solution_name}/{assignment_id}"
            if execute:
                found += _tree_differences(tmp / solution, course.root / solution, solution)
            else:
                name = f"{assignment_id}.ipynb"
                found += _solution_sources_differences(tmp / solution / name, course.root / solution / name,
                                                       f"{solution}/{name}")
        problems += [f"{p} (run: dgm-course build {assignment_id})" for p in found]
    return problems
