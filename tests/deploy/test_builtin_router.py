"""The builtin router: a real proxy process on 127.0.0.1 in front of small real backends."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.deploy.model import MatchRule, RouteTable
from conveyor.deploy.routers.builtin import BuiltinRouter
from conveyor.errors import ConveyorError
from deploy.named_servers import Backends, NamedServer, backend, free_port, named_backends


@pytest.fixture
def backends() -> Iterator[Backends]:
    with named_backends() as started:
        yield started


@pytest.fixture
def router(tmp_path: Path, backends: object) -> Iterator[BuiltinRouter]:
    # Depends on `backends` so that the proxy stops before the backends it holds open.
    router = BuiltinRouter(tmp_path / "router", free_port(), free_port())
    router.ensure_running()
    yield router
    router.stop()


def hits(client: httpx.Client, count: int, path: str = "/") -> Counter[str]:
    return Counter(client.get(path).text for _ in range(count))


@pytest.mark.real
def test_an_empty_table_answers_503(router: BuiltinRouter) -> None:
    assert httpx.get(router.url).status_code == 503


@pytest.mark.real
def test_set_routes_is_in_force_when_it_returns(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    table = RouteTable(backends=(backend("a", backends("a"), "127.0.0.1:9", weight=100),))
    router.set_routes(table)
    assert router.routes() == table


@pytest.mark.real
def test_weights_split_the_traffic(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    table = RouteTable(
        backends=(backend("a", backends("a"), weight=90), backend("b", backends("b"), weight=10)),
        sticky_cookie=None,
    )
    router.set_routes(table)
    with httpx.Client(base_url=router.url) as client:
        counts = hits(client, 1000)
    assert counts["a"] + counts["b"] == 1000
    assert 850 <= counts["a"] <= 950


@pytest.mark.real
def test_round_robin_across_the_replicas_of_a_release(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    router.set_routes(
        RouteTable(backends=(backend("a", backends("a1"), backends("a2"), weight=1),))
    )
    with httpx.Client(base_url=router.url) as client:
        assert hits(client, 10) == {"a1": 5, "a2": 5}


@pytest.mark.real
def test_a_version_is_pinned_by_header_or_cookie(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    table = RouteTable(
        backends=(backend("a", backends("a"), weight=100), backend("b", backends("b"), weight=0))
    )
    router.set_routes(table)
    assert httpx.get(router.url).text == "a"
    assert httpx.get(router.url, headers={"X-Conveyor-Version": "B"}).text == "b"
    assert httpx.get(router.url, headers={"Cookie": "conveyor-version=B"}).text == "b"


@pytest.mark.real
def test_ab_matches_route_by_header_or_cookie_value_and_a_pin_wins(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    table = RouteTable(
        backends=(backend("a", backends("a"), weight=100), backend("b", backends("b"), weight=0)),
        matches=(
            MatchRule("b", "yes", header="X-Beta"),
            MatchRule("b", "on", cookie="beta"),
        ),
    )
    router.set_routes(table)
    assert httpx.get(router.url, headers={"X-Beta": "yes"}).text == "b"
    assert httpx.get(router.url, headers={"X-Beta": "no"}).text == "a"
    assert httpx.get(router.url, headers={"Cookie": "beta=on"}).text == "b"
    pinned = {"X-Beta": "yes", "X-Conveyor-Version": "A"}
    assert httpx.get(router.url, headers=pinned).text == "a"


@pytest.mark.real
def test_a_sticky_cookie_keeps_a_client_on_its_release_while_it_has_weight(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    a, b = backends("a"), backends("b")
    router.set_routes(RouteTable(backends=(backend("a", a, weight=50), backend("b", b, weight=50))))
    with httpx.Client(base_url=router.url) as client:
        first = client.get("/")
        assert first.headers["set-cookie"].startswith(f"conveyor-sticky={first.text}")
        assert "HttpOnly" in first.headers["set-cookie"]
        assert "SameSite=Lax" in first.headers["set-cookie"]
        assert hits(client, 30) == {first.text: 30}
        other = "b" if first.text == "a" else "a"
        weights = {first.text: 0, other: 100}
        router.set_routes(
            RouteTable(
                backends=(
                    backend("a", a, weight=weights["a"]),
                    backend("b", b, weight=weights["b"]),
                )
            )
        )
        assert hits(client, 5) == {other: 5}


@pytest.mark.real
def test_switching_weights_drains_requests_in_flight(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    old, new = backends("old"), backends("new")
    router.set_routes(
        RouteTable(backends=(backend("old", old, weight=100), backend("new", new, weight=0)))
    )
    results: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: results.append(httpx.get(f"{router.url}/sleep/1", timeout=10))
    )
    slow.start()
    time.sleep(0.2)  # lets the slow request reach the old backend first
    router.set_routes(
        RouteTable(backends=(backend("old", old, weight=0), backend("new", new, weight=100)))
    )
    assert httpx.get(router.url).text == "new"
    slow.join()
    assert [(r.status_code, r.text) for r in results] == [(200, "old")]


@pytest.mark.real
def test_only_idempotent_requests_are_retried_after_a_refused_connection(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    refused = f"127.0.0.1:{free_port()}"
    # Round robin starts on the refusing replica, then alternates.
    router.set_routes(RouteTable(backends=(backend("a", refused, backends("live"), weight=100),)))
    with httpx.Client(base_url=router.url) as client:
        retried_get = client.get("/")  # refused, retried on the live replica
        post = client.post("/", content=b"order")  # refused: not retried
        direct_post = client.post("/", content=b"order")  # the live replica
    assert (retried_get.status_code, retried_get.text) == (200, "live")
    assert post.status_code == 502
    assert (direct_post.status_code, direct_post.text) == (200, "live:order")
    [signals] = router.signals()
    assert signals.connect_failures == 2


@pytest.mark.real
def test_a_chunked_request_body_is_relayed(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    router.set_routes(RouteTable(backends=(backend("a", backends("a"), weight=100),)))
    with httpx.Client(base_url=router.url) as client:
        chunked = client.post("/", content=iter([b"two ", b"chunks"]))
        sized = client.post("/", content=b"then a sized one")
    assert (chunked.status_code, chunked.text) == (200, "a:two chunks")
    assert (sized.status_code, sized.text) == (200, "a:then a sized one")


@pytest.mark.real
def test_metrics_count_requests_per_release_and_status_class(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    router.set_routes(RouteTable(backends=(backend("a", backends("a"), weight=100),)))
    with httpx.Client(base_url=router.url) as client:
        for _ in range(7):
            client.get("/")
        for _ in range(3):
            client.get("/status/503")
        client.get("/status/404")
    exposition = httpx.get(f"http://127.0.0.1:{router.admin_port}/-/metrics").text
    families = {family.name for family in text_string_to_metric_families(exposition)}
    assert {
        "conveyor_router_requests",
        "conveyor_router_connect_failures",
        "conveyor_router_request_duration_seconds",
    } <= families
    [signals] = router.signals()
    assert (signals.release_id, signals.requests) == ("a", 11)
    assert (signals.responses_4xx, signals.responses_5xx, signals.connect_failures) == (1, 3, 0)
    assert signals.latency_buckets[float("inf")] == 11
    assert sorted(signals.latency_buckets)[0] == 0.005


@pytest.mark.real
def test_the_metrics_pass_promtool(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required: apt-get install -y prometheus"
    router.set_routes(RouteTable(backends=(backend("a", backends("a"), weight=100),)))
    httpx.get(router.url)
    exposition = httpx.get(f"http://127.0.0.1:{router.admin_port}/-/metrics").content
    check = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_router_outlives_the_process_that_started_it(
    tmp_path: Path, backends: Callable[[str], NamedServer]
) -> None:
    state_dir, port, admin_port = tmp_path / "router", free_port(), free_port()
    table = RouteTable(backends=(backend("a", backends("a"), weight=100),))
    starter = (
        "import sys; from pathlib import Path;"
        "from conveyor.deploy.routers.builtin import BuiltinRouter, routes_from_json;"
        f"r = BuiltinRouter(Path(sys.argv[1]), {port}, {admin_port});"
        "r.ensure_running(); r.set_routes(routes_from_json(sys.argv[2]))"
    )
    from conveyor.deploy.routers.builtin import routes_to_json

    router = BuiltinRouter(state_dir, port, admin_port)
    try:
        subprocess.run(
            [sys.executable, "-c", starter, str(state_dir), routes_to_json(table).decode()],
            check=True,
            timeout=30,
        )
        assert httpx.get(router.url).text == "a"
        assert router.ensure_running() == router.url  # finds the running proxy
        assert router.routes() == table
    finally:
        router.stop()


def test_a_port_in_use_is_named_in_the_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        router = BuiltinRouter(tmp_path / "router", port, free_port())
        with pytest.raises(ConveyorError, match=f"port {port} is already in use"):
            router.ensure_running()


@pytest.mark.real
def test_a_stale_pid_file_restarts_the_router_with_its_last_routes(
    router: BuiltinRouter, backends: Callable[[str], NamedServer]
) -> None:
    table = RouteTable(backends=(backend("a", backends("a"), weight=100),))
    router.set_routes(table)
    router.stop()
    (router.state_dir / "router.pid").write_text("999999\n")  # no such process
    router.ensure_running()
    assert router.routes() == table
    assert httpx.get(router.url).text == "a"
