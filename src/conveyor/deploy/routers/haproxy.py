"""The `haproxy` router: a generated HAProxy configuration, weights changed live.

Configuration structure (all names are stable, so the runtime API can address them):

- frontend `public` on 127.0.0.1:port. A request whose pin header (`X-Conveyor-Version`)
  or, failing that, pin cookie (`conveyor-version`) names a release's version goes to that
  release's backend `pin_<release_id>`; every other request goes to `releases`.
- backend `releases` (balance roundrobin): one server per replica, named
  `<release_id>__<index>`. A release's weight W (0..100) becomes server weights summing to
  2*W (HAProxy's maximum is 256), spread over its replicas by largest remainder. Weights
  change live with `set weight releases/<server> N`; pinned backends keep equal weights.
  With a sticky cookie, `cookie <name> insert indirect nocache` pins a client to its
  server; HAProxy still honours that cookie for a weight-0 server (sessions drain).
- frontend `admin` on 127.0.0.1:admin_port serves the Prometheus exporter at /metrics.
- the runtime API socket `haproxy.sock` in state_dir (`expose-fd listeners`).

`set_routes` with the same releases and addresses only sets weights through the socket
(same process, no reload). Otherwise it writes a new configuration, checks it with
`haproxy -c`, and starts a new process with `-x <socket> -sf <old pid>`: the listeners are
handed over and the old process finishes its requests in flight before it exits.

Exporter counters restart with each process, so before a reload the current signals are
saved in state_dir and added to later readings (requests that finish on the old process
after that snapshot are not counted). HAProxy 2.6 exports no latency histogram: the
`latency_sum` is an estimate (average total time of the last 1024 requests x requests)
and `latency_buckets` stays empty.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter

from conveyor.deploy.model import Backend, ReleaseSignals, RouteTable
from conveyor.deploy.routers.base import RouterSite
from conveyor.errors import ConveyorError, InfrastructureError

DEFAULT_BACKEND = "releases"
PIN_BACKEND_PREFIX = "pin_"
# A/B-matched requests are the test's traffic and judged; pinned ones are a client's
# choice and never judged, so they go through backends of their own.
MATCH_BACKEND_PREFIX = "match_"
WEIGHT_SCALE = 2  # server weights of a release sum to WEIGHT_SCALE * its weight (<= 256)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_SAFE_ADDRESS = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")
_MAX_SOCKET_PATH = 107  # sun_path on Linux, minus the terminating NUL
_DEADLINE_SECONDS = 10.0


class RouteChange(StrEnum):
    NONE = "none"
    WEIGHTS = "weights"  # same servers: applied live through the runtime API
    SERVERS = "servers"  # servers added or removed: new configuration, graceful reload


@dataclass(frozen=True)
class _State:
    """What this router persists in state_dir, so a new Conveyor process can pick it up."""

    routes: RouteTable = field(default_factory=lambda: RouteTable(backends=()))
    signal_offsets: tuple[ReleaseSignals, ...] = ()
    draining_pids: tuple[int, ...] = ()


_STATE = TypeAdapter(_State)


def server_name(release_id: str, index: int) -> str:
    return f"{release_id}__{index}"


def release_of_server(name: str) -> str:
    return name.rsplit("__", 1)[0]


def server_weights(backend: Backend) -> list[int]:
    """Split a release's share over its replicas so that the total is exact."""
    replicas = len(backend.addresses)
    if replicas == 0:
        return []
    total = WEIGHT_SCALE * backend.weight
    base, remainder = divmod(total, replicas)
    return [base + (1 if index < remainder else 0) for index in range(replicas)]


def release_weight(weights: Iterable[int]) -> int:
    return sum(weights) // WEIGHT_SCALE


def validate_routes(routes: RouteTable) -> None:
    """Refuse names that HAProxy would misread; they end up inside the configuration."""
    for name in (routes.pin_header, routes.pin_cookie, routes.sticky_cookie or "x"):
        _require(_SAFE_NAME.match(name), f"invalid header or cookie name {name!r}")
    versions = [backend.version for backend in routes.backends]
    _require(len(set(versions)) == len(versions), "two releases share one version")
    ids = [backend.release_id for backend in routes.backends]
    _require(len(set(ids)) == len(ids), "a release appears twice in the route table")
    ids_known = set(ids)
    for rule in routes.matches:
        for part in (rule.header, rule.cookie, rule.value):
            if part is not None:
                _require(_SAFE_NAME.match(part), f"invalid A/B match {part!r}")
        _require(rule.release_id in ids_known, f"A/B match to unknown {rule.release_id!r}")
    for backend in routes.backends:
        _require(_SAFE_NAME.match(backend.release_id), f"invalid release id {backend.release_id!r}")
        _require(_SAFE_NAME.match(backend.version), f"invalid version {backend.version!r}")
        _require(0 <= backend.weight <= 100, f"weight {backend.weight} is not within 0..100")
        for address in backend.addresses:
            _require(_SAFE_ADDRESS.match(address), f"invalid replica address {address!r}")


