"""The programs that run inside the sandbox (dgm_course/course/sandboxed): the rule their files
keep, the one framing of every result channel, and the seccomp helper used on its own."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import textwrap

import pytest

from dgm_course.course import sandboxed
from dgm_course.course.sandboxed import protocol

from ..imports_support import import_time_imports

FILES = sorted(p for p in sandboxed.HERE.glob("*.py") if p.name != "__init__.py")


def test_every_program_of_the_folder_is_an_entry_point_or_a_module_they_share():
    assert {p.stem for p in FILES} == set(sandboxed.ENTRY_POINTS + sandboxed.MODULES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_a_program_imports_only_the_standard_library_and_its_folder_at_its_top(path):
    # A run sets its process up before anything else is imported (the worker its sys.path, the
    # kernel its filter): third-party imports belong inside main().
    siblings = set(sandboxed.MODULES)
    for module, names in import_time_imports(path, sandboxed.__name__):
        if module == sandboxed.__name__:  # from . import protocol
            assert set(names) <= siblings, (path.name, names)
            continue
        top = module.split(".")[0]
        assert top in sys.stdlib_module_names or top == "__future__" or top in siblings, (path.name, module)


@pytest.mark.parametrize("name", sandboxed.ENTRY_POINTS)
def test_an_entry_point_does_its_work_in_main_only_when_run_as_a_script(name):
    tree = ast.parse((sandboxed.HERE / f"{name}.py").read_text())
    last = tree.body[-1]
    assert isinstance(last, ast.If) and ast.unparse(last.test) == "__name__ == '__main__'"
    assert ast.unparse(last.body[0]) == "main()"


def test_install_copies_the_entry_points_asked_for_and_the_shared_modules(tmp_path):
    sandboxed.install(tmp_path, "worker")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["protocol.py", "seccomp.py", "worker.py"]
    assert (tmp_path / "worker.py").read_bytes() == (sandboxed.HERE / "worker.py").read_bytes()
    with pytest.raises(ValueError, match="not a program of the sandbox"):
        sandboxed.install(tmp_path, "../grade")


def test_a_frame_reads_back_whole_and_from_a_stream():
    data = protocol.frame({"event": "end", "error": None}, b"\x00payload\n") + protocol.frame({"n": 2})
    head, payload = protocol.read_frame(data)
    assert (head, payload) == ({"event": "end", "error": None, "nbytes": 9}, b"\x00payload\n")
    stream = io.BytesIO(data)
    assert protocol.read_from(stream) == (head, payload)
    assert protocol.read_from(stream) == ({"n": 2, "nbytes": 0}, b"")
    with pytest.raises(ValueError, match="inside a head line"):
        protocol.read_from(stream)


def test_a_head_waits_for_its_line_and_a_frame_for_its_payload():
    data = protocol.frame({"step": "a"}, b"12345")
    assert protocol.split_head(data[:5]) is None
    head, start, size = protocol.split_head(data[:-2])  # the head is whole: the payload may follow
    assert (head["step"], data[start:], size) == ("a", b"12345", 5)
    with pytest.raises(ValueError, match="truncated"):
        protocol.read_frame(data[:-2])


@pytest.mark.parametrize("line", [b'{"nbytes": 1e400}', b'{"nbytes": NaN}', b'{"nbytes": 1.5}', b'{"nbytes": -1}',
                                  b'{"nbytes": "3"}', b'{"step": "a"}', b'[1, 2]', b'"nbytes"', b"not json"])
def test_a_head_without_a_plain_payload_size_is_not_a_frame(line):
    with pytest.raises(ValueError):
        protocol.split_head(line + b"\n")


def test_a_head_line_past_the_limit_is_not_a_frame_and_one_nested_deep_does_not_parse():
    with pytest.raises(ValueError, match="longer than the limit"):
        protocol.split_head(b" " * 100, limit=100)
    with pytest.raises(RecursionError):
        protocol.split_head(b"[" * 30_000 + b"\n")


@pytest.mark.skipif(sys.platform != "linux", reason="seccomp is Linux's")
def test_the_seccomp_helper_on_its_own_refuses_new_processes_and_keeps_threads(tmp_path):
    sandboxed.install(tmp_path, "nofork_kernel")
    script = textwrap.dedent("""
        import os, subprocess, threading
        import seccomp
        lib = seccomp.libc()
        seccomp.check(lib.prctl(38, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        if not seccomp.forbid_new_processes(lib):
            raise SystemExit("no filter for this machine")
        refused = []
        for spawn in (os.fork, lambda: subprocess.run(["/bin/true"]), os.setsid):
            try:
                spawn()
            except PermissionError:
                refused.append(True)
        ran = []
        t = threading.Thread(target=ran.append, args=(1,))
        t.start()
        t.join()
        print(len(refused), ran)
    """)
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n{script}"],
                         capture_output=True, text=True, timeout=60)
    if "no filter for this machine" in out.stderr:
        pytest.skip("no seccomp filter is written for this machine's architecture")
    assert out.stdout.split("\n")[0] == "3 [1]", out.stderr


def test_a_run_prints_to_stderr_and_only_its_frames_reach_the_result_channel(tmp_path):
    sandboxed.install(tmp_path, "feedback")
    (tmp_path / "job.json").write_text('{"answer": 42}')
    script = textwrap.dedent("""
        import os, sys
        import protocol
        job, cfg = protocol.job_config("THE_JOB")
        results = protocol.result_channel()
        print("printed by the run", flush=True)
        os.write(1, b"written to fd 1\\n")
        protocol.finish(results, {"answer": cfg["answer"], "job": job}, b"page")
        print("never", flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n{script}"],
                         capture_output=True, timeout=60, env={"THE_JOB": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert protocol.read_frame(out.stdout) == ({"answer": 42, "job": str(tmp_path), "nbytes": 4}, b"page")
    assert out.stdout.endswith(b"page") and out.returncode == 0
    assert out.stderr.decode().split("\n")[:2] == ["printed by the run", "written to fd 1"]
    assert b"never" not in out.stdout + out.stderr
