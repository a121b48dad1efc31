r"""Run an untrusted command in a throw-away, resource-limited, isolated process.

The autograder runs student code here (see :mod:`dgm_course.course.verify`). Nothing beyond the
standard library and util-linux ``unshare`` (on Debian by default) is needed.

Mechanism (``isolation="namespace"``, the default wherever it works):

1. ``unshare --mount --net --pid --ipc --uts --fork --kill-child`` puts the worker in new Linux
   namespaces; without root, ``--user --map-root-user`` is added (``"userns"``).
2. Inside, a small launcher (this file run as a script, standard library only) builds a new root
   on a tmpfs that holds *only*: the system directories read-only (``/usr``, ``/bin``, ``/lib*``,
   ``/sbin``, a handful of files from ``/etc``), the Python installation read-only, the job folder
   read-only at ``/job``, a fresh size-limited tmpfs at ``/scratch`` (the working directory and
   ``HOME``; ``/tmp`` points into it), a minimal ``/dev`` and the ``/proc`` of its own pid
   namespace. It then ``pivot_root``\ s into it and detaches the old root, so every other path of
   the machine - the course tree, source notebooks, solutions, hidden tests, the gradebook, other
   students' submissions, the host's ``/tmp`` and home folders - does not exist for the worker.
   ``hide`` paths inside the visible trees (e.g. an installed copy of the reference library) are
   covered by empty read-only tmpfs mounts.
3. It drops privileges: no-new-privileges, an empty capability bounding set, and as real root a
   switch to an unused uid of its own (so concurrent runs share no process count and cannot
   signal each other); the new root itself is remounted read-only.
4. Limits: ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``,
   ``RLIMIT_NPROC``, no core files; the scratch tmpfs has a size. A seccomp filter refuses new
   processes (``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``; threads stay allowed), so
   the memory limit of the one process (plus the scratch tmpfs) is the memory of the run: a
   fork bomb cannot multiply it; and it refuses leaving the run (``setsid``, ``setpgid``,
   ``unshare``, ``setns``, ``prctl(PR_SET_PDEATHSIG)``) or reaching other processes (``ptrace``,
   ``process_vm_readv``/``writev``). (``Limits(fork=True)`` lifts the filter; then ``nproc`` bounds
   the processes and the memory is ``nproc`` times the limit.) The *parent* enforces the
   wall-clock limit by SIGKILL, which a loop ignoring SIGINT/SIGTERM cannot catch, to the first
   process of the run's pid namespace (the launcher reports its host pid on the status channel;
   the parent holds it as a pidfd) - the kernel then kills every process in the namespace,
   whatever its session, process group or death signal - and to the process group it started.
   Every run ends so, finished or not, and the parent waits until the namespace is empty. stdout
   and stderr are read concurrently and capped: past its cap the process is killed
   (``output_limited``), so an output bomb costs neither memory nor disk.

What it leaves open: reading the world-readable system files and Python packages that are
mounted (they are the same on every student's machine); the shared kernel (the seccomp filter
only forbids new processes: a kernel exploit is not contained), CPU and cache timing side channels, and the CPU time of the
machine up to the limits. The worker can write only to its scratch tmpfs, which vanishes with it;
it has no network (an empty network namespace) and sees no other process.

Fallback (``isolation="none"``, used only when namespaces are unavailable, e.g. in a container
without ``CAP_SYS_ADMIN`` and without user namespaces, and reported in every result): the limits,
the seccomp filter, the scrubbed environment, the scratch folder and the process-group kill still
apply, but the worker sees the whole file system with the grader's permissions and can open
network connections; there is no pid namespace to kill by, so with ``fork=True`` (no filter) a
process that calls ``setsid`` or ``setpgid`` can outlive the run (its CPU time is still capped by
``RLIMIT_CPU``). Graders should refuse this level for real grading
(see ``require``).

Example:
    >>> import sys
    >>> r = run([sys.executable, "-c", "print(6 * 7)"], Limits(wall_s=30))
    >>> (r.returncode, r.stdout, r.timed_out)
    (0, b'42\n', False)
"""

from __future__ import annotations

import functools
import json
import os
import platform
import select
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

