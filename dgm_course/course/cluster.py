"""Where each student's grading runs: threads of this process (the default) or a Dask cluster.

``dgm-course grade --workers N`` grades N students at once in threads of the grading process (each
drives its student's sandboxed child processes); nothing else is needed. ``--cluster ADDRESS``
sends each student to a ``dask.distributed`` scheduler instead (``tcp://host:8786``), and
``--cluster local:N`` starts a :class:`distributed.LocalCluster` of N single-threaded worker
processes, so that the whole path runs on one machine.

A worker runs the very function the local run does (:func:`dgm_course.course.grade._grade_student`)
on a copy of the student's validated submission and of the assignment's source, in a temp folder
of its own: the same sandbox, the same limits. It sends back the student's result and the files
of its grading folder; the coordinating process alone writes the grading folder, the CSV and the
gradebook. A worker that dies is replaced by the scheduler and its student graded again elsewhere
(``distributed.scheduler.allowed-failures``); only one result per student is ever collected.

Before any student is graded, :func:`runner` checks that the scheduler answers, that it has
workers, and that every worker runs this very code and can build the sandbox the grading
requires; otherwise one :class:`~dgm_course.course.config.CourseError` says what is wrong.
Nothing here imports dask unless a cluster is asked for.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from .config import CourseError

__all__ = ["Runner", "runner", "code_fingerprint", "worker_report", "CONNECT_TIMEOUT_S", "ALLOWED_FAILURES",
           "RETRIES"]

CONNECT_TIMEOUT_S = 20  # the scheduler must answer within this
WORKERS_TIMEOUT_S = 60  # ... and have a worker within this
ALLOWED_FAILURES = 3  # worker deaths one student's task may cause before its row says error (LocalCluster)
RETRIES = 2  # a task that raised (not a student's failure: those are rows) is tried again this often
LOCAL_PREFIX = "local:"


class Runner(Protocol):
    """Runs one student's grading somewhere; ``remote``: in another process that shares no files."""

    remote: bool

    def submit(self, fn: Callable, /, *args) -> cf.Future: ...


class _Threads:
    """``workers`` threads of this process, which share the grading folder."""

    remote = False

    def __init__(self, pool: cf.ThreadPoolExecutor) -> None:
        self._pool = pool

    def submit(self, fn: Callable, /, *args) -> cf.Future:
        return self._pool.submit(fn, *args)


class _Dask:
    """A Dask client: each task runs on some worker process, perhaps on another machine."""

    remote = True

    def __init__(self, client) -> None:
        self._executor = client.get_executor(pure=False, retries=RETRIES)

    def submit(self, fn: Callable, /, *args) -> cf.Future:
        return self._executor.submit(fn, *args)


@functools.cache
def code_fingerprint() -> str:
    """A hash of the whole package's source (the grader, the sandbox, the specs and the library the
    sandbox gets): a worker must grade with exactly the coordinator's code."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def worker_report() -> dict[str, str]:
    """What the coordinator checks on each worker before grading: its code and its sandbox level."""
    from .sandbox import available_isolation

    return {"fingerprint": code_fingerprint(), "isolation": available_isolation()}


@contextlib.contextmanager
def runner(cluster: str | None, workers: int = 1, require: str | None = None) -> Iterator[Runner]:
    """Threads (``cluster`` is ``None``), a LocalCluster (``local:N``) or a scheduler's address."""
    if cluster is None:
        with cf.ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
            yield _Threads(pool)
        return
    with _client(cluster) as client:
        _check_workers(client, cluster, require)
        yield _Dask(client)


def _local_size(cluster: str) -> int:
    try:
        size = int(cluster[len(LOCAL_PREFIX):])
    except ValueError:
        size = 0
    if size < 1:
        raise CourseError(f"--cluster {cluster}: write local:N with N >= 1 worker processes")
    return size


@contextlib.contextmanager
def _client(cluster: str) -> Iterator[object]:
    """A connected client (and the LocalCluster it runs, for ``local:N``), closed afterwards."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise CourseError("--cluster needs dask.distributed: pip install -c requirements/constraints.txt "
                          "'.[cluster]'") from None
    with contextlib.ExitStack() as stack, dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        if cluster.startswith(LOCAL_PREFIX):
            # One thread per worker: a worker grades one student at a time, as one local thread does;
            # no memory limit: a student's sandboxed runs are bounded by their own rlimits.
            address = stack.enter_context(LocalCluster(n_workers=_local_size(cluster), threads_per_worker=1,
                                                       processes=True, memory_limit=0, dashboard_address=None))
        else:
            address = cluster
        try:
            client = stack.enter_context(Client(address, timeout=CONNECT_TIMEOUT_S))
        except (OSError, TimeoutError, ValueError) as err:
            raise CourseError(f"cannot reach the Dask scheduler at {cluster}: {err}") from None
        yield client


def _check_workers(client, cluster: str, require: str | None) -> None:
    """Every worker runs this code and builds the sandbox that ``require`` asks for."""
    from .sandbox import ISOLATION_ORDER

    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
    except TimeoutError:
        raise CourseError(f"the Dask scheduler at {cluster} has no workers (waited {WORKERS_TIMEOUT_S} s): "
                          "start some (dask worker ADDRESS) first") from None
    try:
        reports = client.run(worker_report)
    except OSError as err:  # distributed's CommClosedError: a worker died while it was asked
        raise CourseError(f"a worker of the Dask scheduler at {cluster} was lost while it was checked ({err}): "
                          "run again") from None
    wrong_code = sorted(w for w, r in reports.items() if r["fingerprint"] != code_fingerprint())
    if wrong_code:
        raise CourseError(f"the Dask workers {', '.join(wrong_code)} run another version of dgm-course than this "
                          f"grader ({code_fingerprint()}): install the same checkout in every worker's environment")
    if require is not None:
        weak = sorted(f"{w} ({r['isolation']})" for w, r in reports.items()
                      if ISOLATION_ORDER.index(r["isolation"]) < ISOLATION_ORDER.index(require))
        if weak:
            raise CourseError(f"the Dask workers {', '.join(weak)} cannot build the sandbox (isolation {require!r} "
                              "needed: Linux namespaces, as root or with unprivileged user namespaces)")
