"""The package's layout holds: no import cycle between its modules, no private name taken from
another module, and the grader (dgm_course.course) imported by no module outside it at import
time (the student-side runtime and the library reach the sandbox without it)."""

from __future__ import annotations

from pathlib import Path

import dgm_course

from .imports_support import import_time_imports

ROOT = Path(dgm_course.__file__).resolve().parent
SHARED_PRIVATE = {"dgm_course._common"}  # the library's one module of shared helpers, private by design


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts}


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    return import_time_imports(path, name if path.name == "__init__.py" else name.rpartition(".")[0])


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        deps = set()
        for module, names in _imports(name, path):
            deps |= {m for m in [module, *(f"{module}.{n}" for n in names)] if m in MODULES and m != name}
        graph[name] = deps
    return graph


def test_no_module_of_the_package_imports_itself_back_through_another():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [node, dep])
            elif dep not in state:
                visit(dep, [*stack, node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, cycles


def test_no_private_name_crosses_a_module_boundary():
    crossing = []
    for name, path in MODULES.items():
        for module, names in _imports(name, path):
            if module in MODULES and module not in SHARED_PRIVATE and module != name:
                crossing += [f"{name} imports {module}.{n}" for n in names
                             if n.startswith("_") and not n.startswith("__")]
    assert not crossing, crossing


def test_the_grader_is_imported_only_by_itself():
    outside = {name: deps for name, deps in _graph().items() if not name.startswith("dgm_course.course")}
    assert not {n: sorted(d) for n, d in outside.items() if any(x.startswith("dgm_course.course") for x in d)}