try:
    from .sandboxed import seccomp
except ImportError:  # run as the launcher script (python -I: its own folder is not on sys.path)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandboxed"))
    import seccomp

__all__ = ["Limits", "SandboxResult", "SandboxError", "run", "available_isolation", "JOB_DIR", "ISOLATION_ORDER"]

JOB_DIR = "/job"  # where the read-only job folder appears inside the namespace
SCRATCH_DIR = "/scratch"
_SETUP_OK = b"ready\n"
_SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
_ETC_FILES = ["passwd", "group", "nsswitch.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime",
              "hosts", "mime.types"]


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (never caused by the code that runs inside it)."""


class _SetupFailed(SandboxError):
    """The launcher stopped before it reported ``ready``: no code of the run had started yet."""


_SETUP_TRIES = (0.0, 1.0, 4.0)  # seconds to wait before each try: a start that failed on a loaded
# machine ('unshare: sigprocmask unblock failed', a launcher killed during set-up) usually works later
_wait_before_try = time.sleep  # its own name, so a test can replace it without replacing time.sleep for
# the whole process (subprocess's waits and every other thread sleep through time.sleep too)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run. Sizes in MiB (``*_mb``) or bytes (``*_bytes``)."""

    wall_s: float = 60.0
    cpu_s: int | None = None  # default: two busy threads for the whole wall-clock limit, plus 1 s
    memory_mb: int = 4096  # address space; importing torch alone maps about 650 MiB
    file_mb: int = 64  # largest file the worker may write
    scratch_mb: int = 256  # size of the scratch tmpfs
    nofile: int = 256
    nproc: int = 256  # threads (and processes, where allowed) of the worker's user
    fork: bool = False  # allow child processes (off: threads only, see sandboxed/seccomp.py)
    stdout_bytes: int = 64 << 20
    stderr_bytes: int = 1 << 20


