"""The `builtin` router: control side of the asyncio reverse proxy in `proxy.py`.

The proxy runs as a daemon of its own (new session, reparented away from its starter), so
it keeps serving its last routes when the Conveyor process that configured it dies. Routes
travel through `STATE_DIR/routes.json`, written atomically; the proxy applies a new file
on SIGHUP or within ~150 ms of its mtime changing, and `/-/routes` on its admin port shows
the table in force, which is what `set_routes` waits for.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic import TypeAdapter

from conveyor.deploy.model import ReleaseSignals, RouteTable
from conveyor.deploy.routers.base import RouterSite
from conveyor.deploy.routers.client_limits import ClientLimits
from conveyor.deploy.routers.feedback_intake import FeedbackLimits
from conveyor.errors import ConveyorError, InfrastructureError

ROUTES_FILE = "routes.json"
PID_FILE = "router.pid"
LOG_FILE = "router.log"
METRIC_PREFIX = "conveyor_router"
ROUTE_TABLE = TypeAdapter(RouteTable)
JUDGED_SAMPLES = frozenset(
    f"{METRIC_PREFIX}_{name}"
    for name in (
        "requests_total",
        "connect_failures_total",
        "request_duration_seconds_sum",
        "request_duration_seconds_bucket",
    )
)
# Deadlines only bound a broken proxy; the happy paths take milliseconds.
START_DEADLINE = 10.0
APPLY_DEADLINE = 5.0
STOP_DEADLINE = 5.0
POLL_INTERVAL = 0.01


def routes_to_json(table: RouteTable) -> bytes:
    return ROUTE_TABLE.dump_json(table, indent=2)


def routes_from_json(data: bytes | str) -> RouteTable:
    return ROUTE_TABLE.validate_json(data)


def read_pid(state_dir: Path) -> int | None:
    try:
        return int((state_dir / PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_router_process(pid: int) -> bool:
    """Whether `pid` is a live proxy process (not a stale pid file's reused number)."""
    try:
        return b"conveyor.deploy.routers.proxy" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def parse_signals(exposition: str) -> list[ReleaseSignals]:
    """The proxy's `/-/metrics` (Prometheus text format) as signals per release.

    Only the judged series: requests a client pinned to a version are counted apart
    (`conveyor_router_pinned_*`), so that no client can skew what the judge reads.
    """
    from prometheus_client.parser import text_string_to_metric_families

    fields: dict[str, dict[str, float]] = {}
    buckets: dict[str, dict[float, int]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            release = sample.labels.get("release")
            if release is None or sample.name not in JUDGED_SAMPLES:
                continue
            counts = fields.setdefault(release, {})
            if sample.name == f"{METRIC_PREFIX}_requests_total":
                counts["requests"] = counts.get("requests", 0.0) + sample.value
                code = sample.labels.get("code", "")
                counts[code] = counts.get(code, 0.0) + sample.value
            elif sample.name == f"{METRIC_PREFIX}_connect_failures_total":
                counts["connect_failures"] = sample.value
            elif sample.name == f"{METRIC_PREFIX}_request_duration_seconds_sum":
                counts["latency_sum"] = sample.value
            elif sample.name == f"{METRIC_PREFIX}_request_duration_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets.setdefault(release, {})[bound] = int(sample.value)
    return [
        ReleaseSignals(
            release_id=release,
            requests=int(counts.get("requests", 0)),
            responses_4xx=int(counts.get("4xx", 0)),
            responses_5xx=int(counts.get("5xx", 0)),
            connect_failures=int(counts.get("connect_failures", 0)),
            latency_buckets=buckets.get(release, {}),
            latency_sum=counts.get("latency_sum", 0.0),
        )
        for release, counts in sorted(fields.items())
    ]


class BuiltinRouter:
    name = "builtin"

    def __init__(
        self,
        state_dir: Path,
        port: int,
        admin_port: int,
        limits: ClientLimits | None = None,
        feedback: FeedbackLimits | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.port = port
        self.admin_port = admin_port
        self.limits = limits or ClientLimits()
        self.feedback = feedback or FeedbackLimits()
        self._admin = f"http://127.0.0.1:{admin_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ensure_running(self) -> str:
        if self._healthy_pid() is not None:
            return self.url
        other = read_pid(self.state_dir)
        if other is not None and is_router_process(other):
            raise ConveyorError(
                f"{self.state_dir} belongs to a builtin router (pid {other}) that does not "
                f"answer on admin port {self.admin_port}",
                hint="stop that router first, or give this one its own state directory",
            )
        for port in (self.port, self.admin_port):
            if port_in_use(port):
                raise ConveyorError(
                    f"cannot start the builtin router: port {port} is already in use",
                    hint="stop what listens there or choose another router port",
                )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._launch()
        self._wait_healthy()
        return self.url

    def set_routes(self, routes: RouteTable) -> None:
        target = self.state_dir / ROUTES_FILE
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(routes_to_json(routes))
        os.replace(temporary, target)
        pid = self._healthy_pid()
        if pid is not None:
            # The proxy also polls the file; the signal only makes the switch immediate.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + APPLY_DEADLINE
        while self.routes() != routes:
            if time.monotonic() > deadline:
                raise InfrastructureError(
                    "the builtin router did not apply the new routes",
                    hint=f"see {self.state_dir / LOG_FILE}",
                )
            time.sleep(POLL_INTERVAL)

    def routes(self) -> RouteTable:
        return routes_from_json(self._admin_get("/-/routes"))

    def signals(self) -> list[ReleaseSignals]:
        return parse_signals(self._admin_get("/-/metrics").decode())

    def stop(self) -> None:
        pid = read_pid(self.state_dir)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        # The proxy is not our child: its removing the pid file is the sign it is gone.
        deadline = time.monotonic() + STOP_DEADLINE
        while (self.state_dir / PID_FILE).exists() and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
        if (self.state_dir / PID_FILE).exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            (self.state_dir / PID_FILE).unlink(missing_ok=True)

    def _launch(self) -> None:
        command = [
            sys.executable,
            "-m",
            "conveyor.deploy.routers.proxy",
            "--state-dir",
            str(self.state_dir),
            "--port",
            str(self.port),
            "--admin-port",
            str(self.admin_port),
            *self.limits.arguments(),
            *self.feedback.arguments(),
            "--detach",
        ]
        with open(self.state_dir / LOG_FILE, "ab") as log:
            # The launcher binds both ports, forks the daemon and exits: its status says
            # whether binding worked, and the daemon is nobody's child afterwards.
            launcher = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                check=False,
                timeout=START_DEADLINE,
            )
        if launcher.returncode != 0:
            raise ConveyorError(
                f"cannot start the builtin router on ports {self.port}/{self.admin_port}",
                hint=f"see {self.state_dir / LOG_FILE}",
            )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while self._healthy_pid() is None:
            if time.monotonic() > deadline:
                raise InfrastructureError(
                    "the builtin router did not become healthy",
                    hint=f"see {self.state_dir / LOG_FILE}",
                )
            time.sleep(POLL_INTERVAL)

    def _healthy_pid(self) -> int | None:
        """The proxy's pid when the one our pid file names answers on the admin port."""
        pid = read_pid(self.state_dir)
        if pid is None:
            return None
        try:
            response = httpx.get(f"{self._admin}/-/healthz", timeout=1.0)
            reported = int(response.json()["pid"])
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        return pid if reported == pid else None

    def _admin_get(self, path: str) -> bytes:
        """A GET on the admin port with the standard library's client: the continuous watch
        asks every router twice a second, and an httpx call made per request loads the CA
        bundle each time (about 40 ms of CPU). The admin port answers one request per
        connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=2.0)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise self._admin_error(error) from error
        finally:
            connection.close()
        if response.status != 200:
            raise self._admin_error(f"{path} answered {response.status}")
        return body

    def _admin_error(self, error: object) -> InfrastructureError:
        return InfrastructureError(
            f"the builtin router's admin port {self.admin_port} did not answer: {error}",
            hint="`conveyor env reconcile ENVIRONMENT` starts an environment's router again",
        )


def from_site(site: RouterSite) -> BuiltinRouter:
    """The registry's factory."""
    feedback = FeedbackLimits(origins=site.feedback_origins)
    return BuiltinRouter(site.folder, site.port, site.admin_port, feedback=feedback)
