"""The sandbox: isolation from the course tree, limits, and what comes back."""

from __future__ import annotations

import os
from pathlib import Path
import socket
import sys
import textwrap
import time

import pytest

from dgm_course.course import sandbox
from dgm_course.course.sandbox import Limits, SandboxError

LEVEL = sandbox.available_isolation()
isolated = pytest.mark.skipif(LEVEL == "none", reason="no Linux namespaces on this machine")
FAST = Limits(wall_s=20)


def py(code: str, limits: Limits = FAST, **kw) -> sandbox.SandboxResult:
    return sandbox.run([sys.executable, "-S", "-c", textwrap.dedent(code)], limits, **kw)


def test_runs_in_a_fresh_scratch_with_a_scrubbed_environment(monkeypatch):
    monkeypatch.setenv("GRADER_SECRET", "s3cret")
    r = py("""
        import os
        open("note.txt", "w").write("kept in scratch")
        print(os.getcwd() == os.environ["HOME"], "GRADER_SECRET" in os.environ, open("note.txt").read())
    """)
    assert (r.returncode, r.stdout, r.timed_out, r.output_limited) == (0, b"True False kept in scratch\n", False, False)
    assert r.isolation == LEVEL


@pytest.fixture
def course(tmp_path):
    """A course tree with everything a submission must not see or touch."""
    files = {
        "source_notebooks/01/01.ipynb": '{"solution": "secret"}',
        "solutions/01.ipynb": "solution",
        "gradebook.db": "grades",
        "submitted/alice/01/01.ipynb": "alice's work",
        "submitted/bob/01/01.ipynb": "bob's work",
    }
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path, files


@isolated
def test_course_files_are_neither_readable_nor_writable(course):
    root, files = course
    targets = [str(root / rel) for rel in files] + [str(root / "source_notebooks"), str(root)]
    r = py(f"""
        import os
        seen, wrote = [], []
        for p in {targets!r}:
            try:
                seen.append(open(p).read() if os.path.isfile(p) else os.listdir(p))
            except OSError:
                pass
            try:
                with open(p if os.path.isfile(p) else os.path.join(p, "new.txt"), "a") as f:
                    f.write("tampered")
                wrote.append(p)
            except OSError:
                pass
        for p in ["/", "/usr/lib", os.path.dirname(os.__file__), "/etc/passwd"]:
            try:
                open(os.path.join(p, "x") if os.path.isdir(p) else p, "a").write("x")
                wrote.append(p)
            except OSError:
                pass
        print(seen, wrote)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"[] []\n"
    for rel, text in files.items():
        assert (root / rel).read_text() == text
    assert sorted(p.name for p in root.rglob("new.txt")) == []


@isolated
def test_job_folder_is_read_only_and_the_host_tmp_is_private(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (job / "input.txt").write_text("inputs")
    os.chmod(job, 0o755)
    os.chmod(job / "input.txt", 0o644)
    code = textwrap.dedent("""
        import os, sys
        print(open(sys.argv[1] + "/input.txt").read(), os.listdir("/tmp"))
        try:
            open(sys.argv[1] + "/input.txt", "w")
        except OSError:
            print("read-only")
    """)
    r = sandbox.run([sys.executable, "-S", "-c", code, "{job}"], FAST, job)
    # /tmp shows nothing of the host's, except the read-only mirror of a checkout or virtual
    # environment that itself lives under /tmp (as a CI clone may)
    mirrored = sorted({Path(p).parts[2] for p in {sys.prefix, sys.base_prefix, str(Path(sandbox.__file__).parents[2])}
                       if Path(p).parts[1:2] == ("tmp",) and len(Path(p).parts) > 2})
    assert r.stdout == f"inputs {mirrored}\nread-only\n".encode(), r.stdout
    assert (job / "input.txt").read_text() == "inputs"


@isolated
def test_no_network():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        r = py(f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2)
                print("connected")
            except OSError:
                print("no network")
        """)
    assert r.stdout == b"no network\n"


