"""The shared vocabulary of the data plane: releases, replicas, routes and signals."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ReplicaState(StrEnum):
    STARTING = "starting"  # started, not yet ready
    READY = "ready"  # passing its readiness check: may receive traffic
    UNHEALTHY = "unhealthy"  # failing its liveness check: will be restarted
    CRASHED = "crashed"  # exited; restarted with backoff
    STOPPED = "stopped"


@dataclass(frozen=True)
class HealthCheck:
    path: str | None = None  # None: a TCP connect to the replica's port
    interval: float = 1.0
    timeout: float = 1.0
    failure_threshold: int = 3


@dataclass(frozen=True)
class ReleaseSpec:
    """One release of a service: an image by digest, run as N replicas on 127.0.0.1."""

    release_id: str  # e.g. "staging-shop-3f1c0d9e2a7b": unique per environment and digest
    repository: str
    digest: str
    ports: tuple[int, ...]  # one per replica
    env: dict[str, str] = field(default_factory=dict)
    readiness: HealthCheck = field(default_factory=HealthCheck)
    liveness: HealthCheck = field(default_factory=HealthCheck)
    # Names in `env` whose values are secrets: never written to disk or a command line.
    secrets: tuple[str, ...] = ()
    # The environment's data folder on the host, kept across releases: replicas see it
    # at /data (DATA_DIR). None: no data folder.
    data_dir: str | None = None

    @property
    def plain_env(self) -> dict[str, str]:
        """`env` without the secrets."""
        return {name: value for name, value in self.env.items() if name not in self.secrets}

    @property
    def secret_env(self) -> dict[str, str]:
        return {name: value for name, value in self.env.items() if name in self.secrets}

    @property
    def replicas(self) -> int:
        return len(self.ports)


@dataclass(frozen=True)
class ReplicaStatus:
    index: int
    address: str  # host:port
    state: ReplicaState
    restarts: int = 0
    pid: int | None = None  # or a container id for container runtimes
    detail: str = ""


@dataclass(frozen=True)
class Saturation:
    cpu_seconds: float
    memory_bytes: int
    open_files: int


@dataclass(frozen=True)
class Backend:
    """A release as the router sees it: where its replicas listen, and its share."""

    release_id: str
    version: str  # what a pinning header or cookie names
    addresses: tuple[str, ...]  # host:port of each replica
    weight: int  # relative share, 0..100 across the route table


@dataclass(frozen=True)
class MatchRule:
    """Requests whose header (or cookie) has this value go to this release (A/B tests)."""

    release_id: str
    value: str
    header: str | None = None
    cookie: str | None = None

    def matches(self, headers: dict[str, str], cookies: dict[str, str]) -> bool:
        if self.header is not None:
            return headers.get(self.header.lower()) == self.value
        return self.cookie is not None and cookies.get(self.cookie) == self.value


@dataclass(frozen=True)
class RouteTable:
    backends: tuple[Backend, ...]
    # Checked after an explicit version pin, before stickiness and weights.
    matches: tuple[MatchRule, ...] = ()
    pin_header: str = "X-Conveyor-Version"
    pin_cookie: str = "conveyor-version"
    sticky_cookie: str | None = "conveyor-sticky"


@dataclass(frozen=True)
class ReleaseSignals:
    """The golden signals of one release, as counters since the router started."""

    release_id: str
    requests: int
    responses_4xx: int
    responses_5xx: int
    connect_failures: int
    # Cumulative latency histogram: upper bound (seconds) -> requests at or under it.
    latency_buckets: dict[float, int] = field(default_factory=dict)
    latency_sum: float = 0.0
    # Error-level lines in the replicas' logs (deploy/log_lines.py), counted by the reader
    # since it started: it restarts from zero on its own, not with the router.
    log_errors: int = 0


@dataclass(frozen=True)
class SignalSample:
    """One reading of a release's golden signals: the router's cumulative counters plus the
    saturation of its replicas at `ts`. Rates come from the difference of two samples."""

    environment: str
    release_id: str
    ts: float  # epoch seconds
    signals: ReleaseSignals
    saturation: Saturation | None  # None when the release is not running here
    weight: int  # its share of traffic when sampled, 0..100


@dataclass(frozen=True)
class SignalRates:
    """The golden signals of one release over a window between two samples."""

    release_id: str
    start: float
    end: float
    requests: int
    requests_per_second: float
    rate_4xx: float  # fraction of responses, 0..1
    rate_5xx: float
    p50: float | None  # seconds; None without requests in the window
    p95: float | None
    p99: float | None
    cpu_percent: float | None  # of one core, over the window
    memory_bytes: int | None
    open_files: int | None
    log_errors: int = 0  # error-level log lines over the window
    log_errors_per_second: float = 0.0
    log_error_share: float | None = None  # per request answered; None without requests