def _require(condition: object, message: str) -> None:
    if not condition:
        raise ConveyorError(
            message, hint="names may use letters, digits, '.', '_' and '-'; weights 0..100"
        )


def render_config(routes: RouteTable, *, port: int, admin_port: int, socket_path: Path) -> str:
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin expose-fd listeners",
        "    stats timeout 10s",
        "    hard-stop-after 30s",  # an old process never outlives its slowest request by much
        "defaults",
        "    mode http",
        "    option redispatch",
        "    retries 2",
        "    timeout connect 5s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 5s",
        "    timeout queue 10s",
        "frontend public",
        f"    bind 127.0.0.1:{port}",
        *_pin_rules(routes),
        f"    default_backend {DEFAULT_BACKEND}",
        "frontend admin",
        f"    bind 127.0.0.1:{admin_port}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    http-request return status 404",
        f"backend {DEFAULT_BACKEND}",
        "    balance roundrobin",
    ]
    if routes.sticky_cookie:
        flags = 'httponly attr "SameSite=Lax"'  # only the router reads it
        lines.append(f"    cookie {routes.sticky_cookie} insert indirect nocache {flags}")
    for backend in routes.backends:
        weights = server_weights(backend)
        for index, (address, weight) in enumerate(zip(backend.addresses, weights, strict=True)):
            name = server_name(backend.release_id, index)
            cookie = f" cookie {name}" if routes.sticky_cookie else ""
            lines.append(f"    server {name} {address} weight {weight}{cookie}")
    matched = {rule.release_id for rule in routes.matches}
    for backend in routes.backends:
        prefixes = [PIN_BACKEND_PREFIX]
        if backend.release_id in matched:
            prefixes.append(MATCH_BACKEND_PREFIX)
        for prefix in prefixes:
            lines += [f"backend {prefix}{backend.release_id}", "    balance roundrobin"]
            for index, address in enumerate(backend.addresses):
                lines.append(f"    server {server_name(backend.release_id, index)} {address}")
    return "\n".join(lines) + "\n"


def _pin_rules(routes: RouteTable) -> list[str]:
    header = [
        f"    use_backend {PIN_BACKEND_PREFIX}{b.release_id}"
        f" if {{ req.hdr({routes.pin_header}) -m str {b.version} }}"
        for b in routes.backends
    ]
    cookie = [
        f"    use_backend {PIN_BACKEND_PREFIX}{b.release_id}"
        f" if {{ req.cook({routes.pin_cookie}) -m str {b.version} }}"
        for b in routes.backends
    ]
    matches = [
        f"    use_backend {MATCH_BACKEND_PREFIX}{rule.release_id}"
        + (
            f" if {{ req.hdr({rule.header}) -m str {rule.value} }}"
            if rule.header is not None
            else f" if {{ req.cook({rule.cookie}) -m str {rule.value} }}"
        )
        for rule in routes.matches
    ]
    return header + cookie + matches  # a version pin wins over an A/B match


