"""Whether processes a test started (or made others start) have ended, with psutil."""

from __future__ import annotations

import time

import psutil

__all__ = ["ended", "still_running"]


def ended(proc: psutil.Process) -> bool:
    """Gone, a zombie, or exiting: its memory released already (the first process of a dying pid
    namespace shows so while the kernel tears the namespace down). The container's first process
    may reap no zombie: a zombie counts as ended."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE or not proc.cmdline()
    except psutil.NoSuchProcess:
        return True


def still_running(procs: list[psutil.Process], within_s: float) -> list[psutil.Process]:
    """Those of ``procs`` that have not ended ``within_s`` seconds from now."""
    deadline = time.monotonic() + within_s
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if not ended(p)]
    return alive
