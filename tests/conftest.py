"""Shared fixtures: throwaway git projects, the CLI in-process or as a subprocess.

`git_project` writes a conveyor.yml and files into a fresh repository committed on `main`;
`run_cli` calls the CLI in this process; `start_cli` starts it as a subprocess of its own
session (for signals). Git commands here never read the user's git configuration.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from conveyor.engine.report import SilentReporter
from conveyor.service.project import Project
from conveyor.service.runs import RunOptions, RunOutcome, execute_run
from conveyor.store.records import JobRecord, RunRecord
from conveyor.store.store import Store
from pg_server import PostgresMissing, PostgresServer, start_server

# pytest-xdist starts its workers with COLUMNS=80 and LINES=24: rich would fix the CLI's
# console at 80 columns when conveyor.cli is first imported (see run_cli, below), and
# wrap its output mid-word. Tests that read CLI output set COLUMNS themselves.
for _inherited in ("COLUMNS", "LINES"):
    os.environ.pop(_inherited, None)

# The `real` marker, checked, and scheduling under xdist; one cache of the Python base image.
pytest_plugins = ["real_components", "python_base"]

# Deadlines only keep a broken test from hanging; nothing asserts on durations.
WAIT_SECONDS = 30.0
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
}
# Variables of the caller's environment that would point conveyor somewhere else.
_CONVEYOR_ENV = ("CONVEYOR_STATE_DIR", "CONVEYOR_DATABASE_URL", "CONVEYOR_ACTOR")


@pytest.fixture(autouse=True)
def _hermetic_conveyor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the CONVEYOR_* variables of a run they may be part of (this
    suite runs as a job of Conveyor's own pipeline, whose jobs get CONVEYOR_STATE_DIR)."""
    for name in list(os.environ):
        if name.startswith("CONVEYOR_"):
            monkeypatch.delenv(name, raising=False)


@dataclass(frozen=True)
class GitProject:
    """A git repository whose top level holds conveyor.yml."""

    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "conveyor.yml"

    def project(self) -> Project:
        return Project.locate(self.spec)

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.root), *args],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **GIT_ENV},
        )
        return done.stdout.strip()

    def write(self, files: Mapping[str, str]) -> None:
        for name, content in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)

    def commit(self, files: Mapping[str, str] | None = None, message: str = "change") -> str:
        """Write `files` (if any), commit everything and return the new HEAD."""
        self.write(files or {})
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def run(self, **options: Any) -> RunOutcome:
        """One run through the service layer, silently; `options` are RunOptions fields."""
        options.setdefault("parallelism", 4)
        return execute_run(self.project(), RunOptions(spec=self.spec, **options), SilentReporter())

    def store(self) -> Store:
        return Store(self.project().state_dir)

    def jobs(self, run_id: int) -> dict[str, JobRecord]:
        with self.store() as store:
            return {job.job_id: job for job in store.get_jobs(run_id)}

    def run_record(self, run_id: int) -> RunRecord:
        with self.store() as store:
            return store.get_run(run_id)

    def log(self, run_id: int, job_id: str) -> str:
        """The job's stored log, as `conveyor logs` shows it."""
        log_blob = self.jobs(run_id)[job_id].log_blob
        assert log_blob is not None
        with self.store() as store:
            return store.blobs.get_bytes(log_blob).decode()

    def workspace(self, run_id: int) -> Path:
        return self.project().run_dir(run_id) / "workspace"


MakeProject = Callable[..., GitProject]


@pytest.fixture
def git_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeProject:
    """A factory: `git_project(spec_yaml, files={...})` -> a committed GitProject."""
    for name in _CONVEYOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps narrower output mid-word
    counter = iter(range(1, 1000))

    def make(spec: str, files: Mapping[str, str] | None = None) -> GitProject:
        root = tmp_path / f"repo{next(counter)}"
        root.mkdir()
        project = GitProject(root)
        project.git("init", "-q", "-b", "main")
        project.commit({"conveyor.yml": textwrap.dedent(spec), **(files or {})}, "first")
        return project

    return make


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(args: list[str], cwd: Path) -> CliResult:
    """Run `conveyor ARGS` in this process from `cwd`, capturing its output."""
    from conveyor.cli.app import run_cli as cli_main  # after COLUMNS is dropped (above)

    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.chdir(cwd),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        mock.patch.dict(os.environ, {"COLUMNS": "200"}),
    ):
        code = cli_main(args)
    return CliResult(code, out.getvalue(), err.getvalue())


@dataclass
class CliProcess:
    """`conveyor` running as a subprocess, the leader of its own process group."""

    popen: subprocess.Popen[str]
    outputs: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def finish(self, timeout: float = WAIT_SECONDS) -> int:
        out, err = self.popen.communicate(timeout=timeout)
        self.outputs = [out, err]
        return self.popen.returncode

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


@pytest.fixture
def start_cli() -> Iterator[Callable[..., CliProcess]]:
    """`start_cli(args, cwd, env={...})` -> a CliProcess; leftovers are killed at teardown."""
    started: list[CliProcess] = []

    def start(args: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> CliProcess:
        full_env = {**os.environ, **GIT_ENV, "COLUMNS": "200"}
        for name in _CONVEYOR_ENV:
            full_env.pop(name, None)
        full_env.update(env or {})  # what the test asks for explicitly
        popen = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *args],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        process = CliProcess(popen)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.popen.poll() is None:
            process.kill_group()
        if process.popen.returncode is None or process.popen.stdout is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
                process.popen.communicate(timeout=WAIT_SECONDS)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (an orphan nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def read_pid(path: Path) -> int:
    """The pid a job wrote to `path`, once it is there."""
    text = wait_until(lambda: path.exists() and path.read_text().strip(), f"a pid in {path}")
    return int(text)


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL per pytest-xdist worker (tests/pg_server.py); missing, it fails
    the tests that need it, never skips them."""
    try:
        server = start_server()
    except PostgresMissing as missing:
        pytest.fail(str(missing))
    try:
        yield server
    finally:
        server.stop()
