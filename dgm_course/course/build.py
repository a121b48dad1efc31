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
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor

from .cells import nbgrader_meta
from .config import Course, CourseError, execution_env, nbgrader_api

__all__ = ["MACHINE_DEPENDENT_TAG", "generate", "build", "check", "machine_dependence", "notebook_differences",
           "output_texts", "solution_errors"]


#: The one rule for output that depends on the machine, its load or the clock (timings, memory,
#: paths, dates, thread counts): the cell carries this tag, nbval's own. nbval then does not
#: compare its outputs, and the build does not keep them in the committed solution, so that
#: ``check`` compares everything else byte for byte. :func:`machine_dependence` finds cells that
#: need the tag and lack it; ``check`` and the tests report them.
MACHINE_DEPENDENT_TAG = "nbval-ignore-output"

# Calls whose result differs between machines, runs or loads, by the name they are reached through.
_MACHINE_CALLS = re.compile(
    r"\b(time\.(perf_counter|perf_counter_ns|time|time_ns|monotonic|monotonic_ns|process_time|thread_time)"
    r"|perf_counter|process_time|timeit|datetime\.(now|today|utcnow)|date\.today|os\.(cpu_count|getpid|getcwd)"
    r"|Path\.(cwd|home)|get_num_threads|gethostname|getrusage|tracemalloc|psutil|platform\.\w+)\b"
    r"|^\s*%{1,2}(time|timeit|prun)\b", re.M)
# Printed text that looks like it came from one: a duration, an amount of memory, a date, a path.
_MACHINE_TEXT = re.compile(
    r"\b\d+(\.\d+)?\s?(s|ms|µs|us|ns|sec|seconds|min|minutes|it/s|s/it|[KMG]i?B|bytes)\b(?![-/])"
    r"|\b20\d\d-[01]\d-[0-3]\d\b|(?<![\w.])/(tmp|home|root|usr|var|work|opt|srv)/")


def _is_machine_dependent(cell: dict) -> bool:
    return MACHINE_DEPENDENT_TAG in cell.get("metadata", {}).get("tags", [])


def machine_dependence(notebook: dict, calls: bool = True, outputs: bool = True) -> list[str]:
    """Cells of a notebook (JSON) that call the clock or the machine (``calls``), or whose outputs
    look like a time, an amount of memory, a date or a path (``outputs``), without
    :data:`MACHINE_DEPENDENT_TAG`; one line each.

    Example:
        >>> cell = {"cell_type": "code", "metadata": {}, "outputs": [], "id": "t",
        ...         "source": "t0 = time.perf_counter()"}
        >>> machine_dependence({"cells": [cell]})
        ["cell 0 (t) calls time.perf_counter but is not tagged 'nbval-ignore-output'"]
        >>> cell["metadata"]["tags"] = ["nbval-ignore-output"]
        >>> machine_dependence({"cells": [cell]})
        []
    """
    found = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code" or _is_machine_dependent(cell):
            continue
        where, tag = f"cell {index} ({_cell_name(cell)})", MACHINE_DEPENDENT_TAG
        call = _MACHINE_CALLS.search(_text(cell["source"])) if calls else None
        if call:
            found.append(f"{where} calls {call[0].strip()} but is not tagged {tag!r}")
        for out in cell.get("outputs", []) if outputs else []:
            for match in filter(None, (_MACHINE_TEXT.search(text) for text in output_texts(out))):
                found.append(f"{where} prints {match[0]!r}, which depends on the machine, but is not tagged {tag!r}")
    return found


def output_texts(output: dict) -> list[str]:
    """The text an output shows a reader: its stream text and every ``text/*`` representation."""
    texts = [output.get("text", "")] + [v for k, v in output.get("data", {}).items() if k.startswith("text/")]
    return [_text(text) for text in texts]


def _text(value: str | list[str]) -> str:
    """A notebook's multi-line string, stored as one string or as a list of lines."""
    return "".join(value) if isinstance(value, list) else value


class DropMachineDependentOutputs(NbGraderPreprocessor):
    """Clear the outputs of cells tagged :data:`MACHINE_DEPENDENT_TAG` once they have run."""

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if _is_machine_dependent(cell):
                cell.outputs = []
        return nb, resources


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

    class ExecuteWithOneStream(Execute):
        """nbgrader's Execute, with a cell's printed text as one stream output however the kernel
        happened to flush it: a loaded machine splits a cell's prints into more messages."""

        coalesce_streams = True

    steps = [IncludeHeaderFooter, LockCells, ClearOutput, ClearMarkScheme]
    return [*steps, ExecuteWithOneStream, DropMachineDependentOutputs, DropKernelVersion] if execute else steps


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
    return nbgrader_meta(cell).get("grade_id") or cell.get("id", "?")


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
    which takes seconds. Cells whose output depends on the machine and that lack
    :data:`MACHINE_DEPENDENT_TAG` are problems too. Each problem ends with what fixes it.
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
        source = course.source_notebook(assignment_id)
        problems += [f"{source.relative_to(course.root)}: {p} (tag it, or print a value that does not depend on "
                     f"the machine)" for p in machine_dependence(json.loads(source.read_text()))]
        solution = course.root / course.solution_name / assignment_id / f"{assignment_id}.ipynb"
        if solution.is_file():
            problems += [f"{solution.relative_to(course.root)}: {p} (tag the cell in its source, then run: "
                         f"dgm-course build {assignment_id})"
                         for p in machine_dependence(json.loads(solution.read_text()), calls=False)]
    return problems
