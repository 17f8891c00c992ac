"""A real PostgreSQL in a temporary folder, for the store's tests and benchmarks.

Debian's `postgresql` package provides the programs (`initdb`, `postgres`); nothing is
installed as a service. The server runs as an unprivileged user when this process is
root (PostgreSQL refuses to run as root), listens only on a unix socket in its folder (no
port to collide with), and is stopped by its PID. Databases are cheap: `new_database`
copies a template, so each test gets its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

READY_SECONDS = 30.0  # only bounds a broken server; it starts in under a second
STOP_SECONDS = 10.0
SUPERUSER = "postgres"
# Test settings: no fsync (a test database never outlives a crash), as for SQLite's
# synchronous=NORMAL no wait for the WAL flush at commit.
FAST = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")
# The benchmark's: durable as SQLite in WAL mode with synchronous=NORMAL (a commit may be
# lost on power loss, the database never corrupted).
DURABLE = ("synchronous_commit=off",)


class PostgresMissing(Exception):
    """PostgreSQL's programs are not installed here."""


def server_programs() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresMissing(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): "
            "run scripts/system-packages, or apt-get install postgresql"
        )
    return found[-1].parent


def _server_user() -> str | None:
    """Who runs the server: None (this user) unless this is root, which PostgreSQL refuses;
    then Debian's `postgres` account, else `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresMissing("running as root, and neither a postgres nor a nobody user exists")


@dataclass
class PostgresServer:
    folder: Path  # holds data/, the socket and the log
    process: subprocess.Popen[bytes]
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def socket_dir(self) -> str:
        return str(self.folder)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL Conveyor takes (CONVEYOR_DATABASE_URL) for `database`."""
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.socket_dir, user=SUPERUSER, dbname=database, autocommit=True
        )

    def new_database(self, template: str = "template0") -> str:
        """A new, empty (or `template`'s copy) database's name."""
        name = f"db_{os.getpid()}_{next(self._names)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return name

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_SECONDS)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_server(settings: Sequence[str] = FAST) -> PostgresServer:
    """initdb a new cluster in a temporary folder and start it; raises PostgresMissing."""
    programs = server_programs()
    user = _server_user()
    # Under /tmp, not pytest's tmp_path: the socket's path must stay under 108 bytes, and
    # the server's user must be able to enter the folder.
    folder = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
    if user is not None:
        os.chown(folder, pwd.getpwnam(user).pw_uid, -1)
    log = folder / "server.log"
    subprocess.run(
        [
            str(programs / "initdb"),
            f"--pgdata={folder / 'data'}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        user=user,
        cwd=folder,
        check=True,
        capture_output=True,
    )
    options = ["listen_addresses=", f"unix_socket_directories={folder}", *settings]
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(programs / "postgres"), "-D", str(folder / "data")]
            + [word for option in options for word in ("-c", option)],
            user=user,
            cwd=folder,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = PostgresServer(folder, process)
    _wait_until_ready(server)
    return server


def _wait_until_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"postgres exited {server.process.returncode}: {server.log()}")
        with contextlib.suppress(psycopg.OperationalError):
            server.connect().close()
            return
        time.sleep(0.02)
    server.stop()
    raise RuntimeError(f"postgres did not accept connections in time: {server.log()}")


@contextlib.contextmanager
def running_server(settings: Sequence[str] = FAST) -> Iterator[PostgresServer]:
    server = start_server(settings)
    try:
        yield server
    finally:
        server.stop()
