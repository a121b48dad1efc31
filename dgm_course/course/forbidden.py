r"""Does student code use a name its task forbids? The static half of "no reference answers".

The verifier reads every student cell of a submission with :func:`names_by_cell` and charges a
task with :func:`reference_use`; the visible tests' early warning
(:func:`dgm_course.runtime.checks.reference_use`) reads one function's source with the same
pieces. Only ``ast`` and the grader's own imports are used: no student code runs here.

A name counts through every path the grader can see without running anything: an import (also
``importlib.import_module("dgm_course...")`` strings), an alias bound in any earlier cell or in
the trusted set-up cells, a ``from ... import *``, and each attribute chain from those names;
what a dotted name denotes is resolved in the grader (:func:`resolve`), so a re-export or a
module attribute of the same object is caught. The paths it cannot see (``getattr`` with a
computed string) are closed at run time: the spec's ``hidden`` names are not in the worker.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import threading
from dataclasses import dataclass

from .sandboxed.worker import strip_magics  # the worker runs cells so; read them the same way
from .spec import Task

__all__ = ["Bindings", "UnreadableCell", "forbidden_among", "imports", "names_by_cell", "parse", "reached",
           "reference_use", "resolve", "strip_magics", "student_tree", "used_names"]


# CPython 3.11 keeps ast's recursion depth per interpreter, not per thread: two threads building
# ASTs at once can fail with "SystemError: AST constructor recursion depth mismatch" (gh-106905).
# ``grade(..., workers=N)`` verifies students in threads, so every parse here takes this lock.
_AST_LOCK = threading.Lock()


def parse(source: str) -> ast.Module:
    with _AST_LOCK:
        return ast.parse(source)


class UnreadableCell(ValueError):
    """Student code that ``ast`` cannot read for a reason other than a syntax error: nested too
    deeply (RecursionError, MemoryError), a lone surrogate (UnicodeEncodeError). The submission's
    fault, never the grader's."""


@dataclass
class Bindings:
    """What the student's import statements bind, all cells together: a name -> the ``dgm_course``
    objects or modules it may denote (an import in one cell serves every later cell, and the
    functions of earlier ones called later), and the ``dgm_course`` modules imported with ``*``.
    Only names that denote something of the library are kept, so their number stays bounded."""

    alias: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    star: set[str] = dataclasses.field(default_factory=set)

    def bind(self, name: str, dotted: str) -> None:
        if resolve(dotted) is not None:
            self.alias.setdefault(name, set()).add(dotted)


def student_tree(code: str) -> ast.Module | None:
    """The AST of a student cell; None for a syntax error (it cannot run either).

    Raises :class:`UnreadableCell` for code ``ast`` cannot read otherwise (a 100,000-deep
    attribute chain, a lone surrogate): the cell's fault, which :func:`_student_names` charges to
    the student.
    """
    try:
        return parse(strip_magics(code))
    except SyntaxError:
        return None
    except (RecursionError, MemoryError) as exc:
        raise UnreadableCell(f"is nested too deeply to be read ({type(exc).__name__})") from None
    except ValueError as exc:  # UnicodeEncodeError: a lone surrogate
        raise UnreadableCell(f"could not be read ({type(exc).__name__})") from None


def imports(tree: ast.Module, bindings: Bindings) -> list[tuple[str, int]]:
    """The dotted names ``tree`` imports (and ``dgm_course...`` strings), with lines; records what
    each import binds in ``bindings``."""
    used: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                used.append((a.name, node.lineno))
                bindings.bind(a.asname or a.name.split(".")[0], a.name if a.asname else a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                if a.name == "*":
                    if inspect.ismodule(resolve(node.module)):
                        bindings.star.add(node.module)
                    continue
                used.append((f"{node.module}.{a.name}", node.lineno))
                bindings.bind(a.asname or a.name, f"{node.module}.{a.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("dgm_course"):
            used.append((node.value, node.lineno))  # importlib.import_module("dgm_course....")
    return used


def reached(tree: ast.Module, bindings: Bindings) -> list[tuple[str, int]]:
    """The dotted names that the names and attribute chains of ``tree`` reach through ``bindings``:
    whole chains only (``a.b.c``, not also ``a.b``; :func:`reference_use` checks each prefix),
    walked without recursion, so a chain of any depth costs its length."""
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    used: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Attribute, ast.Name)) or id(node) in inner:
            continue
        parts = []
        cur = node
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if isinstance(cur, ast.Name):
            bases = bindings.alias.get(cur.id) or {f"{m}.{cur.id}" for m in bindings.star}
            for base in sorted(bases):
                used.append((".".join([base, *reversed(parts)]), node.lineno))
    return used