@isolated
def test_a_loopback_on_request_reaches_only_the_runs_own_processes():
    with socket.socket() as server:  # a service of the host on its 127.0.0.1
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        r = py(f"""
            import socket
            own = socket.socket()
            own.bind(("127.0.0.1", 0))
            own.listen(1)
            socket.create_connection(own.getsockname(), timeout=2)
            print("own loopback")
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2)
                print("host reached")
            except OSError:
                print("host unreachable")
        """, loopback=True)
    assert r.stdout == b"own loopback\nhost unreachable\n", r.stderr


@isolated
def test_the_worker_cannot_forge_the_setup_handshake():
    r = py("""
        import os
        ok = 0
        for fd in range(3, 64):
            try:
                os.write(fd, b"ready\\n")
                ok += 1
            except OSError:
                pass
        print(ok)
    """)
    assert r.stdout == b"0\n"


def test_a_loop_ignoring_sigint_and_sigterm_is_killed_at_the_wall_clock_limit():
    r = py("""
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("looping", flush=True)
        while True:
            pass
    """, Limits(wall_s=2))
    assert r.timed_out and not r.ok
    assert r.stdout == b"looping\n"
    assert "wall-clock" in r.describe()


def test_a_per_step_deadline_from_watch_kills_earlier_than_the_total():
    seen = []

    def watch(chunk):
        seen.append(chunk)
        return 0.5  # each step may take half a second

    r = py("""
        import time
        print("step 1", flush=True)
        while True:
            pass
    """, Limits(wall_s=60), watch=watch)
    assert r.timed_out and seen == [b"step 1\n"]


@pytest.mark.parametrize("isolation", ["none", *([LEVEL] if LEVEL != "none" else [])])
def test_the_outbox_answers_on_stdin_only_what_was_asked_for(isolation):
    outbox = bytearray()

    def watch(chunk):
        if b"ask" in chunk:
            outbox.extend(b"answer\n")
        return None

    r = py("""
        import os, sys
        os.set_blocking(0, False)
        try:
            early = os.read(0, 100)  # nothing is there before the question
        except BlockingIOError:
            early = b"nothing"
        os.set_blocking(0, True)
        print("ask", flush=True)
        print(early.decode(), sys.stdin.readline().strip(), flush=True)
    """, watch=watch, outbox=outbox, isolation=isolation)
    assert r.ok and r.stdout == b"ask\nnothing answer\n", r


def test_a_worker_that_never_reads_its_stdin_stops_nothing():
    outbox = bytearray(b"x" * (4 << 20))  # far more than a pipe holds
    r = py("""
        import time
        print("busy", flush=True)
        while True:
            time.sleep(0.1)
    """, Limits(wall_s=3), outbox=outbox)
    assert r.timed_out and r.stdout == b"busy\n" and 0 < len(outbox) < 4 << 20
    assert r.wall_s < 10  # the wall clock ran while the pipe was full


def test_memory_bomb_fails_inside_the_limit():
    r = py("""
        try:
            blob = bytearray(8 << 30)
        except MemoryError:
            print("MemoryError")
    """, Limits(wall_s=20, memory_mb=512))
    assert (r.returncode, r.stdout) == (0, b"MemoryError\n")


def test_output_bomb_is_capped_and_killed():
    r = py("""
        for i in range(300_000):
            print("spam spam spam spam", i)
    """, Limits(wall_s=20, stdout_bytes=1 << 16))
    assert r.output_limited and not r.ok
    assert len(r.stdout) == 1 << 16


def test_file_size_limit():
    r = py("""
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        try:
            with open("big", "wb") as f:
                f.write(b"0" * (4 << 20))
        except OSError as e:
            print("refused")
    """, Limits(wall_s=20, file_mb=1))
    assert r.stdout == b"refused\n"


@pytest.mark.parametrize("code, status", [("import sys; sys.exit(3)", 3), ("import os; os._exit(4)", 4),
                                          ("import os, signal; os.kill(os.getpid(), signal.SIGKILL); print(1)", None)])
def test_exit_status_comes_back(code, status):
    r = py(code)
    if status is None:  # pid 1 of a pid namespace cannot kill itself; elsewhere it dies by SIGKILL
        assert r.returncode in (0, -9) and not r.timed_out
    else:
        assert r.returncode == status and not r.ok and "status" in r.describe()


