"""The prometheus provider against a real Prometheus scraping a real builtin router."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from analysis import prometheus_fixture
from analysis.prometheus_fixture import PrometheusServer, StartPrometheus
from conveyor.analysis.model import Counts
from conveyor.analysis.providers.prometheus import PrometheusProvider
from conveyor.deploy.model import Backend, RouteTable
from conveyor.deploy.routers.builtin import BuiltinRouter
from conveyor.errors import ConveyorError
from conveyor.spec.strategy import PrometheusQueries
from deploy.test_builtin_router import NamedServer, free_port

pytestmark = [pytest.mark.real, pytest.mark.timeout(60)]
prometheus = prometheus_fixture.prometheus

REQUESTS = 'sum(increase(conveyor_router_requests_total{{release="{release}"}}[{window}]))'
ERRORS = (
    'sum(increase(conveyor_router_requests_total{{release="{release}",code="5xx"}}[{window}]))'
    ' + (sum(increase(conveyor_router_connect_failures_total{{release="{release}"}}[{window}]))'
    " or vector(0))"
)
SLOW = (
    "sum(increase(conveyor_router_request_duration_seconds_count"
    '{{release="{release}"}}[{window}]))'
    " - sum(increase(conveyor_router_request_duration_seconds_bucket"
    '{{release="{release}",le="{threshold}"}}[{window}]))'
)
# One round of the steady traffic: 6 answered, 2 errors, 1 slower than 0.25 s.
ROUND = ("/", "/", "/status/503", "/", "/", "/sleep/0.3", "/", "/status/503", "/")


def queries(url: str, requests: str = REQUESTS, errors: str = ERRORS) -> PrometheusQueries:
    return PrometheusQueries(url=url, requests=requests, errors=errors, slow=SLOW)


@dataclass
class SteadyTraffic:
    """Sends ROUND after ROUND through the router and notes when each request finished."""

    url: str
    sent: list[tuple[float, str]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self.stopping.is_set():
                for path in ROUND:
                    client.get(path)
                    self.sent.append((time.time(), path))

    def counts(self, start: float, end: float) -> Counts:
        paths = [path for finished, path in list(self.sent) if start <= finished < end]
        return Counts(
            requests=len(paths),
            errors=paths.count("/status/503"),
            slow=paths.count("/sleep/0.3"),
        )


@pytest.fixture
def router(tmp_path: Path) -> Iterator[BuiltinRouter]:
    """A builtin router sending release `a` to a small upstream."""
    upstream = NamedServer("a")
    thread = threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    router = BuiltinRouter(tmp_path / "router", free_port(), free_port())
    try:
        router.ensure_running()
        router.set_routes(
            RouteTable(backends=(Backend("a", "A", (upstream.address,), weight=100),))
        )
        yield router
    finally:
        router.stop()
        upstream.shutdown()
        upstream.server_close()
        thread.join()


@pytest.fixture
def traffic(router: BuiltinRouter) -> Iterator[SteadyTraffic]:
    traffic = SteadyTraffic(router.url)
    thread = threading.Thread(target=traffic.run)
    thread.start()
    yield traffic
    traffic.stopping.set()
    thread.join()


@pytest.fixture
def scraping(prometheus: StartPrometheus, router: BuiltinRouter) -> PrometheusServer:
    return prometheus([f"127.0.0.1:{router.admin_port}"], metrics_path="/-/metrics")


def test_counts_match_the_traffic_sent_within_the_window(
    scraping: PrometheusServer, traffic: SteadyTraffic
) -> None:
    # Every series must have been scraped before the window opens: increase() cannot
    # count what happened before a series' first sample.
    scraping.wait_for_scrape_after(time.time() + 0.5)
    provider = PrometheusProvider(queries(scraping.url), "staging", scrape_interval=1.0)
    provider.start(["a", "never-routed"], latency_threshold=0.25)
    window_start = time.time()
    time.sleep(4.2)
    readings = provider.read()
    assert readings["a"].seconds >= 4.0
    assert readings["a"].seconds.is_integer()
    assert readings["never-routed"].counts == Counts()
    sent = traffic.counts(window_start, window_start + readings["a"].seconds)
    counted = readings["a"].counts
    # increase() extrapolates the samples inside the window to its edges.
    assert counted.requests == pytest.approx(sent.requests, rel=0.25, abs=2)
    assert counted.errors == pytest.approx(sent.errors, rel=0.25, abs=2)
    assert counted.slow == pytest.approx(sent.slow, rel=0.25, abs=2)
    assert sent.slow >= 5  # the traffic really covered the window


def test_a_read_sooner_than_two_scrapes_is_deferred_to_the_next_window(
    prometheus: StartPrometheus,
) -> None:
    provider = PrometheusProvider(queries(prometheus([]).url), "staging", scrape_interval=1.0)
    provider.start(["a"], latency_threshold=0.25)
    [deferred] = provider.read().values()
    time.sleep(2.1)
    [covered] = provider.read().values()
    assert (deferred.counts, deferred.seconds) == (Counts(), 0.0)
    assert covered.seconds >= 2.0
    assert covered.seconds.is_integer()


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ("sum(increase(", "Prometheus rejected the requests query 'sum\\(increase\\(': .*parse"),
        ("up[1m]", "returned a matrix that is not one finite number"),
    ],
)
def test_a_bad_query_names_the_query_and_prometheus_error(
    prometheus: StartPrometheus, requests: str, message: str
) -> None:
    server = prometheus([])
    provider = PrometheusProvider(queries(server.url, requests=requests), "staging")
    with pytest.raises(ConveyorError, match=message):
        provider.start(["a"], latency_threshold=0.25)


def test_an_unknown_placeholder_is_a_clear_error() -> None:
    provider = PrometheusProvider(queries("http://127.0.0.1:9", errors="x{rel}"), "staging")
    with pytest.raises(
        ConveyorError, match=r"errors query .x\{rel\}. cannot be filled in"
    ) as error:
        provider.start(["a"], latency_threshold=0.25)
    assert error.value.hint is not None
    assert "{release}" in error.value.hint


def test_an_unreachable_prometheus_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    provider = PrometheusProvider(queries(url), "staging")
    with pytest.raises(ConveyorError, match=f"cannot reach Prometheus at {url}"):
        provider.start(["a"], latency_threshold=0.25)


def test_a_server_that_is_not_prometheus_is_a_clear_error(prometheus: StartPrometheus) -> None:
    url = f"{prometheus([]).url}/not-the-api"
    provider = PrometheusProvider(queries(url), "staging")
    with pytest.raises(ConveyorError, match="did not answer like a Prometheus server"):
        provider.start(["a"], latency_threshold=0.25)
