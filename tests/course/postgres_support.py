"""A real PostgreSQL server for the gradebook tests, started and stopped by the test session.

Debian's ``postgresql`` package (``.ci/run`` installs it; without it the tests that need a server
skip with the reason). The server refuses to run as root, so as root it runs as the package's
``postgres`` user, with its data folder and its unix socket in a temp folder of that user; it
listens on no TCP port at all. Each test gets a database of its own, whose URL is
``postgresql://postgres@/NAME?host=SOCKET_FOLDER``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["server_problem", "postgres_server", "Server"]

BIN_ROOT = Path("/usr/lib/postgresql")
PORT = 5432  # names the socket file only: the server has no TCP listener
SERVER_USER = "postgres"


def _bin() -> Path | None:
    """The newest installed server's ``bin`` folder."""
    found = sorted(BIN_ROOT.glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name) if
                   p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def server_problem() -> str:
    """Why no server can be started here ('' when one can)."""
    if _bin() is None:
        return f"no PostgreSQL server installed (no {BIN_ROOT}/*/bin/pg_ctl: apt-get install postgresql)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without runuser: the server refuses to run as root"
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} user to run the server as"
    return ""


class Server:
    """A running server: :meth:`create_database` gives a fresh database's URL."""

    def __init__(self, folder: Path, bin_dir: Path) -> None:
        self.folder, self.bin_dir, self._count = folder, bin_dir, 0

    def run(self, tool: str, *args: str) -> str:
        """One of the server's programs, as the server's user; fails with its output."""
        argv = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.folder)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def url(self, database: str) -> str:
        return f"postgresql://{SERVER_USER}@/{database}?host={self.folder}&port={PORT}"

    def create_database(self) -> str:
        self._count += 1
        name = f"gradebook{self._count}"
        self.run("createdb", "-h", str(self.folder), "-p", str(PORT), "-U", SERVER_USER, name)
        return self.url(name)


@contextmanager
def postgres_server() -> Iterator[Server]:
    """A server in a temp folder (data and socket), stopped and removed afterwards."""
    bin_dir = _bin()
    folder = Path(tempfile.mkdtemp(prefix="dgm-course-postgres-"))  # not under pytest's root-only tmp
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)
    server = Server(folder, bin_dir)
    try:
        server.run("initdb", "-D", str(folder / "data"), "-U", SERVER_USER, "--auth=trust", "--no-sync",
                   "-E", "UTF8", "--locale=C")
        options = f"-k {folder} -p {PORT} -c listen_addresses='' -c fsync=off -c max_connections=60"
        server.run("pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-o", options,
                   "-w", "-t", "60", "start")
        try:
            yield server
        finally:
            server.run("pg_ctl", "-D", str(folder / "data"), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