def names_by_cell(cells: list[tuple[str, str]], setup: tuple[str, ...] = ()) -> list[tuple[str, list[tuple[str, int]]]]:
    """Each cell's label with the dotted names it imports or reaches, the student's cells read
    together: a name imported in one cell counts wherever it is used, and so does a name the
    trusted ``setup`` cells import (notebook 07's ``PixelCNNDecoder``). Raises
    :class:`UnreadableCell` (its message names the cell) for a student cell ``ast`` cannot read."""
    bindings = Bindings()
    for code in setup:
        imports(parse(strip_magics(code)), bindings)
    trees, imported = [], []
    for label, code in cells:
        try:
            tree = student_tree(code)
        except UnreadableCell as exc:
            raise UnreadableCell(f"{label} {exc}") from None
        trees.append(tree)
        imported.append(imports(tree, bindings) if tree is not None else [])
    return [(label, imported[k] + (reached(tree, bindings) if tree is not None else []))
            for k, ((label, _), tree) in enumerate(zip(cells, trees))]


def used_names(code: str) -> list[tuple[str, int]]:
    """Dotted names (``dgm_course.flows.Planar``) that one cell imports or reaches, with lines."""
    return names_by_cell([("", code)])[0][1]


def prefixes(dotted: str):
    """Each prefix of a ``dgm_course`` dotted name with the object it denotes in the grader, up to
    the first prefix that denotes nothing (one attribute or import per part: no recursion)."""
    parts = dotted.split(".")
    if parts[0] != "dgm_course":
        return
    obj = importlib.import_module("dgm_course")
    yield "dgm_course", obj
    for k in range(1, len(parts)):
        if inspect.ismodule(obj) and not obj.__name__.startswith("dgm_course"):
            return  # torch, NumPy...: no forbidden name lies beyond
        nxt = getattr(obj, parts[k], None)
        if nxt is None and inspect.ismodule(obj) and hasattr(obj, "__path__"):
            try:
                nxt = importlib.import_module(f"{obj.__name__}.{parts[k]}")
            except Exception:  # noqa: BLE001 - no such submodule (or not importable)
                nxt = None
        if nxt is None:
            return
        obj = nxt
        yield ".".join(parts[: k + 1]), obj


def resolve(dotted: str):
    """The object a ``dgm_course`` dotted name denotes in the grader, or None."""
    found = None
    for prefix, obj in prefixes(dotted):
        found = obj if prefix == dotted else None
    return found


def reference_use(task: Task, used: list[tuple[str, list[tuple[str, int]]]]) -> str | None:
    """Why ``task`` earns nothing if student code (``used``: :func:`names_by_cell`) imports or
    reaches a name it forbids, by its name or any other path to the same object; else None."""
    if not task.forbidden:
        return None
    targets = {f: resolve(f) for f in task.forbidden}
    for label, names in used:
        for name, line in names:
            for f in forbidden_among(name, targets):
                return (f"uses the library's reference {f} (line {line} of {label}); this task asks "
                        f"you to write it yourself, so it earns no points")
    return None


def forbidden_among(name: str, targets: dict[str, object]) -> list[str]:
    """The forbidden names (``targets``: name -> its object) that ``name`` or a prefix of it denotes."""
    hits = [f for f in targets if name == f or name.startswith(f + ".")]
    for _, got in ([] if hits else prefixes(name)):
        hits = [f for f, obj in targets.items()
                if obj is not None and (got is obj or (inspect.ismodule(obj) and inspect.getmodule(got) is obj))]
        if hits:
            break
    return hits
