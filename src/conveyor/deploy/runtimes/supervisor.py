"""The supervisor of one release: runs its replicas, restarts them, checks their health.

    python -m conveyor.deploy.runtimes.supervisor --release-dir DIR [--detach]

DIR is the release's run directory; `release.json` there (written by `ProcessRuntime`)
says what to run: per replica its port, argv, cwd and environment, plus the readiness and
liveness checks. Secrets are named there, never valued: each replica gets them from the
supervisor's own environment, which its starter gave it. The supervisor writes
`state.json` (atomically) and appends to `events.jsonl`; each replica's stdout and stderr
go through a pipe to `replica-<index>.log`, rotated by size (`logs.py`; the limits are in
release.json).

`--detach` starts the supervisor in a new session, prints its pid and returns, so the
supervisor is nobody's child: it outlives the Conveyor process that started it.

One thread per replica: start it, watch it (exit, readiness, liveness), restart it with
exponential backoff. SIGTERM stops every replica (SIGTERM, then SIGKILL after a grace).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from conveyor.deploy.model import HealthCheck, ReplicaState
from conveyor.deploy.runtimes.logs import (
    DEFAULT_KEEP,
    DEFAULT_MAX_BYTES,
    LogLimits,
    Pump,
    RotatingLog,
)
from conveyor.deploy.runtimes.probes import describe_check, probe_ok
from conveyor.engine.mask import Masker

MODULE = "conveyor.deploy.runtimes.supervisor"
PLAN_FILE = "release.json"
STATE_FILE = "state.json"
EVENTS_FILE = "events.jsonl"
PID_FILE = "supervisor.pid"
# Held (flock) by the live supervisor for its whole life: the kernel's word on whether a
# release runs, which a pid file alone cannot give after a kill at the wrong moment.
LIFE_LOCK = "supervisor.lock"
START_LOCK = ".start.lock"
LIFE_LOCK_PATIENCE = 1.0  # seconds a new supervisor tries for the life lock (see _lock_soon)
START_LOCK_FD = "CONVEYOR_START_LOCK_FD"  # the starter's lock, held until LIFE_LOCK is
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
BACKOFF_RESET_AFTER = 30.0  # up this long: the next crash starts the backoff afresh
DEFAULT_GRACE = 10.0
_TICK = 0.1
_PUMP_DRAIN = 1.0  # seconds the pump may take to copy a dead replica's last output


def log_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"replica-{index}.log"


@dataclass(frozen=True)
class ReplicaPlan:
    index: int
    port: int
    argv: list[str]
    cwd: str
    env: dict[str, str]


@dataclass(frozen=True)
class Plan:
    release_id: str
    replicas: list[ReplicaPlan]
    readiness: HealthCheck
    liveness: HealthCheck
    grace: float = DEFAULT_GRACE
    # Names of the secrets each replica gets from the supervisor's own environment: their
    # values are never written to release.json.
    secrets: list[str] = field(default_factory=list)
    log_max_bytes: int = DEFAULT_MAX_BYTES  # each replica's log rotates at this size
    log_keep: int = DEFAULT_KEEP  # and keeps this many older files

    @property
    def log_limits(self) -> LogLimits:
        return LogLimits(self.log_max_bytes, self.log_keep)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Plan:
        return cls(
            release_id=raw["release_id"],
            replicas=[ReplicaPlan(**replica) for replica in raw["replicas"]],
            readiness=HealthCheck(**raw["readiness"]),
            liveness=HealthCheck(**raw["liveness"]),
            grace=float(raw.get("grace", DEFAULT_GRACE)),
            secrets=[str(name) for name in raw.get("secrets", [])],
            log_max_bytes=int(raw.get("log_max_bytes", DEFAULT_MAX_BYTES)),
            log_keep=int(raw.get("log_keep", DEFAULT_KEEP)),
        )


@dataclass
class ReplicaRecord:
    """What state.json says of one replica."""

    index: int
    port: int
    state: ReplicaState = ReplicaState.STARTING
    pid: int | None = None
    restarts: int = 0
    detail: str = ""
    last_exit_code: int | None = None


@dataclass
class Journal:
    """state.json and events.jsonl, shared by the replica threads."""

    run_dir: Path
    records: list[ReplicaRecord]
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Secrets never written here: a replica's last line (its detail) may print one.
    masker: Masker = field(default_factory=Masker.empty)

    def update(self, index: int, **changes: Any) -> None:
        with self.lock:
            record = self.records[index]
            for name, value in changes.items():
                setattr(record, name, self._scrub(value))
            self._write_state()

    def event(self, kind: str, index: int, **details: Any) -> None:
        details = {name: self._scrub(value) for name, value in details.items()}
        line = json.dumps({"time": time.time(), "event": kind, "replica": index, **details})
        with self.lock, (self.run_dir / EVENTS_FILE).open("a") as events:
            events.write(line + "\n")

    def _scrub(self, value: Any) -> Any:
        return self.masker.mask_text(value) if isinstance(value, str) else value

    def _write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "updated": time.time(),
            "replicas": [{**asdict(r), "state": str(r.state)} for r in self.records],
        }
        temporary = self.run_dir / f".{STATE_FILE}.{os.getpid()}"
        temporary.write_text(json.dumps(state, indent=2))
        os.replace(temporary, self.run_dir / STATE_FILE)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class Replica:
    """One replica's life: start, watch, restart with backoff, until the release stops."""

    def __init__(self, plan: Plan, replica: ReplicaPlan, journal: Journal, stop: threading.Event):
        self.plan = plan
        self.replica = replica
        self.journal = journal
        self.stop = stop
        self.log = RotatingLog(log_path(journal.run_dir, replica.index), plan.log_limits)
        self.backoff = BACKOFF_FIRST
        self.restarts = 0

    def run(self) -> None:
        first = True
        while not self.stop.is_set():
            if port_in_use(self.replica.port):
                self._port_busy()
            else:
                if not first:
                    self.restarts += 1
                first = False
                started = time.monotonic()
                self._run_once()
                if time.monotonic() - started >= BACKOFF_RESET_AFTER:
                    self.backoff = BACKOFF_FIRST
            if self.stop.wait(self.backoff):
                break
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        self.journal.update(self.replica.index, state=ReplicaState.STOPPED, pid=None)
        self.log.close()

    def _port_busy(self) -> None:
        detail = f"port {self.replica.port} is in use"
        self.journal.update(self.replica.index, state=ReplicaState.CRASHED, pid=None, detail=detail)
        self.journal.event("port-in-use", self.replica.index, detail=detail)

    def _run_once(self) -> None:
        index = self.replica.index
        process = self._spawn()
        assert process.stdout is not None  # a pipe: _spawn asks for one
        pump = Pump(process.stdout, self.log)
        kind = "restart" if self.restarts else "start"
        self.journal.update(
            index, state=ReplicaState.STARTING, pid=process.pid, restarts=self.restarts, detail=""
        )
        self.journal.event(kind, index, pid=process.pid, restarts=self.restarts)
        unhealthy = self._watch(process)
        if self.stop.is_set() or unhealthy:
            terminate(process, self.plan.grace)
        code = process.wait()
        pump.join(_PUMP_DRAIN)
        if self.stop.is_set():
            return
        detail = pump.last_line() or f"exited with code {code}"
        state = ReplicaState.UNHEALTHY if unhealthy else ReplicaState.CRASHED
        self.journal.update(index, state=state, pid=None, last_exit_code=code, detail=detail)
        self.journal.event("exit", index, pid=process.pid, code=code, detail=detail)

    def _spawn(self) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                self.replica.argv,
                cwd=self.replica.cwd,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,  # to the pump, which rotates the log
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopping it stops its children
            )
        except OSError as error:
            # A missing program: a stand-in says why and fails the same way, so the log
            # shows the reason and backoff applies.
            message = f"cannot start {self.replica.argv[0]!r}: {error.strerror or error}"
            return subprocess.Popen(
                [sys.executable, "-c", _STAND_IN, message], stdout=subprocess.PIPE
            )

    def _environment(self) -> dict[str, str]:
        """The replica's environment: the plan's, and the secrets it names, from ours."""
        secrets = {name: os.environ[name] for name in self.plan.secrets if name in os.environ}
        return {**self.replica.env, **secrets}

    def _watch(self, process: subprocess.Popen[bytes]) -> bool:
        """Until the process exits (False) or fails its liveness check (True)."""
        ready = False
        failures = 0
        next_check = time.monotonic()
        while not self.stop.is_set() and process.poll() is None:
            if time.monotonic() >= next_check:
                check = self.plan.liveness if ready else self.plan.readiness
                next_check = time.monotonic() + check.interval
                ok = probe_ok(self.replica.port, check)
                if not ready and ok:
                    ready = True
                    self.journal.update(self.replica.index, state=ReplicaState.READY)
                    self.journal.event("ready", self.replica.index, pid=process.pid)
                elif ready:
                    failures = 0 if ok else failures + 1
                    if failures >= check.failure_threshold:
                        return self._unhealthy(process, failures)
            self.stop.wait(_TICK)
        return False

    def _unhealthy(self, process: subprocess.Popen[bytes], failures: int) -> bool:
        check = describe_check(self.plan.liveness)
        detail = f"failed its liveness check {failures} times in a row ({check})"
        self.journal.update(self.replica.index, state=ReplicaState.UNHEALTHY, detail=detail)
        self.journal.event("unhealthy", self.replica.index, pid=process.pid, detail=detail)
        return True


