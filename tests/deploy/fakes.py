"""In-memory stand-ins for the data plane, to drive rollouts without processes.

- `FakeClock`: time moves only when something sleeps; hooks fire at set times (a
  person's command, a crash, a rollback in the middle of a canary).
- `FakeRuntime`: releases start at once, ready, unless their version is `broken`.
- `FakeRouter`: serves `rps` requests a second of fake time, split by the route table's
  weights (and its A/B match rule), with an error rate per version; its counters are
  what the `router` metrics provider reads.
- `Stage`: one environment wired from them with a real ledger, and its controller.
- `ScriptedRuntime` and `ScriptedRouter`: the narrower script of counters and
  saturations the router metrics provider's arithmetic is tested with.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.deploy.controller import ReleaseController
from conveyor.deploy.locks import EnvironmentLock, FileLock
from conveyor.deploy.model import (
    Backend,
    ReleaseSignals,
    ReleaseSpec,
    ReplicaState,
    ReplicaStatus,
    RouteTable,
    Saturation,
)
from conveyor.deploy.rollout import DeployOutcome, Target, release_name
from conveyor.deploy.router_metrics import RouterProvider
from conveyor.deploy.routing import version_of
from conveyor.deploy.runtimes.tasks import TaskResult
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.spec.environments import Environment
from conveyor.spec.strategy import Analysis
from conveyor.states import DeployState
from conveyor.store.ledger import DeployLedger, EnvironmentRecord
from conveyor.store.procs import ProcessIdentity
from conveyor.store.records import EventKind
from conveyor.store.store import Store

INF = math.inf


def digest_of(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def version(name: str) -> str:
    """The version (as the router and pins name it) of the image `name`."""
    return version_of(digest_of(name))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self._hooks: list[tuple[float, Callable[[], None]]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        due = [hook for hook in self._hooks if hook[0] <= self.now]
        self._hooks = [hook for hook in self._hooks if hook[0] > self.now]
        for _, hook in sorted(due, key=lambda hook: hook[0]):
            hook()

    def after(self, seconds: float, hook: Callable[[], None]) -> None:
        """Run `hook` at the first sleep that ends `seconds` from now or later."""
        self._hooks.append((self.now + seconds, hook))


class FakeRuntime:
    name = "fake"

    def __init__(self, broken: set[str] | None = None) -> None:
        self.broken = broken or set()  # versions whose replicas crash at start
        self.running: dict[str, ReleaseSpec] = {}
        self.starts: list[str] = []  # every release started, in order
        # Tasks (release hooks) run, as (release id, argv, routed release ids then);
        # `task_results` scripts a task's exit code by its program (default 0; None: a
        # task killed at its timeout).
        self.tasks: list[tuple[str, list[str], list[str]]] = []
        self.task_results: dict[str, int | None] = {}
        self.routed: Callable[[], list[str]] = list

    def start(self, release: ReleaseSpec) -> list[ReplicaStatus]:
        if release.release_id not in self.running:  # idempotent, like the real ones
            self.starts.append(release.release_id)
            self.running[release.release_id] = release
        return self.status(release.release_id)

    def status(self, release_id: str) -> list[ReplicaStatus]:
        release = self.running.get(release_id)
        if release is None:
            return []
        broken = version_of(release.digest) in self.broken
        state = ReplicaState.CRASHED if broken else ReplicaState.READY
        return [
            ReplicaStatus(index, f"127.0.0.1:{port}", state, restarts=3 if broken else 0)
            for index, port in enumerate(release.ports)
        ]

    def wait_ready(self, release_id: str, timeout: float) -> list[ReplicaStatus]:
        statuses = self.status(release_id)
        if any(status.state is not ReplicaState.READY for status in statuses):
            raise ConveyorError(f"{release_id} is not ready after {timeout:g} s")
        return statuses

    def stop(self, release_id: str) -> None:
        self.running.pop(release_id, None)

    def replica_events(self, release_id: str) -> list[dict[str, Any]]:
        return []

    def releases(self) -> list[str]:
        return sorted(self.running)

    def run_task(
        self,
        release: ReleaseSpec,
        argv: Sequence[str],
        timeout: float,
        on_line: Callable[[str], None],
    ) -> TaskResult:
        self.tasks.append((release.release_id, list(argv), self.routed()))
        on_line(f"ran {argv[0]} with CONVEYOR_HOOK={release.env.get('CONVEYOR_HOOK')}")
        code = self.task_results.get(argv[0], 0)
        return TaskResult(code, timeout if code is None else 0.01, f"{argv[0]} said bye")

    def saturation(self, release_id: str) -> Saturation:
        if release_id not in self.running:
            raise NotFoundError(f"no release {release_id}")
        return Saturation(cpu_seconds=0.0, memory_bytes=1 << 20, open_files=8)


@dataclass
class _Served:
    requests: int = 0
    errors: float = 0.0  # fractional, so low rates add up exactly


class FakeRouter:
    name = "fake"

    def __init__(
        self, clock: FakeClock, error_rates: dict[str, float] | None = None, rps: float = 400
    ) -> None:
        self.clock = clock
        self.error_rates = error_rates or {}  # by version; the rest answer without errors
        self.rps = rps
        self.matching = 0.1  # the share of requests an A/B match rule matches
        self.table = RouteTable(backends=())
        self.tables: list[RouteTable] = []  # every table set, in order
        self._served: dict[str, _Served] = {}
        self._since = clock.monotonic()

    def ensure_running(self) -> str:
        return "http://127.0.0.1:9"

    def set_routes(self, routes: RouteTable) -> None:
        self._serve()
        self.table = routes
        self.tables.append(routes)

    def routes(self) -> RouteTable:
        return self.table

    def signals(self) -> list[ReleaseSignals]:
        self._serve()
        return [
            ReleaseSignals(
                release_id,
                served.requests,
                0,
                int(served.errors),
                0,
                {0.25: served.requests, INF: served.requests},
                latency_sum=served.requests * 0.01,
            )
            for release_id, served in sorted(self._served.items())
        ]

    def stop(self) -> None:
        pass

    def weights(self) -> dict[str, int]:
        return {backend.release_id: backend.weight for backend in self.table.backends}

    def _serve(self) -> None:
        """The requests of the fake time since the last look, as the table splits them."""
        now = self.clock.monotonic()
        total, self._since = self.rps * (now - self._since), now
        backends = {backend.release_id: backend for backend in self.table.backends}
        matched = 0.0
        for rule in self.table.matches:
            if rule.release_id in backends:
                matched = total * self.matching
                self._count(backends[rule.release_id], matched)
        weights = sum(backend.weight for backend in backends.values())
        for backend in backends.values():
            if weights and backend.weight:
                self._count(backend, (total - matched) * backend.weight / weights)

    def _count(self, backend: Backend, requests: float) -> None:
        served = self._served.setdefault(backend.release_id, _Served())
        rate = self.error_rates.get(backend.version.removesuffix("-baseline"), 0.0)
        served.requests += round(requests)
        served.errors += round(requests) * rate


@dataclass
class Stage:
    """The environment `staging` on a fake data plane, with a real ledger."""

    spec: Environment
    store: Store
    lock_path: Path
    clock: FakeClock = field(default_factory=FakeClock)
    runtime: FakeRuntime = field(default_factory=FakeRuntime)
    router: FakeRouter = field(init=False)
    said: list[str] = field(default_factory=list)  # what the controllers reported
    lock: EnvironmentLock | None = None  # the environment's lock; fcntl on lock_path if None

    def __post_init__(self) -> None:
        self.router = FakeRouter(self.clock)
        backends = lambda: self.router.routes().backends  # noqa: E731
        self.runtime.routed = lambda: [b.release_id for b in backends() if b.weight]

    def target(self, ledger: DeployLedger | None = None) -> Target:
        def provider(settings: Analysis) -> RouterProvider:
            return RouterProvider(
                self.router, self.runtime, environment="staging", clock=self.clock.monotonic
            )

        return Target(
            name="staging",
            spec=self.spec,
            runtime=self.runtime,
            router=self.router,
            ledger=ledger or self.store.ledger,
            lock=self.lock or FileLock("staging", self.lock_path),
            provider=provider,
            clock=self.clock,
        )

    def controller(self, ledger: DeployLedger | None = None) -> ReleaseController:
        return ReleaseController(self.target(ledger), self.said.append)

    def elsewhere(self) -> ReleaseController:
        """A controller in another (soon dead) process: what it leaves in progress, the
        next controller here adopts."""
        owner = ProcessIdentity(pid=2**22 + 1, host="elsewhere", started=None)
        return self.controller(DeployLedger.over(self.store.engine, owner))

    def deploy(self, image: str, controller: ReleaseController | None = None) -> DeployOutcome:
        return (controller or self.controller()).deploy("shop", digest_of(image), "tester")

    def release_id(self, image: str) -> str:
        return release_name("staging", "shop", digest_of(image))

    def environment(self) -> EnvironmentRecord:
        found = self.store.ledger.environments.get("staging")
        assert found is not None
        return found

    def command(self, command: str, actor: str = "alice") -> None:
        [deploy] = self.store.ledger.deploys.of_environment("staging", DeployState.IN_PROGRESS)
        self.store.ledger.deploys.add_command("staging", deploy.id, command, actor)

    def events(self, kind: EventKind) -> list[dict[str, Any]]:
        return [event.data for event in self.store.ledger.history.events("staging", (kind,))]


# -- scripted counters, for the router provider's arithmetic ----------------------------


class ScriptedRuntime:
    """A runtime whose only live part is `saturation`: the next scripted value, or
    NotFoundError when the script is empty (the release is not running here)."""

    name = "scripted"

    def __init__(self, *saturations: Saturation) -> None:
        self.saturations = list(saturations)

    def saturation(self, release_id: str) -> Saturation:
        if not self.saturations:
            raise NotFoundError(f"no release {release_id}")
        return self.saturations.pop(0)

    def start(self, release: ReleaseSpec) -> list[ReplicaStatus]:
        raise NotImplementedError

    def status(self, release_id: str) -> list[ReplicaStatus]:
        raise NotImplementedError

    def wait_ready(self, release_id: str, timeout: float) -> list[ReplicaStatus]:
        raise NotImplementedError

    def stop(self, release_id: str) -> None:
        raise NotImplementedError

    def replica_events(self, release_id: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def releases(self) -> list[str]:
        raise NotImplementedError


class ScriptedRouter:
    """A router whose `signals` are the next of a script."""

    name = "scripted"

    def __init__(self, *signals: list[ReleaseSignals]) -> None:
        self.script = list(signals)
        self.table = RouteTable(backends=(Backend("a", "A", ("127.0.0.1:9",), weight=90),))

    def signals(self) -> list[ReleaseSignals]:
        return self.script.pop(0)

    def routes(self) -> RouteTable:
        return self.table

    def ensure_running(self) -> str:
        raise NotImplementedError

    def set_routes(self, routes: RouteTable) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError
