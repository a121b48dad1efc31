"""The seccomp filter of a sandboxed run: no new processes, no way out of the run.

It refuses ``fork``, ``vfork`` and ``clone`` without ``CLONE_THREAD`` (threads stay allowed);
``clone3`` says ``ENOSYS`` so that libc falls back to ``clone``. It refuses too what would let a
process leave the run or reach another one: a session or process group of its own (``setsid``,
``setpgid``), new or other namespaces (``unshare``, ``setns``), tracing and reading other
processes (``ptrace``, ``process_vm_readv``, ``process_vm_writev``), and clearing its
parent-death signal (``prctl(PR_SET_PDEATHSIG, ...)``; every other ``prctl`` stays allowed). A
32-bit or x32 system call is refused too. Installing it needs ``no_new_privs`` or
``CAP_SYS_ADMIN``; it holds for the process and everything it execs, for good.

Used by the sandbox's launcher before it execs a run (:mod:`dgm_course.course.sandbox`) and by
the in-kernel run's kernel (``nofork_kernel.py``), which nbgrader starts as a process of its own.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

__all__ = ["ARCHITECTURES", "check", "forbid_new_processes", "libc", "program"]

# machine -> (audit arch, the calls the filter inspects, the calls it refuses outright)
ARCHITECTURES = {"x86_64": (0xC000003E, {"clone": 56, "fork": 57, "vfork": 58, "prctl": 157},
                            {"setsid": 112, "setpgid": 109, "unshare": 272, "setns": 308, "ptrace": 101,
                             "process_vm_readv": 310, "process_vm_writev": 311}),
                 "aarch64": (0xC00000B7, {"clone": 220, "prctl": 167},
                             {"setsid": 157, "setpgid": 154, "unshare": 97, "setns": 268, "ptrace": 117,
                              "process_vm_readv": 270, "process_vm_writev": 271})}
_PR_SET_PDEATHSIG = 1


def libc() -> ctypes.CDLL:
    """The C library through the interpreter's own symbols (no ``ldconfig`` lookup)."""
    return ctypes.CDLL(None, use_errno=True)


def check(ret: int, what: str) -> None:
    """Raise ``OSError`` with errno's message where a C call returned non-zero."""
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def program(arch: tuple[int, dict[str, int], dict[str, int]]) -> list[tuple[int, int, int, int]]:
    """The classic-BPF filter for one of :data:`ARCHITECTURES`: ``(code, jt, jf, k)`` instructions."""
    audit, nrs, refused = arch
    allow, kill = 0x7FFF0000, 0x80000000
    eperm, enosys = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    ld, jeq, jset, jge, ret = 0x20, 0x15, 0x45, 0x35, 0x06
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, audit), (ret, 0, 0, kill), (ld, 0, 0, 0),
            (jge, 0, 1, 0x40000000), (ret, 0, 0, eperm),  # x32 system calls
            (jeq, 0, 1, 435), (ret, 0, 0, enosys)]  # clone3
    for name in ("fork", "vfork"):
        if name in nrs:
            prog += [(jeq, 0, 1, nrs[name]), (ret, 0, 0, eperm)]
    for nr in refused.values():
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, eperm)]
    # prctl: the option is an int, the low half of the first argument (offset 16, little-endian)
    prog += [(jeq, 0, 4, nrs["prctl"]), (ld, 0, 0, 16), (jeq, 0, 1, _PR_SET_PDEATHSIG), (ret, 0, 0, eperm),
             (ret, 0, 0, allow)]
    prog += [(jeq, 0, 3, nrs["clone"]), (ld, 0, 0, 16), (jset, 1, 0, 0x00010000),  # CLONE_THREAD
             (ret, 0, 0, eperm), (ret, 0, 0, allow)]
    return prog


def forbid_new_processes(lib: ctypes.CDLL | None = None) -> bool:
    """Install the filter in this process (``lib``: the C library, :func:`libc` by default; the
    launcher passes the one it holds, as this may run between fork and exec). ``False`` where
    this machine has no filter (then ``RLIMIT_NPROC`` alone bounds forks)."""
    arch = ARCHITECTURES.get(platform.machine())
    if arch is None:
        return False
    prog = program(arch)
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Prog(len(prog), ctypes.addressof(buf))
    check((lib or libc()).prctl(22, 2, ctypes.byref(fprog), 0, 0), "prctl(SECCOMP)")  # SECCOMP_MODE_FILTER
    return True