@dataclass
class SandboxResult:
    """What came back from one run. ``returncode`` is negative for a signal, as in subprocess."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    output_limited: bool
    isolation: str
    wall_s: float = field(default=0.0, compare=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_limited

    def describe(self) -> str:
        """A short, deterministic reason for feedback (no timings, no paths)."""
        if self.timed_out:
            return "the wall-clock limit was reached (the process was killed)"
        if self.output_limited:
            return "the output limit was exceeded (the process was killed)"
        if self.returncode < 0:
            name = signal.Signals(-self.returncode).name if -self.returncode in signal.valid_signals() else "?"
            return f"the process was killed by signal {name} (memory, CPU-time or file-size limit, or a crash)"
        if self.returncode != 0:
            return f"the process exited early with status {self.returncode}"
        return "finished"


def _python_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    exe = Path(sys.executable)
    roots.add(str(exe.parent))
    real = exe.resolve()
    roots.add(str(real.parent.parent))  # .../bin/python3 -> the installation
    return sorted(r for r in roots if r and os.path.isdir(r))


def _worker_env(extra: dict[str, str] | None, home: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": os.path.join(home, "tmp"),
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",  # deterministic reductions and a fair share of the grading machine
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": os.path.join(home, ".mpl"),
        "USER": "student",  # the run's uid has no passwd entry; getpass.getuser() reads these
        "LOGNAME": "student",
    }
    env.update(extra or {})
    return env


def _unshare_argv(userns: bool) -> list[str]:
    exe = shutil.which("unshare") or "/usr/bin/unshare"
    argv = [exe, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--propagation", "private"]
    return argv + (["--user", "--map-root-user"] if userns else [])


_PROBED: dict[str, bool] = {}


def _mode_works(mode: str) -> bool:
    if mode not in _PROBED:
        try:
            r = _run(mode, [sys.executable, "-I", "-S", "-c", "pass"], Limits(wall_s=30), None, [], [], {})
            _PROBED[mode] = r.returncode == 0
        except (SandboxError, OSError):
            _PROBED[mode] = False
    return _PROBED[mode]


ISOLATION_ORDER = ("none", "userns", "namespace")  # weakest first


def available_isolation() -> str:
    """The strongest level that works here: ``"namespace"`` (root), ``"userns"`` or ``"none"``."""
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return "none"
    modes = ["namespace", "userns"] if os.geteuid() == 0 else ["userns"]
    for mode in modes:
        if _mode_works(mode):
            return mode
    return "none"


def run(
    argv: list[str],
    limits: Limits = Limits(),
    job_dir: str | os.PathLike | None = None,
    *,
    readonly: list[str] | tuple[str, ...] = (),
    hide: list[str] | tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    isolation: str = "auto",
    require: str | None = None,
    watch: Callable[[bytes], float | None] | None = None,
    loopback: bool = False,
    outbox: bytearray | None = None,
) -> SandboxResult:
    """Run ``argv`` in the sandbox and return its exit status and capped output.

    ``job_dir``: a host folder the worker may read (mounted read-only at :data:`JOB_DIR`; in the
    fallback mode it stays where it is). ``"{job}"`` in ``argv`` and ``env`` values is replaced by
    the folder's path as the worker sees it. ``readonly``: extra host paths to expose read-only at
    the same path (the system and Python directories are always exposed). ``hide``: host paths to
    cover with an empty folder. ``isolation``: ``"auto"`` (strongest available), ``"namespace"``,
    ``"userns"`` or ``"none"``. ``require``: raise :class:`SandboxError` instead of falling back
    below this level (``"userns"`` accepts ``"namespace"`` too). ``watch``: called with every
    chunk read from stdout; a number it returns starts a new per-step deadline that many seconds
    from now (kill when it passes), so a long run can bound each of its steps, not only the total.
    ``loopback``: bring up the loopback interface of the run's own network namespace, for
    processes of the run that talk over 127.0.0.1 (a Jupyter kernel and its client); the network
    namespace has no other interface, so nothing outside the run is reachable either way.
    ``outbox``: the run's stdin becomes a pipe, and whatever ``watch`` appends to this buffer is
    written to it as the worker reads (never blocking the parent, so the clocks keep running):
    a channel on which the parent answers the worker only when the worker asks, so data the
    worker must not see before a step (the verifier's inputs) never sits in a file or the
    environment. Without it, stdin is ``/dev/null``.
    """
    mode = available_isolation() if isolation == "auto" else isolation
    if require is not None and ISOLATION_ORDER.index(mode) < ISOLATION_ORDER.index(require):
        raise SandboxError(f"isolation {require!r} required, but only {mode!r} is available here")
    job = None if job_dir is None else str(Path(job_dir).resolve())
    return _run(mode, argv, limits, job, list(readonly), list(hide), env or {}, watch, loopback, outbox)


def _run(mode, argv, limits, job, readonly, hide, env, watch=None, loopback=False, outbox=None) -> SandboxResult:
    """One run; a set-up that failed is tried again (it ran nothing of the run, read no stdout and
    sent nothing from ``outbox``), up to ``len(_SETUP_TRIES)`` times."""
    for wait in _SETUP_TRIES:
        _wait_before_try(wait)
        host_scratch = tempfile.mkdtemp(prefix="dgm-sandbox-")
        try:
            if mode == "none":
                return _run_plain(argv, limits, job, env, host_scratch, watch, outbox)
            return _run_namespaced(mode, argv, limits, job, readonly, hide, env, host_scratch, watch, loopback,
                                   outbox)
        except _SetupFailed as exc:
            failed = exc
        finally:
            shutil.rmtree(host_scratch, ignore_errors=True)  # rmtree never follows symlinks
    raise SandboxError(f"{failed} (tried {len(_SETUP_TRIES)} times)")


def _subst(items, job):
    return [s.replace("{job}", job or "") for s in items]


def _run_plain(argv, limits, job, env, scratch, watch, outbox) -> SandboxResult:
    os.makedirs(os.path.join(scratch, "tmp"))
    full_env = _worker_env({k: v.replace("{job}", job or "") for k, v in env.items()}, scratch)
    rl = _rlimits(limits)
    _, libc = _libc()
    import resource

    def preexec():  # runs in the child between fork and exec: no imports, no allocations to speak of
        _die_with_parent(libc)
        for name, value in rl:
            resource.setrlimit(getattr(resource, name), (value, value))
        if not limits.fork:
            _check(libc.prctl(38, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
            seccomp.forbid_new_processes(libc)

    proc = subprocess.Popen(_subst(argv, job), cwd=scratch, env=full_env, stdin=_stdin(outbox),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=preexec)
    return _supervise(proc, limits, "none", None, watch, outbox)


def _stdin(outbox: bytearray | None) -> int:
    return subprocess.DEVNULL if outbox is None else subprocess.PIPE


def _run_namespaced(mode, argv, limits, job, readonly, hide, env, host_scratch, watch, loopback,
                    outbox) -> SandboxResult:
    newroot = os.path.join(host_scratch, "root")
    os.mkdir(newroot)
    binds = [p for p in _SYSTEM_DIRS if os.path.lexists(p)]
    binds += [os.path.join("/etc", f) for f in _ETC_FILES if os.path.exists(os.path.join("/etc", f))]
    binds += _python_roots() + [str(Path(p).resolve()) for p in readonly]
    config = {
        "newroot": newroot,
        "binds": binds,
        "hide": [str(Path(p).resolve()) for p in hide],
        "job": job,
        "scratch_mb": limits.scratch_mb,
        "uid": _run_uid() if mode == "namespace" else 0,
        "fork": limits.fork,
        "loopback": loopback,
        "rlimits": _rlimits(limits),
        "argv": _subst(argv, JOB_DIR),
        "env": _worker_env({k: v.replace("{job}", JOB_DIR) for k, v in env.items()}, SCRATCH_DIR),
    }
    status_r, status_w = os.pipe()
    cmd = _unshare_argv(mode == "userns") + [sys.executable, "-I", "-S", os.path.abspath(__file__),
                                             "--launch", json.dumps(config), str(status_w)]
    try:
        proc = subprocess.Popen(cmd, cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                                stdin=_stdin(outbox), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, pass_fds=(status_w,),
                                preexec_fn=functools.partial(_die_with_parent, _libc()[1]))
    finally:
        os.close(status_w)
    return _supervise(proc, limits, mode, status_r, watch, outbox)


def _rlimits(limits: Limits) -> list[tuple[str, int]]:
    cpu = limits.cpu_s if limits.cpu_s is not None else 2 * int(limits.wall_s) + 1  # a backstop: wall_s rules
    return [
        ("RLIMIT_AS", limits.memory_mb << 20),
        ("RLIMIT_CPU", cpu),
        ("RLIMIT_FSIZE", limits.file_mb << 20),
        ("RLIMIT_NOFILE", limits.nofile),
        ("RLIMIT_CORE", 0),
        ("RLIMIT_NPROC", limits.nproc),
    ]


def _die_with_parent(libc) -> None:
    """In the child before exec: SIGKILL when the thread that started it dies. The wall clock and
    the output caps are enforced by that thread (:func:`_supervise`); should the grading process die
    (a Dask worker killed mid-batch), the run dies with it instead of outliving its limits (``unshare
    --kill-child`` then kills the namespace's first process, and with it everything inside)."""
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the process we started and its process group (not yet reaped: its pid is ours)."""
    for kill, pid in ((os.killpg, proc.pid), (os.kill, proc.pid)):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _namespace_init(pid: int, parent: int) -> int | None:
    """A pidfd of the run's first process (pid 1 of its pid namespace), ``pid`` as the host sees it,
    or None. It is believed only while it is still the child of ``parent`` (``unshare``, our own
    unreaped child, whose one child it is), so no other process of the host is ever signalled."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # an older kernel or Python: the process group kill remains
        return None
    try:
        with open(f"/proc/{pid}/status") as fh:
            ppid = next((int(line.split()[1]) for line in fh if line.startswith("PPid:")), None)
    except (OSError, ValueError, IndexError):
        ppid = None
    if ppid != parent:
        os.close(fd)
        return None
    return fd


def _kill_run(proc: subprocess.Popen, init: int | None) -> None:
    """Kill everything of the run: the first process of its pid namespace (the kernel then kills
    every process in it: a new session, a new process group or a cleared parent-death signal do
    not leave it), then the process group we started (``unshare``; the fallback mode's worker)."""
    if init is not None:
        try:
            signal.pidfd_send_signal(init, signal.SIGKILL)
        except OSError:  # gone already
            pass
    _kill_group(proc)


def _wait_gone(init: int | None, seconds: float) -> None:
    """Wait until the namespace's first process has exited: only once every other process of its
    pid namespace is gone (the kernel reaps them first), so nothing of the run is left."""
    if init is None:
        return
    poller = select.poll()
    poller.register(init, select.POLLIN)
    poller.poll(int(seconds * 1000))


def _status_lines(status: bytes) -> tuple[int | None, bytes]:
    """The launcher's report: the host pid of the namespace's first process (its ``pid N`` line),
    and the rest (``ready`` once the sandbox is set up, or why it failed)."""
    head, sep, rest = bytes(status).partition(b"\n")
    if sep and head.startswith(b"pid ") and head[4:].isdigit():
        return int(head[4:]), rest
    return None, bytes(status)


def _supervise(proc: subprocess.Popen, limits: Limits, mode: str, status_fd: int | None, watch,
               outbox: bytearray | None = None) -> SandboxResult:
    """Read both pipes until EOF or a limit, writing ``outbox`` to stdin as the worker takes it;
    the wall clock starts before the namespace setup."""
    start = time.monotonic()
    deadline = start + limits.wall_s
    step_deadline = deadline
    caps = {proc.stdout: limits.stdout_bytes, proc.stderr: limits.stderr_bytes}
    bufs: dict = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    status = bytearray()
    sel = selectors.DefaultSelector()
    for f in caps:
        os.set_blocking(f.fileno(), False)
        sel.register(f, selectors.EVENT_READ)
    if status_fd is not None:
        sel.register(status_fd, selectors.EVENT_READ)
    if proc.stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
    readers = [*caps, *([status_fd] if status_fd is not None else [])]
    timed_out = limited = False
    init: int | None = None  # a pidfd of the pid namespace's first process, once the launcher said it
    try:
        while any(_registered(sel, f) for f in readers):  # stdin alone does not keep the run going
            _pump(sel, proc, outbox)
            left = min(deadline, step_deadline) - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(timeout=min(left, 1.0)):
                if key.fileobj is proc.stdin:
                    continue  # written by _pump, at the top of the loop
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                if key.fileobj == status_fd:
                    status += chunk[:4096]
                    pid, _ = _status_lines(status)
                    if init is None and pid is not None:
                        init = _namespace_init(pid, proc.pid)
                    continue
                buf = bufs[key.fileobj]
                room = caps[key.fileobj] - len(buf)
                buf += chunk[: max(room, 0)]
                if len(chunk) > room:
                    limited = True
                elif watch is not None and key.fileobj is proc.stdout:
                    step = watch(chunk)
                    if step is not None:
                        step_deadline = time.monotonic() + step
            if limited:
                break
    except BaseException:
        _kill_run(proc, init)  # e.g. an exception from watch: never leave the worker running
        raise
    finally:
        sel.close()
        if timed_out or limited:
            _kill_run(proc, init)
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_run(proc, init)  # whatever of the run is left: nothing outlives it
        proc.wait()
        _wait_gone(init, 10.0)
        if init is not None:
            os.close(init)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()
        if status_fd is not None:
            os.close(status_fd)
    if status_fd is not None and not _status_lines(status)[1].startswith(_SETUP_OK):
        if timed_out and not status:
            raise SandboxError("the sandbox did not start within the wall-clock limit")
        detail = _status_lines(status)[1].decode(errors="replace").strip() or bytes(bufs[proc.stderr][-2000:]).decode(
            errors="replace")
        raise _SetupFailed(f"sandbox setup failed ({mode}, exit status {proc.returncode}): {detail}")
    return SandboxResult(proc.returncode, bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), timed_out, limited,
                         mode, time.monotonic() - start)


def _pump(sel: selectors.BaseSelector, proc: subprocess.Popen, outbox: bytearray | None) -> None:
    """Write what the pipe takes of ``outbox`` to the worker's stdin, without blocking; watch the
    pipe for room only while something waits (a worker that never reads costs nothing)."""
    if proc.stdin is None or proc.stdin.closed or outbox is None:
        return
    if outbox:
        try:
            del outbox[: os.write(proc.stdin.fileno(), outbox)]
        except BlockingIOError:
            pass
        except (BrokenPipeError, OSError):  # the worker is gone or closed its stdin
            outbox.clear()
            if _registered(sel, proc.stdin):
                sel.unregister(proc.stdin)
            proc.stdin.close()
            return
    waiting = bool(outbox)
    if waiting and not _registered(sel, proc.stdin):
        sel.register(proc.stdin, selectors.EVENT_WRITE)
    elif not waiting and _registered(sel, proc.stdin):
        sel.unregister(proc.stdin)


def _registered(sel: selectors.BaseSelector, fileobj) -> bool:
    try:
        sel.get_key(fileobj)
    except KeyError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# The launcher: runs inside the new namespaces as (namespace-)root, builds the root, drops
# privileges, applies the limits and execs the worker. Standard library only.

def _run_uid() -> int:
    """An unused uid for one run, so that concurrent runs share neither RLIMIT_NPROC nor signals."""
    import secrets

    return 0x30000 + secrets.randbelow(0x10000)


_MS = {"RDONLY": 1, "NOSUID": 2, "NODEV": 4, "NOEXEC": 8, "REMOUNT": 32, "NOATIME": 1024, "NODIRATIME": 2048,
       "BIND": 4096, "REC": 16384, "PRIVATE": 1 << 18, "RELATIME": 1 << 21}
_PIVOT_ROOT_NR = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217, "i686": 217}