_STAND_IN = "import sys; print(sys.argv[1], flush=True); raise SystemExit(127)"


def terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the replica's process group, SIGKILL it after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def is_locked(path: Path) -> bool:
    """Whether another process holds an flock on `path`."""
    try:
        handle = path.open("a")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _take_life_lock(run_dir: Path) -> TextIO | None:
    """The life lock, then the pid file, then the starter's lock let go (in that order, so
    a starter that waits on the start lock always finds this supervisor alive)."""
    handle = (run_dir / LIFE_LOCK).open("a")
    if not _lock_soon(handle):
        handle.close()
        return None
    # Atomically: the starter takes the file's existence for a pid to read, and an empty
    # file read as "not running" failed the deploy ("crashed at start (0 restarts)").
    temporary = run_dir / f".{PID_FILE}.{os.getpid()}"
    temporary.write_text(f"{os.getpid()}\n")
    os.replace(temporary, run_dir / PID_FILE)
    inherited = os.environ.pop(START_LOCK_FD, "")
    if inherited.isdigit():
        with contextlib.suppress(OSError):
            os.close(int(inherited))
    return handle


def _lock_soon(handle: TextIO) -> bool:
    """Take the life lock, trying for a moment: `is_locked` probes it by taking it for a
    few microseconds (the starter polls it while this supervisor starts), and a probe is
    not another supervisor, which would hold it for good."""
    deadline = time.monotonic() + LIFE_LOCK_PATIENCE
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def supervise(run_dir: Path) -> None:
    life = _take_life_lock(run_dir)
    if life is None:
        print("another supervisor runs this release; leaving it alone", file=sys.stderr)
        return
    with life:
        _supervise(run_dir)


