"""A course folder: the one holding ``nbgrader_config.py``, its assignments, and nbgrader's API on it.

Layout (set in ``nbgrader_config.py``; every path relative to the course folder)::

    nbgrader_config.py
    source_notebooks/<id>/<id>.ipynb   the instructor's notebook (one per assignment)
    assignments/<id>/<id>.ipynb        nbgrader's student release
    solutions/<id>/<id>.ipynb          the source executed top to bottom, with outputs

Everything that runs nbgrader goes through :func:`nbgrader_api` inside :func:`execution_env`.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

__all__ = ["CONFIG_FILE", "PINNED_CODE_PATHS", "CourseError", "Course", "execution_env", "nbgrader_api"]

CONFIG_FILE = "nbgrader_config.py"

#: The numerical code paths that kernels started under :func:`execution_env` (building, checking,
#: nbval) are held to, so that a solution executes to the same digits on every x86-64 CPU with AVX2,
#: whatever wider instructions it has. Each library otherwise picks its kernels by the CPU at hand
#: (AVX-512 or not, the vendor), and a few hundred training steps turn their different roundings into
#: other printed digits (a test NLL of 1.059 on one CPU, 1.062 on another). ATen's own kernels stop at
#: AVX2; oneMKL runs its conditional-numerical-reproducibility branch COMPATIBLE (SSE2 without the
#: approximate rcpps/rsqrtps, whose results differ between vendors); oneDNN, which runs convolutions,
#: stops at AVX2. The cost on 2 cores: notebook 07 takes about 1.5 times as long, the others at most
#: 30% more. Grading and students' own kernels are not pinned: their verdicts rest on tolerances, not
#: on digits.
PINNED_CODE_PATHS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"}


class CourseError(Exception):
    """An instructor-facing error that says what is wrong and what to do (the CLI exits 2)."""


@dataclass(frozen=True)
class Course:
    """A course folder and its nbgrader configuration.

    Example:
        >>> from pathlib import Path
        >>> course = Course.load(Path(__file__).parents[2])
        >>> "01_change_of_variables" in course.assignment_ids()
        True
        >>> course.source_notebook("01_change_of_variables").name
        '01_change_of_variables.ipynb'
    """

    root: Path
    config: Config

    @classmethod
    def load(cls, folder: str | os.PathLike = ".") -> Course:
        root = Path(folder).resolve()
        if not (root / CONFIG_FILE).is_file():
            raise CourseError(
                f"{root} has no {CONFIG_FILE}: run this command in the course folder "
                f"(the repository root) or pass --course FOLDER"
            )
        config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
        return cls(root, config)

    def _folder(self, trait: str, default: str) -> str:
        value = self.config.CourseDirectory.get(trait, default)
        if os.path.isabs(value):
            raise CourseError(f"{CONFIG_FILE}: CourseDirectory.{trait} must be relative to the course folder")
        return value

    @property
    def source_name(self) -> str:
        return self._folder("source_directory", "source")

    @property
    def release_name(self) -> str:
        return self._folder("release_directory", "release")

    @property
    def solution_name(self) -> str:
        return self._folder("solution_directory", "solution")

    def assignment_ids(self) -> list[str]:
        """Every folder of the source directory that holds its ``<id>.ipynb``, sorted."""
        source = self.root / self.source_name
        return sorted(p.parent.name for p in source.glob("*/*.ipynb") if p.stem == p.parent.name)

    def source_notebook(self, assignment_id: str) -> Path:
        """``source/<id>/<id>.ipynb``; a clear :class:`CourseError` if it does not exist."""
        folder = self.root / self.source_name / assignment_id
        notebook = folder / f"{assignment_id}.ipynb"
        if not folder.is_dir():
            known = ", ".join(self.assignment_ids()) or "none"
            raise CourseError(f"unknown assignment {assignment_id!r}: no folder {self.source_name}/{assignment_id} "
                              f"(known assignments: {known})")
        if not notebook.is_file():
            raise CourseError(f"missing source notebook {self.source_name}/{assignment_id}/{notebook.name}: "
                              f"each assignment folder holds one notebook named like the folder")
        return notebook

    def resolve(self, assignment_ids: Iterable[str] | None) -> list[str]:
        """The given ids after checking each has a source notebook; all assignments when empty."""
        ids = list(assignment_ids or []) or self.assignment_ids()
        if not ids:
            raise CourseError(f"no assignments: {self.source_name}/ holds no <id>/<id>.ipynb")
        for assignment_id in ids:
            self.source_notebook(assignment_id)
        return ids


@contextlib.contextmanager
def execution_env() -> Iterator[None]:
    """The environment nbgrader and the notebook kernels it starts must see; restored afterwards.

    - this interpreter's ``bin`` first on ``PATH``: nbgrader runs ``alembic`` from ``PATH`` to create a
      gradebook, and kernels must be this environment's, even when the venv is not activated;
    - no ``MPLBACKEND`` (an ``Agg`` from the shell would hide every figure), no progress bars
      (``TQDM_DISABLE``: their widgets and rates differ on every run), a fixed ``PYTHONHASHSEED``;
    - no ``PYTEST_CURRENT_TEST``: under it ipykernel stops capturing C-level output, so kernels
      started by the tests would not behave as in a real grading run;
    - torch, oneMKL and oneDNN on :data:`PINNED_CODE_PATHS`, so that outputs do not depend on the CPU.
    """
    saved = dict(os.environ)
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), saved.get("PATH", "")])
    for name in ("MPLBACKEND", "PYTEST_CURRENT_TEST"):
        os.environ.pop(name, None)
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["PYTHONHASHSEED"] = "0"
    os.environ.update(PINNED_CODE_PATHS)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@functools.cache
def _unused_exchange() -> str:
    """An empty, writable exchange folder for this process, removed at exit.

    Building, checking and grading never use nbgrader's exchange, but ``NbGraderAPI`` lists it when
    it starts and logs a critical "Unwritable directory" when the default root does not exist.
    """
    folder = tempfile.mkdtemp(prefix="dgm-course-exchange-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def nbgrader_api(course: Course, root: str | os.PathLike, **config: object):
    """nbgrader's ``NbGraderAPI`` on the course's configuration, with its course folder at ``root``.

    ``config`` sets further traits, as ``{"Execute.timeout": 10}``. The gradebook is the default,
    ``<root>/gradebook.db``. Unless the course configures one, the exchange is an empty folder of
    this process (see :func:`_unused_exchange`).
    """
    from nbgrader.apps.api import NbGraderAPI

    cfg = copy.deepcopy(course.config)
    cfg.CourseDirectory.root = str(Path(root).resolve())
    # Solutions are committed and compared byte for byte: no run times or widget state in them.
    cfg.Execute.record_timing = False
    cfg.Execute.store_widget_state = False
    if "root" not in cfg.Exchange:
        cfg.Exchange.root = _unused_exchange()
    for key, value in config.items():
        section, trait = key.split(".")
        cfg[section][trait] = value
    return NbGraderAPI(config=cfg)
