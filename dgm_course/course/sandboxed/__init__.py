"""The programs that run inside the sandbox, as files.

Each entry point is a script of this folder, copied into a run's job folder by :func:`install`
and started there as ``python {job}/<name>.py``, beside copies of the modules it imports:

- ``worker.py``: the verifier's worker (cells, then each task's probe), see :mod:`..verify`;
- ``autograde.py``: nbgrader's autograde of one submission (the in-kernel run), see :mod:`..grade`;
- ``feedback.py``: nbgrader's feedback page of one autograded notebook, in a sandbox of its own;
- ``nofork_kernel.py``: the notebook's kernel of the in-kernel run, which may start no process;
- :mod:`.protocol`: the one framing of every result channel (a JSON head line and a payload);
- :mod:`.seccomp`: the filter that forbids new processes (the sandbox's launcher uses it too).

The rule these files keep, checked by ``tests/course/test_sandboxed.py``: at the top of a file,
imports of the standard library and of this folder's modules only (a run sets its process up
before anything else is imported: the worker its ``sys.path``, the kernel its filter); an entry
point does its work in ``main()`` under ``if __name__ == "__main__"``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["ENTRY_POINTS", "MODULES", "install", "readable"]

HERE = Path(__file__).resolve().parent
ENTRY_POINTS = ("worker", "autograde", "feedback", "nofork_kernel")
MODULES = ("protocol", "seccomp")  # what the entry points import from this folder


def install(job: Path, *entry_points: str) -> None:
    """Copy ``entry_points`` (names from :data:`ENTRY_POINTS`) and :data:`MODULES` into ``job``."""
    for name in (*entry_points, *MODULES):
        if name not in ENTRY_POINTS + MODULES:
            raise ValueError(f"not a program of the sandbox: {name!r}")
        shutil.copyfile(HERE / f"{name}.py", Path(job) / f"{name}.py")


def readable(job: Path) -> None:
    """Every file of a job folder readable (and nothing writable) by a run's own uid."""
    for root, _, files in os.walk(job):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