def check_config(config_path: Path, haproxy: str = "haproxy") -> None:
    result = subprocess.run(
        [haproxy, "-c", "-q", "-f", str(config_path)], check=False, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise InfrastructureError(
            f"haproxy rejected {config_path}: {result.stderr.strip()}",
            hint="this is a bug in the generated configuration; please report it",
        )


class RuntimeApi:
    """HAProxy's runtime API over its UNIX socket, one command batch per connection."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def command(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5.0)
            conn.connect(str(self.socket_path))
            conn.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def pid(self) -> int:
        for line in self.command("show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise InfrastructureError("haproxy's runtime API did not report its pid")

    def set_weights(self, proxy: str, weights: dict[str, int]) -> None:
        batch = ";".join(f"set weight {proxy}/{name} {w}" for name, w in weights.items())
        answer = self.command(batch).strip()
        if answer:
            raise InfrastructureError(f"haproxy refused new weights: {answer}")

    def weights(self, proxy: str) -> dict[str, int]:
        """Current (user) weight of each server, from `show servers state`."""
        lines = self.command(f"show servers state {proxy}").splitlines()
        header = next(line for line in lines if line.startswith("# "))
        columns = header[2:].split()
        rows = (dict(zip(columns, line.split(), strict=False)) for line in lines[2:] if line)
        return {row["srv_name"]: int(row["srv_uweight"]) for row in rows}


def expected_weights(routes: RouteTable) -> dict[str, int]:
    return {
        server_name(backend.release_id, index): weight
        for backend in routes.backends
        for index, weight in enumerate(server_weights(backend))
    }


def classify_change(current: RouteTable, new: RouteTable) -> RouteChange:
    def servers(table: RouteTable) -> object:
        return (
            [(b.release_id, b.version, b.addresses) for b in table.backends],
            (table.pin_header, table.pin_cookie, table.sticky_cookie),
            table.matches,
        )

    if servers(current) != servers(new):
        return RouteChange.SERVERS
    if expected_weights(current) != expected_weights(new):
        return RouteChange.WEIGHTS
    return RouteChange.NONE


def parse_signals(metrics_text: str) -> list[ReleaseSignals]:
    """Sum the exporter's per-server counters per release: the weighted and the A/B-matched
    backends only. Pinned requests are a client's choice: never judged."""
    counters: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    averages: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            proxy, server = sample.labels.get("proxy", ""), sample.labels.get("server", "")
            if proxy != DEFAULT_BACKEND and not proxy.startswith(MATCH_BACKEND_PREFIX):
                continue
            key = f"{proxy}/{server}"
            if sample.name == "haproxy_server_http_responses_total":
                counters[key]["requests"] += sample.value
                counters[key][sample.labels["code"]] += sample.value
            elif sample.name == "haproxy_server_connection_errors_total":
                counters[key]["connect_failures"] += sample.value
            elif sample.name == "haproxy_server_total_time_average_seconds":
                averages[key] = sample.value
    per_release: dict[str, ReleaseSignals] = {}
    for key, values in counters.items():
        release_id = release_of_server(key.split("/", 1)[1])
        average = averages.get(key, 0.0)
        found = ReleaseSignals(
            release_id=release_id,
            requests=int(values["requests"]),
            responses_4xx=int(values["4xx"]),
            responses_5xx=int(values["5xx"]),
            connect_failures=int(values["connect_failures"]),
            latency_sum=average * values["requests"],
        )
        per_release[release_id] = add_signals(per_release.get(release_id), found)
    return sorted(per_release.values(), key=lambda s: s.release_id)


def add_signals(left: ReleaseSignals | None, right: ReleaseSignals) -> ReleaseSignals:
    if left is None:
        return right
    return replace(
        left,
        requests=left.requests + right.requests,
        responses_4xx=left.responses_4xx + right.responses_4xx,
        responses_5xx=left.responses_5xx + right.responses_5xx,
        connect_failures=left.connect_failures + right.connect_failures,
        latency_sum=left.latency_sum + right.latency_sum,
    )


def is_alive(pid: int) -> bool:
    """True for a running HAProxy; a zombie (exited, not yet reaped) counts as gone, and so
    does another program that reused a pid from a stale pid file (never signal it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, rest = stat.split("(", 1)[1].rsplit(")", 1)
    return rest.split()[0] != "Z" and name.startswith("haproxy")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise InfrastructureError(f"haproxy router: timed out waiting until {what}")
        time.sleep(0.01)


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class HAProxyRouter:
    """A Router backed by an HAProxy process that outlives the Conveyor process."""

    name = "haproxy"

    def __init__(
        self, state_dir: Path, port: int, admin_port: int, *, haproxy: str = "haproxy"
    ) -> None:
        self.state_dir = state_dir
        self.port = port
        self.admin_port = admin_port
        self.haproxy = haproxy
        self.config_path = state_dir / "haproxy.cfg"
        self.pid_path = state_dir / "haproxy.pid"
        self.state_path = state_dir / "router-state.json"
        self.api = RuntimeApi(state_dir.resolve() / "haproxy.sock")
        if len(str(self.api.socket_path)) > _MAX_SOCKET_PATH:
            raise ConveyorError(
                f"state directory path is too long for a UNIX socket: {state_dir}",
                hint="choose a shorter state directory",
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        """The pid of the HAProxy process serving now, or None when it is not running."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if is_alive(pid) else None

    def ensure_running(self) -> str:
        if self.pid() is None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            state = self._load_state()
            self._write_config(state.routes)
            self._launch(old_pid=None)
            self._await_weights(state.routes)
        return self.url

    def set_routes(self, routes: RouteTable) -> None:
        validate_routes(routes)
        self.ensure_running()
        state = self._load_state()
        change = classify_change(state.routes, routes)
        if change is RouteChange.WEIGHTS:
            self.api.set_weights(DEFAULT_BACKEND, expected_weights(routes))
        elif change is RouteChange.SERVERS:
            self._reload(state, routes)
            state = self._load_state()
        self._save_state(replace(state, routes=routes))
        self._await_weights(routes)

    def routes(self) -> RouteTable:
        table = self._load_state().routes
        if self.pid() is None:
            return table
        live = self.api.weights(DEFAULT_BACKEND)
        return replace(table, backends=tuple(_with_live_weight(b, live) for b in table.backends))

    def signals(self) -> list[ReleaseSignals]:
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=5.0) as response:
            text = response.read().decode()
        totals: dict[str, ReleaseSignals] = {}
        for signals in (*self._load_state().signal_offsets, *parse_signals(text)):
            totals[signals.release_id] = add_signals(totals.get(signals.release_id), signals)
        return sorted(totals.values(), key=lambda s: s.release_id)

    def stop(self) -> None:
        if not self.state_dir.exists():
            return
        state = self._load_state()
        pids = [pid for pid in (self.pid(), *state.draining_pids) if pid is not None]
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        wait_until(lambda: not any(is_alive(pid) for pid in pids), "haproxy stopped")
        self._save_state(replace(state, draining_pids=(), signal_offsets=()))
        self.pid_path.unlink(missing_ok=True)

    def _reload(self, state: _State, routes: RouteTable) -> None:
        old_pid = self.pid()
        offsets = tuple(self.signals()) if old_pid is not None else state.signal_offsets
        draining = tuple(pid for pid in (*state.draining_pids, old_pid) if pid and is_alive(pid))
        self._save_state(replace(state, signal_offsets=offsets, draining_pids=draining))
        self._write_config(routes)
        self._launch(old_pid=old_pid)

    def _launch(self, old_pid: int | None) -> None:
        command = [self.haproxy, "-D", "-f", str(self.config_path), "-p", str(self.pid_path)]
        if old_pid is not None:
            command += ["-x", str(self.api.socket_path), "-sf", str(old_pid)]
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise InfrastructureError(
                f"haproxy did not start: {result.stderr.strip()}",
                hint=f"is port {self.port} or {self.admin_port} already in use?",
            )
        # The pid file and the socket must both belong to the new process, not the old one.
        wait_until(
            lambda: self.pid() not in (None, old_pid) and port_answers(self.port), "port answers"
        )
        wait_until(self._api_is_current, "the new process owns the runtime API")

    def _api_is_current(self) -> bool:
        try:
            return self.api.pid() == self.pid()
        except OSError:
            return False

    def _await_weights(self, routes: RouteTable) -> None:
        wanted = expected_weights(routes)
        wait_until(lambda: self.api.weights(DEFAULT_BACKEND) == wanted, "new weights are in force")

    def _write_config(self, routes: RouteTable) -> None:
        text = render_config(
            routes, port=self.port, admin_port=self.admin_port, socket_path=self.api.socket_path
        )
        candidate = self.config_path.with_suffix(".cfg.new")
        candidate.write_text(text)
        check_config(candidate, self.haproxy)
        candidate.replace(self.config_path)

    def _load_state(self) -> _State:
        if not self.state_path.exists():
            return _State()
        return _STATE.validate_json(self.state_path.read_bytes())

    def _save_state(self, state: _State) -> None:
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_bytes(_STATE.dump_json(state))
        temporary.replace(self.state_path)


def _with_live_weight(backend: Backend, live: dict[str, int]) -> Backend:
    """A release without replicas keeps its stored weight: HAProxy has nothing to show."""
    if not backend.addresses:
        return backend
    names = (server_name(backend.release_id, i) for i in range(len(backend.addresses)))
    return replace(backend, weight=release_weight(live.get(name, 0) for name in names))


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def from_site(site: RouterSite) -> HAProxyRouter:
    """The registry's factory."""
    return HAProxyRouter(site.folder, site.port, site.admin_port)
