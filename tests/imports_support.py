"""What a module imports when it is imported, read from its source (no code runs)."""

from __future__ import annotations

import ast
from pathlib import Path


def import_time_imports(path: Path, package: str = "") -> list[tuple[str, list[str]]]:
    """``(module, imported names)`` of each import outside a function or class: at the top, and in
    ``if`` and ``try`` blocks (handlers and ``else`` included). A relative import is resolved
    against ``package`` (the package the file belongs to), so ``from . import protocol`` in
    ``dgm_course.course.sandboxed`` reads ``("dgm_course.course.sandboxed", ["protocol"])``."""
    found, todo = [], list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            found.append((".".join(base + ([node.module] if node.module else [])), [a.name for a in node.names]))
        elif isinstance(node, (ast.If, ast.Try)):
            todo += [*node.body, *node.orelse, *getattr(node, "finalbody", []),
                     *(s for h in getattr(node, "handlers", []) for s in h.body)]
    return found