def _libc():
    """ctypes and the C library (:func:`seccomp.libc`)."""
    import ctypes

    return ctypes, seccomp.libc()


_check = seccomp.check


def _mount(src, target, fstype, flags, data=None) -> None:
    ctypes, libc = _libc()
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _kept_flags(path: str) -> int:
    """Flags a remount must keep: a user namespace may not clear a locked atime/nosuid/... flag."""
    f = os.statvfs(path).f_flag
    out = 0
    for st, ms in [(1, "RDONLY"), (2, "NOSUID"), (4, "NODEV"), (8, "NOEXEC"), (1024, "NOATIME"),
                   (2048, "NODIRATIME"), (4096, "RELATIME")]:
        if f & st:
            out |= _MS[ms]
    return out


def _bind_ro(src: str, target: str, extra: int = 0) -> None:
    _mount(src, target, None, _MS["BIND"])
    flags = _MS["BIND"] | _MS["REMOUNT"] | _MS["RDONLY"] | _MS["NOSUID"] | extra
    _mount(None, target, None, flags | _kept_flags(target))


def _make_target(root: str, path: str) -> str | None:
    """Mirror ``path`` under ``root`` (symlinks as symlinks); return the mount point or None."""
    target = root + path
    if os.path.islink(path):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(os.readlink(path), target)
        return None
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    return target


