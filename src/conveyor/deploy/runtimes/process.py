"""The `process` runtime: a release's replicas as supervised processes on this host,
each inside the image's own root file system.

The image's layers are unpacked into an immutable release folder (`unpack.py`), and each
replica runs its entrypoint + cmd under bubblewrap with that rootfs as its read-only `/`
(`sandbox.launch_command`: the image's own interpreter, the environment's data folder at
`/data`, a clean environment; see there), one sandbox per replica, under a detached
supervisor (`supervisor.py`) that outlives the Conveyor process that started it. An
image without its own interpreter cannot run here: the host's Python is never used.

    <state_dir>/images/<digest hex>/    the unpacked image, shared by releases of a digest
    <state_dir>/releases/<release id>/  release.json (what to run), supervisor.pid,
                                        state.json, events.jsonl, replica-<i>.log
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from conveyor.deploy.model import ReleaseSpec, ReplicaState, ReplicaStatus, Saturation
from conveyor.deploy.runtimes import supervisor
from conveyor.deploy.runtimes.base import RuntimeSite
from conveyor.deploy.runtimes.log_source import ReplicaLog, replica_logs_in
from conveyor.deploy.runtimes.logs import LogLimits
from conveyor.deploy.runtimes.sandbox import HOST, Launch, launch_command
from conveyor.deploy.runtimes.tasks import TaskResult, run_streaming
from conveyor.deploy.runtimes.unpack import ROOTFS, unpack_release
from conveyor.deploy.runtimes.usage import replicas_usage
from conveyor.errors import ConveyorError, InfrastructureError, NotFoundError
from conveyor.store.private import PRIVATE_FILE, private_dir
from conveyor.supply.oci.interpreter import check_interpreter
from conveyor.supply.oci.store import ImageStore

_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_POLL = 0.1
_STOP_SLACK = 5.0  # beyond the replicas' grace, before the supervisor is SIGKILLed
DEFAULT_LOG_LIMITS = LogLimits()
_START_DEADLINE = 15.0  # only bounds a broken interpreter; a supervisor starts in ~0.1 s


class ProcessRuntime:
    name = "process"

    def __init__(
        self, state_dir: Path, store: ImageStore, log_limits: LogLimits | None = None
    ) -> None:
        self.state_dir = state_dir.absolute()  # the supervisor's argv names it
        self.store = store
        self.log_limits = log_limits  # None: from this process's environment, at start
        self.images = self.state_dir / "images"
        self.runs = self.state_dir / "releases"

    # --- the Runtime protocol ---------------------------------------------------------

    def start(self, release: ReleaseSpec) -> list[ReplicaStatus]:
        run_dir = self._run_dir(release.release_id)
        image_dir = unpack_release(self.store, release.repository, release.digest, self.images)
        private_dir(run_dir)  # release.json names the secrets; replica logs may hold data
        # A starter killed mid-launch leaves the start lock with the launching supervisor,
        # so the next starter waits here and then finds it alive: never two supervisors.
        with _locked(run_dir / supervisor.START_LOCK) as start_lock:
            if not supervisor.is_locked(run_dir / supervisor.LIFE_LOCK):
                limits = self.log_limits or LogLimits.from_env(os.environ)
                plan = release_plan(release, image_dir, limits)
                _write_json(run_dir / supervisor.PLAN_FILE, plan.to_json())
                (run_dir / supervisor.STATE_FILE).unlink(missing_ok=True)
                (run_dir / supervisor.PID_FILE).unlink(missing_ok=True)
                _spawn_supervisor(run_dir, start_lock, release.secret_env)
                _wait_for_life_lock(run_dir)
        return self.status(release.release_id)

    def status(self, release_id: str) -> list[ReplicaStatus]:
        run_dir = self._run_dir(release_id)
        plan = self._plan(release_id)
        running = self._supervisor_pid(release_id) is not None
        records = _read_json(run_dir / supervisor.STATE_FILE).get("replicas") or []
        by_index = {int(r["index"]): r for r in records}
        return [_replica_status(r.index, r.port, by_index.get(r.index), running) for r in plan]

    def wait_ready(self, release_id: str, timeout: float) -> list[ReplicaStatus]:
        deadline = time.monotonic() + timeout
        while True:
            replicas = self.status(release_id)
            if all(r.state is ReplicaState.READY for r in replicas):
                return replicas
            stopped = self._supervisor_pid(release_id) is None
            if stopped or time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        reason = "is not running" if stopped else f"is not ready after {timeout:g} s"
        raise ConveyorError(
            f"release {release_id} {reason}: " + "; ".join(_describe(r) for r in replicas),
            hint=f"the replicas' output is in {self._run_dir(release_id)}/replica-<n>.log",
        )

    def saturation(self, release_id: str) -> Saturation:
        """Each replica's process tree (its workers too), from psutil."""
        return replicas_usage(r.pid for r in self.status(release_id) if r.pid is not None)

    def stop(self, release_id: str) -> None:
        run_dir = self._run_dir(release_id)
        if not run_dir.is_dir():
            raise NotFoundError(f"no release {release_id} in {self.runs}")
        pid = self._supervisor_pid(release_id)
        if pid is not None:
            grace = self._grace(release_id)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, grace + _STOP_SLACK):
                self._kill_everything(release_id, pid)
        (run_dir / supervisor.PID_FILE).unlink(missing_ok=True)

    def replica_events(self, release_id: str) -> list[dict[str, Any]]:
        path = self._run_dir(release_id) / supervisor.EVENTS_FILE
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):  # a line cut short by a kill
                events.append(json.loads(line))
        return events

    def releases(self) -> list[str]:
        if not self.runs.is_dir():
            return []
        names = sorted(path.name for path in self.runs.iterdir() if path.is_dir())
        return [name for name in names if self._supervisor_pid(name) is not None]

    def run_task(
        self,
        release: ReleaseSpec,
        argv: Sequence[str],
        timeout: float,
        on_line: Callable[[str], None],
    ) -> TaskResult:
        launch = self.one_off(release, argv)
        return run_streaming(
            launch.argv, cwd=launch.cwd, env=launch.env, timeout=timeout, on_line=on_line
        )

    def one_off(self, release: ReleaseSpec, command: Sequence[str]) -> Launch:
        """How to run `command` once inside the release's image (a release hook), in the
        same sandbox and environment as its replicas, secrets included, without a port."""
        image_dir = unpack_release(self.store, release.repository, release.digest, self.images)
        image = json.loads((image_dir / "image.json").read_text())
        check_interpreter(image.get("Labels") or {}, f"{release.repository}@{release.digest}")
        data_dir = Path(release.data_dir) if release.data_dir else None
        launch = launch_command(
            image, image_dir / ROOTFS, release.plain_env, command=command, data_dir=data_dir
        )
        return Launch(launch.argv, launch.cwd, {**launch.env, **release.secret_env})

    # --- internals ---------------------------------------------------------------------

    def replica_logs(self, release_id: str) -> list[ReplicaLog]:
        """Each replica's rotated output (the `LogSource` Protocol)."""
        return replica_logs_in(self._run_dir(release_id))

    def _run_dir(self, release_id: str) -> Path:
        if not _RELEASE_ID.match(release_id):
            raise ConveyorError(
                f"invalid release id {release_id!r}",
                hint="letters, digits, '.', '_' and '-', starting with a letter or digit",
            )
        return self.runs / release_id

    def _plan(self, release_id: str) -> list[supervisor.ReplicaPlan]:
        raw = _read_json(self._run_dir(release_id) / supervisor.PLAN_FILE)
        if not raw:
            raise NotFoundError(f"no release {release_id} in {self.runs}")
        return supervisor.Plan.from_json(raw).replicas

    def _grace(self, release_id: str) -> float:
        raw = _read_json(self._run_dir(release_id) / supervisor.PLAN_FILE)
        return float(raw.get("grace", supervisor.DEFAULT_GRACE))

    def _supervisor_pid(self, release_id: str) -> int | None:
        """The pid in supervisor.pid, if that process is this release's live supervisor."""
        run_dir = self._run_dir(release_id)
        try:
            pid = int((run_dir / supervisor.PID_FILE).read_text())
        except (OSError, ValueError):
            return None
        command = _cmdline(pid)
        if not is_alive(pid) or supervisor.MODULE not in command or str(run_dir) not in command:
            return None  # gone, or the pid was reused by another process
        return pid

    def _kill_everything(self, release_id: str, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for replica in self.status(release_id):
            if replica.pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(replica.pid, signal.SIGKILL)


def release_plan(
    release: ReleaseSpec, image_dir: Path, log_limits: LogLimits = DEFAULT_LOG_LIMITS
) -> supervisor.Plan:
    image = json.loads((image_dir / "image.json").read_text())
    rootfs = image_dir / ROOTFS
    check_interpreter(image.get("Labels") or {}, f"{release.repository}@{release.digest}")
    data_dir = Path(release.data_dir) if release.data_dir else None
    replicas = [
        replica_plan(image, rootfs, release.plain_env, index, port, data_dir=data_dir)
        for index, port in enumerate(release.ports)
    ]
    return supervisor.Plan(
        release.release_id,
        replicas,
        release.readiness,
        release.liveness,
        secrets=list(release.secret_env),
        log_max_bytes=log_limits.max_bytes,
        log_keep=log_limits.keep,
    )


def replica_plan(
    image: dict[str, Any],
    rootfs: Path,
    env: dict[str, str],
    index: int,
    port: int,
    *,
    data_dir: Path | None = None,
) -> supervisor.ReplicaPlan:
    launch = launch_command(image, rootfs, env, data_dir=data_dir, port=port)
    return supervisor.ReplicaPlan(index, port, launch.argv, launch.cwd, launch.env)


def _spawn_supervisor(run_dir: Path, start_lock: int, secrets: dict[str, str]) -> int:
    """The supervisor gets the secrets in its own environment (release.json names them
    only), which it hands to its replicas: their values never touch the disk."""
    argv = [sys.executable, "-m", supervisor.MODULE, "--release-dir", str(run_dir), "--detach"]
    env = {**os.environ, **secrets, supervisor.START_LOCK_FD: str(start_lock)}
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, env=env, pass_fds=(start_lock,)
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise InfrastructureError(f"cannot start the supervisor for {run_dir.name}: {tail}")
    return int(done.stdout.strip())


def _replica_status(
    index: int, port: int, record: dict[str, Any] | None, running: bool
) -> ReplicaStatus:
    address = f"{HOST}:{port}"
    if not running:
        return ReplicaStatus(index, address, ReplicaState.STOPPED, detail="not running")
    if record is None:
        return ReplicaStatus(index, address, ReplicaState.STARTING)
    return ReplicaStatus(
        index=index,
        address=address,
        state=ReplicaState(record["state"]),
        restarts=int(record.get("restarts") or 0),
        pid=record.get("pid"),
        detail=str(record.get("detail") or ""),
    )


def _describe(replica: ReplicaStatus) -> str:
    detail = f": {replica.detail}" if replica.detail else ""
    return f"replica {replica.index} ({replica.address}) {replica.state}{detail}"


# --- /proc ------------------------------------------------------------------------------


def is_alive(pid: int) -> bool:
    """Running and not a zombie (a zombie still answers kill(pid, 0))."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True


def _wait_for_life_lock(run_dir: Path) -> None:
    """Until the new supervisor holds its life lock and has written its pid."""
    deadline = time.monotonic() + _START_DEADLINE
    while not (
        supervisor.is_locked(run_dir / supervisor.LIFE_LOCK)
        and (run_dir / supervisor.PID_FILE).exists()
    ):
        if time.monotonic() >= deadline:
            raise InfrastructureError(
                f"the supervisor of {run_dir.name} did not start",
                hint=f"see {run_dir / 'supervisor.log'}",
            )
        time.sleep(0.02)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int]:
    """An exclusive flock on `path`; yields the descriptor (to hand to a child)."""
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield lock.fileno()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Atomically, readable by this user only (it names the release's environment)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(value, indent=2))
    os.replace(temporary, path)


def from_site(site: RuntimeSite) -> ProcessRuntime:
    """The registry's factory: releases straight under the runtime root."""
    return ProcessRuntime(site.root, site.images)
