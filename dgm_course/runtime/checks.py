"""Messages for the visible tests of the notebooks: what was expected, what came back, for which input.

A visible test cell compares a student's value with a known one and asserts on the message::

    problem = mismatch("log_prob_transformed(x, f, log_prob_z)", got, expected, atol=1e-6,
                       inputs={"x": x}, mistakes={"the log-det term is missing": log_prob_z(z)})
    assert not problem, problem

The comparison is :func:`dgm_course.jacobian.assert_close` (shape, finiteness, tolerance, worst
sample); this module only words the result for a student. When the value matches one of the
``mistakes`` (a typical wrong answer computed by the test), the message names the mistake.

Example:
    >>> import torch
    >>> x = torch.tensor([[1.0], [2.0]])
    >>> mismatch("double(x)", 2 * x, 2 * x, atol=1e-6, inputs={"x": x})
    ''
    >>> print(mismatch("double(x)", x, 2 * x, atol=1e-6, inputs={"x": x},
    ...                mistakes={"you returned x unchanged": x}))
    double(x) is wrong: you returned x unchanged.
      input x = [[1.0], [2.0]]
      expected  [[2.0], [4.0]]
      got       [[1.0], [2.0]]
      (value: mismatch at sample 1: got 2, expected 4 ...)
"""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from dgm_course.jacobian import FlowCheckError, assert_close

__all__ = ["assert_no_reference", "mismatch", "reference_use", "show"]


def show(value: object, max_items: int = 6, digits: int = 4) -> str:
    """A short, readable rendering of a tensor (or anything): rounded, at most ``max_items`` rows."""
    if not isinstance(value, Tensor):
        return repr(value)
    t = value.detach().cpu()
    if t.is_floating_point():
        t = t.double().mul(10**digits).round().div(10**digits)
    rows = t.tolist()
    if isinstance(rows, list) and len(rows) > max_items:
        return f"{rows[:max_items]} ... ({t.shape[0]} rows in all)"[:600]
    return str(rows)[:600]


def mismatch(
    what: str,
    got: object,
    expected: Tensor,
    atol: float,
    rtol: float = 0.0,
    inputs: Mapping[str, object] | None = None,
    mistakes: Mapping[str, Tensor] | None = None,
) -> str:
    """``''`` if ``got`` equals ``expected`` within ``atol + rtol * |expected|``, else a message.

    The message says what was computed (``what``), for which ``inputs``, what was expected and
    what came back, and, when ``got`` equals one of ``mistakes`` (description -> the value that
    mistake gives), which mistake it looks like. Also wrong: a non-tensor, another shape or a
    dtype other than ``expected``'s.
    """
    if isinstance(got, Tensor) and got.shape == expected.shape and got.dtype != expected.dtype:
        detail = f"dtype {got.dtype}, expected {expected.dtype} (keep the input's dtype)"
    else:
        try:
            assert_close(got, expected, atol, rtol, what="value")  # type: ignore[arg-type]
            return ""
        except FlowCheckError as err:
            detail = str(err)
    diagnosis = "."
    for description, value in (mistakes or {}).items():
        if isinstance(got, Tensor) and got.shape == value.shape and torch.allclose(
            got.detach().to(value.dtype), value, atol=atol, rtol=max(rtol, 1e-6), equal_nan=True
        ):
            diagnosis = f": {description}."
            break
    lines = [f"{what} is wrong{diagnosis}"]
    lines += [f"  input {name} = {show(value)}" for name, value in (inputs or {}).items()]
    lines += [f"  expected  {show(expected)}", f"  got       {show(got)}", f"  ({detail})"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Before submitting: does a task's function use the library's reference (which scores 0)?


def _forbidden_of(assignment_id: str, function_name: str) -> dict[str, object]:
    """The names the spec of ``assignment_id`` forbids for the task ``function_name`` (every task's
    when no task has that name), each with the object it denotes."""
    from dgm_course.course.forbidden import resolve
    from dgm_course.course.verify import load_spec

    tasks = load_spec(assignment_id).tasks
    names = [f for t in tasks if t.task_id == function_name for f in t.forbidden]
    if not names:
        names = [f for t in tasks for f in t.forbidden]
    return {f: resolve(f) for f in dict.fromkeys(names)}


def _denotes(obj: object, targets: dict[str, object]) -> str | None:
    """The forbidden name (of ``targets``) that ``obj`` is, or that holds it (a forbidden module)."""
    for name, target in targets.items():
        if target is None:
            continue
        if obj is target:
            return name
        if inspect.ismodule(target) and not inspect.ismodule(obj) and inspect.getmodule(obj) is target:
            return name
    return None


def _uses(function: Callable, targets: dict[str, object], seen: set[int]) -> list[str]:
    """The forbidden names that ``function``'s own source reaches, through its globals and its
    imports, and through the notebook's functions it calls (read the same way, each once)."""
    from dgm_course.course.forbidden import Bindings, forbidden_among, imports, parse

    if id(function) in seen or not inspect.isfunction(function):
        return []
    seen.add(id(function))
    try:
        tree = parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError, ValueError, RecursionError, MemoryError):
        return []  # no source to read (a lambda in a string, a compiled function): nothing to say
    found: list[str] = []
    bindings = Bindings()
    for dotted, _ in imports(tree, bindings):
        found += forbidden_among(dotted, targets)
    local_imports = {name: sorted(d)[0] for name, d in bindings.alias.items()}
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Attribute, ast.Name)) or id(node) in inner:
            continue
        parts, cur = [], node
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if not isinstance(cur, ast.Name):
            continue
        if cur.id in local_imports:
            found += forbidden_among(".".join([local_imports[cur.id], *reversed(parts)]), targets)
            continue
        if cur.id in function.__globals__:
            obj = function.__globals__[cur.id]
        elif hasattr(builtins, cur.id):
            continue
        else:
            continue
        chain = [obj]
        for attr in reversed(parts):  # attributes of modules and classes only: no property runs
            if not (inspect.ismodule(obj) or inspect.isclass(obj)):
                break
            obj = inspect.getattr_static(obj, attr, None)
            if obj is None:
                break
            chain.append(obj)
        for item in chain:
            name = _denotes(item, targets)
            if name:
                found.append(name)
                break
        else:
            if inspect.isfunction(obj) and getattr(obj, "__module__", None) == function.__module__:
                found += _uses(obj, targets, seen)  # a helper of the student's: read it too
    return found


def reference_use(assignment_id: str, *functions: Callable) -> str:
    """``''``, or a message naming each library reference that ``functions`` use and the
    assignment's spec forbids for their task (such a task scores 0 when graded).

    Reads each function's source (and the notebook's functions it calls) without running it:
    what a name denotes is looked up in the function's globals, so an alias or a module attribute
    is caught as well as a direct import. The grader's own check reads the whole submission and is
    the one that counts; this one only warns early, and says nothing when it cannot read a source.
    """
    lines = []
    for function in functions:
        try:
            targets = _forbidden_of(assignment_id, getattr(function, "__name__", ""))
            used = list(dict.fromkeys(_uses(function, targets, set())))
        except Exception:  # noqa: BLE001 - a warning must never stop a correct notebook
            continue
        for name in used:
            lines.append(f"{function.__name__} uses {name}, which scores 0 when graded: "
                         f"this task asks you to write it yourself.")
    return "\n".join(lines)


def assert_no_reference(assignment_id: str, *functions: Callable) -> None:
    """Raise ``AssertionError`` with :func:`reference_use`'s message when ``functions`` use a
    forbidden library reference; return ``None`` otherwise."""
    problem = reference_use(assignment_id, *functions)
    assert not problem, problem
