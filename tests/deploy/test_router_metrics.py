"""The router provider: counts per release from a real builtin router's counters, and
its arithmetic (restarts, saturation) over scripted counters."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.analysis.model import Absolute, Counts
from conveyor.analysis.providers.base import MetricsProvider
from conveyor.deploy.model import (
    Backend,
    ReleaseSignals,
    RouteTable,
    Saturation,
    SignalSample,
)
from conveyor.deploy.router_metrics import RouterProvider
from conveyor.deploy.routers.builtin import BuiltinRouter
from conveyor.errors import ConveyorError
from deploy.fakes import ScriptedRouter, ScriptedRuntime
from deploy.test_builtin_router import NamedServer, free_port

INF = math.inf


def counters(requests: int, errors: int = 0, fast: int | None = None) -> list[ReleaseSignals]:
    """Release a's cumulative counters: `fast` requests (default all) within 0.25 s."""
    within = requests if fast is None else fast
    buckets = {0.1: within, 0.25: within, 1.0: requests, INF: requests}
    return [ReleaseSignals("a", requests, 0, errors, 0, buckets, latency_sum=requests * 0.1)]


def ticking_clock(step: float = 10.0) -> Callable[[], float]:
    ticks = itertools.count()
    return lambda: 1000.0 + step * next(ticks)


# -- against a real builtin router --------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[NamedServer]:
    """Answers its name; `/sleep/SECONDS` waits first, `/status/CODE` answers CODE."""
    server = NamedServer("a")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def router(tmp_path: Path, upstream: NamedServer) -> Iterator[BuiltinRouter]:
    # Depends on `upstream` so that the proxy stops before the upstream it holds open.
    router = BuiltinRouter(tmp_path / "router", free_port(), free_port())
    router.ensure_running()
    yield router
    router.stop()


def route(router: BuiltinRouter, *addresses: str) -> None:
    router.set_routes(RouteTable(backends=(Backend("a", "A", addresses, weight=100),)))


def get(router: BuiltinRouter, *paths: str) -> None:
    with httpx.Client(base_url=router.url, timeout=10.0) as client:
        for path in paths:
            client.get(path)


@pytest.mark.real
def test_counts_are_the_requests_and_5xx_answers_since_the_previous_reading(
    router: BuiltinRouter, upstream: NamedServer
) -> None:
    route(router, upstream.address)
    provider = RouterProvider(router, ScriptedRuntime())
    provider.start(["a", "not-routed-yet"], latency_threshold=0.5)
    get(router, *["/"] * 7, *["/status/503"] * 3, "/status/404")
    first = provider.read()
    get(router, "/", "/status/500")
    second = provider.read()
    assert first["a"].counts == Counts(requests=11, errors=3, slow=0)
    assert second["a"].counts == Counts(requests=2, errors=1, slow=0)
    assert first["not-routed-yet"].counts == second["not-routed-yet"].counts == Counts()
    assert first["not-routed-yet"].absolute == Absolute()
    assert first["a"].absolute.cpu_percent is None  # the runtime does not run it


@pytest.mark.real
def test_slow_counts_the_requests_over_the_threshold_rounded_up_to_a_bucket(
    router: BuiltinRouter, upstream: NamedServer
) -> None:
    route(router, upstream.address)
    provider = RouterProvider(router, ScriptedRuntime())
    provider.start(["a"], latency_threshold=0.2)
    get(router, "/", "/sleep/0.3", "/", "/sleep/0.3", "/")
    [reading] = provider.read().values()
    assert provider.latency_bound == 0.25
    assert reading.counts == Counts(requests=5, errors=0, slow=2)
    assert reading.absolute.p99 is not None
    assert 0.25 < reading.absolute.p99 <= 0.5
    assert reading.seconds > 0


@pytest.mark.real
def test_a_failed_connection_is_a_failed_request_even_when_retried_elsewhere(
    router: BuiltinRouter, upstream: NamedServer
) -> None:
    # Round robin starts on the refusing replica; the router retries the GET on the other.
    route(router, f"127.0.0.1:{free_port()}", upstream.address)
    provider = RouterProvider(router, ScriptedRuntime())
    provider.start(["a"], latency_threshold=0.5)
    get(router, "/")
    assert provider.read()["a"].counts == Counts(requests=2, errors=1, slow=0)


# -- over scripted counters -------------------------------------------------------------


def test_a_router_restart_makes_the_newer_counters_the_whole_increase() -> None:
    router = ScriptedRouter(counters(100, 4), counters(130, 5, fast=120), counters(20, 1))
    provider = RouterProvider(router, ScriptedRuntime(), clock=ticking_clock())
    provider.start(["a"], latency_threshold=0.25)
    before_restart, after_restart = provider.read(), provider.read()
    assert before_restart["a"].counts == Counts(requests=30, errors=1, slow=10)
    assert after_restart["a"].counts == Counts(requests=20, errors=1, slow=0)


def test_cpu_is_the_share_of_one_core_over_the_window_and_memory_the_latest() -> None:
    runtime = ScriptedRuntime(
        Saturation(cpu_seconds=50.0, memory_bytes=100, open_files=3),
        Saturation(cpu_seconds=55.0, memory_bytes=300, open_files=4),
        Saturation(cpu_seconds=1.0, memory_bytes=200, open_files=4),  # replicas restarted
    )
    router = ScriptedRouter(counters(0), counters(10), counters(20))
    provider = RouterProvider(router, runtime, clock=ticking_clock(step=10.0))
    provider.start(["a"], latency_threshold=1.0)
    first, second = provider.read()["a"], provider.read()["a"]
    assert (first.seconds, first.absolute.cpu_percent, first.absolute.memory_bytes) == (
        10.0,
        50.0,
        300,
    )
    assert (second.absolute.cpu_percent, second.absolute.memory_bytes) == (10.0, 200)


def test_every_sample_goes_to_the_callback_with_its_environment_and_weight() -> None:
    recorded: list[list[SignalSample]] = []
    router = ScriptedRouter(counters(1), counters(4))
    provider: MetricsProvider = RouterProvider(
        router,
        ScriptedRuntime(),
        environment="production",
        on_sample=recorded.append,
        clock=ticking_clock(),
    )
    provider.start(["a"], latency_threshold=0.1)
    provider.read()
    assert [[(s.environment, s.release_id, s.weight, s.ts) for s in b] for b in recorded] == [
        [("production", "a", 90, 1000.0)],
        [("production", "a", 90, 1010.0)],
    ]
    assert [batch[0].signals.requests for batch in recorded] == [1, 4]


@pytest.mark.parametrize("threshold", [0.0, 30.0])
def test_a_threshold_outside_the_histogram_is_a_clear_error(threshold: float) -> None:
    provider = RouterProvider(ScriptedRouter(counters(0)), ScriptedRuntime())
    with pytest.raises(ConveyorError, match="outside the router's latency histogram"):
        provider.start(["a"], latency_threshold=threshold)
