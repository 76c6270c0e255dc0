"""A real, throw-away PostgreSQL server for the tests: initdb into a temporary folder, started on a
free loopback port with its socket in that folder, one database, stopped and removed at the end.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (runuser) in
a folder it owns. The Makefile installs Debian's `postgresql` in CI when the binaries are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DATABASE = "fmnist_tests"
USER = "fmnist"


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin (Debian), else the folder of initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: int(path.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def missing_reason() -> str | None:
    """Why no server can be started here, or None."""
    if find_bindir() is None:
        return "PostgreSQL is not installed (no initdb/pg_ctl; `apt-get install postgresql`)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no `postgres` user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root, and there is no runuser to start the server as `postgres`"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    root: Path
    port: int
    bindir: Path

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        # cwd: the postgres user may not enter the caller's directory (a repository under /root)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}")
        return result

    def start(self) -> PostgresServer:
        data, sockets = self.root / "data", self.root / "sockets"
        sockets.mkdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(sockets, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(data), "-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8")
        self._run("pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                  "-o", f"-k {sockets} -h 127.0.0.1 -p {self.port} -F", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)
        return self

    def create_database(self, name: str) -> str:
        """A fresh database on the server; its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer:
    """Start a server in a new temporary folder (outside pytest's, which only root may enter)."""
    root = Path(tempfile.mkdtemp(prefix="fmnist-postgres-"))
    if os.geteuid() == 0:
        os.chown(root, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
    server = PostgresServer(root, _free_port(), find_bindir())
    try:
        return server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