def _loopback_up() -> None:
    """``ip link set lo up`` in the run's new network namespace (SIOCSIFFLAGS on ``lo``)."""
    import fcntl
    import socket
    import struct

    iff_up, iff_loopback, iff_running, siocsifflags = 0x1, 0x8, 0x40, 0x8914
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", iff_up | iff_loopback | iff_running))


def _host_pid() -> int | None:
    """This process's pid as the grader sees it (the first of ``NSpid``), read from the grader's
    ``/proc`` before the run's own is mounted; inside its pid namespace it is 1."""
    try:
        with open("/proc/self/status") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("NSpid:")), None)
    except (OSError, ValueError, IndexError):
        return None


def _launch(config: dict, status_fd: int) -> None:
    os.set_inheritable(status_fd, False)  # closed at exec: the worker can never write "ready"
    import resource

    pid = _host_pid()
    if pid is not None:  # the parent kills the run by this process: the pid namespace dies with it
        os.write(status_fd, f"pid {pid}\n".encode())

    root = config["newroot"]
    user = config["uid"]
    _mount(None, "/", None, _MS["REC"] | _MS["PRIVATE"])
    _mount("tmpfs", root, "tmpfs", _MS["NOSUID"] | _MS["NODEV"], "size=4m,mode=755")
    for path in config["binds"]:
        target = _make_target(root, path)
        if target is not None:
            _bind_ro(path, target, 0 if os.path.isdir(path) else _MS["NODEV"])
    for path in config["hide"]:
        target = root + path
        if os.path.isdir(target):
            _mount("tmpfs", target, "tmpfs", _MS["RDONLY"] | _MS["NOSUID"] | _MS["NODEV"], "size=4k,mode=555")
    if config["job"]:
        os.makedirs(root + JOB_DIR)
        _bind_ro(config["job"], root + JOB_DIR, _MS["NODEV"])
    scratch = root + SCRATCH_DIR
    os.makedirs(scratch)
    _mount("tmpfs", scratch, "tmpfs", _MS["NOSUID"] | _MS["NODEV"] | _MS["NOEXEC"],
           f"size={config['scratch_mb']}m,mode=700,uid={user},gid={user}")
    for sub in ("tmp", ".mpl"):
        os.mkdir(os.path.join(scratch, sub))
        os.chown(os.path.join(scratch, sub), user, user)
    if not os.path.lexists(root + "/tmp"):
        os.symlink(SCRATCH_DIR + "/tmp", root + "/tmp")
    # else a bound path lives under /tmp (a checkout or virtual environment there): /tmp stays the
    # read-only mirror of those paths, and TMPDIR still points into the scratch folder.
    dev = root + "/dev"
    os.makedirs(dev, exist_ok=True)
    _mount("tmpfs", dev, "tmpfs", _MS["NOSUID"], "size=64k,mode=755")
    for name in ("null", "zero", "full", "random", "urandom"):
        open(os.path.join(dev, name), "a").close()
        _mount("/dev/" + name, os.path.join(dev, name), None, _MS["BIND"])
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", os.path.join(dev, name))
    os.symlink("/proc/self/fd", os.path.join(dev, "fd"))
    if config["loopback"]:
        _loopback_up()
    os.makedirs(root + "/proc", exist_ok=True)
    try:
        _mount("proc", root + "/proc", "proc", _MS["NOSUID"] | _MS["NODEV"] | _MS["NOEXEC"])
    except OSError:
        pass  # Python runs without /proc; some hosts forbid a fresh proc mount
    # Enter the new root and detach the old one, so no path leads back to the host's tree.
    os.chdir(root)
    os.mkdir(".old")
    nr = _PIVOT_ROOT_NR.get(platform.machine())
    _, libc = _libc()
    if nr is None:
        raise OSError(f"pivot_root: unknown syscall number on {platform.machine()}")
    _check(libc.syscall(nr, b".", b".old"), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(b"/.old", 2), "umount old root")  # MNT_DETACH
    os.rmdir("/.old")
    _mount(None, "/", None, _MS["REMOUNT"] | _MS["RDONLY"] | _MS["NOSUID"] | _MS["NODEV"])
    os.chdir(SCRATCH_DIR)
    # Privileges: no setuid gains, no capabilities after exec, and (as real root) user nobody.
    _check(libc.prctl(38, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    last_cap = int(open("/proc/sys/kernel/cap_last_cap").read()) if os.path.exists("/proc/sys/kernel/cap_last_cap") \
        else 40
    for cap in range(last_cap + 1):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    if user:  # a user of its own: no other process shares its limits or can signal it
        os.setgroups([])
        os.setgid(user)
        os.setuid(user)
    # A change of uid clears the death signal unshare's --kill-child gave: set it again, so that the
    # run dies with unshare, which dies with the grading thread (a dead grader fails the write below).
    _die_with_parent(libc)
    for name, value in config["rlimits"]:
        resource.setrlimit(getattr(resource, name), (value, value))
    if not config["fork"]:
        seccomp.forbid_new_processes(libc)
    os.write(status_fd, _SETUP_OK)
    os.execve(config["argv"][0], config["argv"], config["env"])


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--launch":
    _fd = int(sys.argv[3])
    try:
        _launch(json.loads(sys.argv[2]), _fd)
    except BaseException as exc:  # noqa: BLE001 - report any setup failure to the parent, then die
        os.write(_fd, f"{type(exc).__name__}: {exc}\n".encode())
        os._exit(125)