def test_new_processes_are_refused_but_threads_work():
    r = py("""
        import os, subprocess, threading
        for spawn in (os.fork, lambda: subprocess.run(["/bin/true"])):
            try:
                spawn()
                print("spawned")
            except OSError as e:
                print(type(e).__name__)
        t = threading.Thread(target=print, args=("thread",))
        t.start()
        t.join()
    """)
    assert (r.returncode, r.stdout) == (0, b"PermissionError\nPermissionError\nthread\n"), r.stderr


@isolated
def test_descendants_die_with_the_worker():
    r = py("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            while True:
                time.sleep(1)  # holds stdout open: the run must not wait for it
        print("parent done")
    """, Limits(wall_s=15, fork=True))
    assert (r.returncode, r.stdout, r.timed_out) == (0, b"parent done\n", False)


def test_a_run_dies_with_the_grading_process_that_started_it():
    """The wall clock is the grading process's: should that process die (a Dask worker killed in the
    middle of a batch), the run must not go on without a limit."""
    import subprocess
    import time

    psutil = pytest.importorskip("psutil")
    from .process_support import still_running
    loop = "import time\nwhile True: time.sleep(0.1)"
    grader = subprocess.Popen([sys.executable, "-c", "import sys\nfrom dgm_course.course import sandbox\n"
                               f"sandbox.run([sys.executable, '-S', '-c', {loop!r}], sandbox.Limits(wall_s=300))"],
                              cwd=Path(__file__).resolve().parents[2])
    def cmdline(proc) -> list[str]:  # a set-up process may exit (or be a zombie) while we look
        try:
            return proc.cmdline()
        except psutil.Error:
            return []

    deadline, running = time.monotonic() + 60, []
    while not running and time.monotonic() < deadline:
        time.sleep(0.2)
        running = [p for p in psutil.Process(grader.pid).children(recursive=True)
                   if cmdline(p)[-1:] == [loop]]  # the loop itself, past the sandbox's set-up
    descendants = psutil.Process(grader.pid).children(recursive=True)
    grader.kill()
    grader.wait()
    assert running, "the sandboxed loop never started"
    alive = still_running(descendants, within_s=5)
    for proc in alive:
        proc.kill()
    assert not alive, f"outlived the grading process: {[' '.join(p.cmdline()) for p in alive]}"


@pytest.mark.skipif(not sandbox._mode_works("userns"), reason="no unprivileged user namespaces here")
def test_the_unprivileged_level_isolates_too(tmp_path):
    secret = tmp_path / "gradebook.db"
    secret.write_text("grades")
    r = py(f"""
        import os
        for p in [{str(secret)!r}, "/usr/x"]:
            try:
                open(p, "a").write("x")
                print("wrote", p)
            except OSError:
                pass
        print(os.path.exists({str(secret)!r}), sorted(os.listdir("/")))
    """, isolation="userns")
    assert r.isolation == "userns" and r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"False [")
    assert secret.read_text() == "grades"


def test_fallback_level_is_reported_and_can_be_refused():
    r = py("print('plain')", isolation="none")
    assert (r.stdout, r.isolation) == (b"plain\n", "none")
    with pytest.raises(SandboxError, match="required"):
        py("pass", isolation="none", require="userns")


@isolated
def test_a_broken_setup_is_the_graders_error_not_the_students():
    with pytest.raises(SandboxError, match="setup failed"):
        py("pass", readonly=["/nonexistent/dgm-course-path"])


def test_a_setup_that_failed_is_tried_again_and_a_lasting_failure_is_reported(monkeypatch):
    # A start that failed on a loaded machine ran nothing of the run: it is tried again, after a wait.
    real, calls, waits = sandbox._run_plain, [], []

    def flaky(*args):
        calls.append(args)
        if len(calls) < len(sandbox._SETUP_TRIES):
            raise sandbox._SetupFailed("sandbox setup failed (none, exit status 1): unshare: test")
        return real(*args)

    monkeypatch.setattr(sandbox, "_run_plain", flaky)
    monkeypatch.setattr(sandbox, "_wait_before_try", waits.append)
    r = py("print('ran once')", isolation="none")
    assert (r.stdout, len(calls), waits) == (b"ran once\n", 3, [0.0, 1.0, 4.0])

    def broken(*args):
        calls.append(args)
        raise sandbox._SetupFailed("sandbox setup failed: always")

    calls.clear()
    monkeypatch.setattr(sandbox, "_run_plain", broken)
    with pytest.raises(SandboxError, match=r"setup failed: always \(tried 3 times\)"):
        py("pass", isolation="none")
    assert len(calls) == 3


@isolated
def test_a_readonly_path_under_tmp_works(tmp_path):
    # A checkout or virtual environment under /tmp (as a CI clone may be) is bound at its own path,
    # so /tmp exists in the new root; the scratch folder must still be the worker's TMPDIR.
    shared = tmp_path / "venv-like"
    shared.mkdir()
    (shared / "lib.txt").write_text("library")
    for p in (tmp_path, shared):
        os.chmod(p, 0o755)
    os.chmod(shared / "lib.txt", 0o644)
    r = py(f"""
        import os, tempfile
        print(open({str(shared / 'lib.txt')!r}).read(), tempfile.gettempdir().startswith(os.environ["HOME"]))
        try:
            open({str(shared / 'new.txt')!r}, "w")
        except OSError:
            print("read-only")
    """, readonly=[str(shared)])
    assert r.isolation != "none" and r.stdout == b"library True\nread-only\n", r.stderr


# What a process would call to leave its run or reach another process: each must be refused by the
# seccomp filter, while the prctl calls Python and torch make (here: reading the death signal,
# naming a thread) still work.
ESCAPES = textwrap.dedent("""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    calls = {"setsid": lambda: libc.setsid(), "setpgid": lambda: libc.setpgid(0, 0),
             "unshare": lambda: libc.unshare(0x10000000), "setns": lambda: libc.setns(0, 0x10000000),
             "ptrace": lambda: libc.ptrace(16, 1, 0, 0),
             "prctl(PR_SET_PDEATHSIG)": lambda: libc.prctl(1, 0, 0, 0, 0),
             "prctl(PR_GET_PDEATHSIG)": lambda: libc.prctl(2, ctypes.byref(ctypes.c_int()), 0, 0, 0),
             "prctl(PR_SET_NAME)": lambda: libc.prctl(15, b"worker", 0, 0, 0)}
    for name, call in calls.items():
        print(name, "refused" if call() == -1 and ctypes.get_errno() == 1 else "allowed")