def _supervise(run_dir: Path) -> None:
    plan = Plan.from_json(json.loads((run_dir / PLAN_FILE).read_text()))
    records = [ReplicaRecord(index=r.index, port=r.port) for r in plan.replicas]
    masker = Masker(os.environ[name] for name in plan.secrets if name in os.environ)
    journal = Journal(run_dir, records, masker=masker)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    threads = [
        threading.Thread(target=Replica(plan, replica, journal, stop).run, daemon=True)
        for replica in plan.replicas
    ]
    for thread in threads:
        thread.start()
    while not stop.wait(1.0):
        pass
    for thread in threads:
        thread.join()
    journal.event("stop", -1)


def detach(run_dir: Path, out: TextIO) -> None:
    """Start the supervisor in its own session and print its pid. The starter's lock (an
    inherited descriptor) travels on to the supervisor, which lets it go once it runs."""
    inherited = os.environ.get(START_LOCK_FD, "")
    keep = (int(inherited),) if inherited.isdigit() else ()
    log = (run_dir / "supervisor.log").open("ab")
    with log:
        process = subprocess.Popen(
            [sys.executable, "-m", MODULE, "--release-dir", str(run_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            pass_fds=keep,
        )
    out.write(f"{process.pid}\n")
    out.flush()
    process.returncode = 0  # not ours to wait for: init reaps it once we exit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="conveyor-supervisor", description=__doc__)
    parser.add_argument("--release-dir", type=Path, required=True)
    parser.add_argument("--detach", action="store_true")
    options = parser.parse_args(argv)
    if options.detach:
        detach(options.release_dir, sys.stdout)
    else:
        supervise(options.release_dir)


if __name__ == "__main__":
    main()