""")


@pytest.mark.parametrize("isolation", ["none", *([LEVEL] if LEVEL != "none" else [])])
def test_leaving_the_run_or_reaching_another_process_is_refused(isolation):
    r = sandbox.run([sys.executable, "-S", "-c", ESCAPES], FAST, isolation=isolation)
    refused = ["setsid", "setpgid", "unshare", "setns", "ptrace", "prctl(PR_SET_PDEATHSIG)"]
    expected = [f"{name} refused" for name in refused] + ["prctl(PR_GET_PDEATHSIG) allowed", "prctl(PR_SET_NAME) allowed"]
    assert r.stdout.decode().splitlines() == expected, r.stderr


as_root = pytest.mark.skipif(LEVEL != "namespace", reason="runs get uids of their own only as root with namespaces")
# A worker that leaves the process group it was started in and clears its parent-death signal (with
# fork=True there is no seccomp filter to refuse either), then runs until it is killed.
LEAVER = textwrap.dedent("""
    import ctypes, os, time
    os.setsid()
    assert ctypes.CDLL(None).prctl(1, 0, 0, 0, 0) == 0
    print("left", flush=True)
    while True:
        time.sleep(0.1)
""")


@as_root
def test_a_run_is_killed_by_its_pid_namespace_so_a_new_session_does_not_outlive_it():
    import threading

    from ._course import processes_of_uids, recording_run_uids

    with recording_run_uids() as uids:
        done: list = []
        runner = threading.Thread(target=lambda: done.append(py(LEAVER, Limits(wall_s=8, fork=True))))
        runner.start()
        deadline, seen = time.monotonic() + 8, []
        while not seen and time.monotonic() < deadline:  # the positive control: the check sees a run
            time.sleep(0.2)
            seen = processes_of_uids(uids)
        runner.join()
    left = processes_of_uids(uids)
    for pid in left:
        os.kill(pid, 9)
    assert seen, f"the running worker was never seen (uids {uids})"
    assert done[0].timed_out and done[0].stdout == b"left\n", done[0]
    assert left == [], "a process of the run outlived it"
