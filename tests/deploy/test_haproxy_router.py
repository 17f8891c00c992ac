"""The haproxy router against a real HAProxy 2.6 on 127.0.0.1 (apt `haproxy`, needed in CI).

Replicas are tiny in-process HTTP servers that answer their own name; `/slow` answers
after a pause, `/missing` with 404 and `/boom` with 500.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conveyor.deploy.model import Backend, MatchRule, RouteTable
from conveyor.deploy.routers.haproxy import HAProxyRouter, render_config
from conveyor.errors import ConveyorError

pytestmark = [pytest.mark.real, pytest.mark.timeout(60)]

SLOW_SECONDS = 1.0
STATUS_BY_PATH = {"/missing": 404, "/boom": 500}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy closing idle keep-alive connections at stop is not an error


class Replica:
    """An HTTP server in a thread that answers its name; `slow_started` marks /slow."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.slow_started = threading.Event()
        replica = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once, no 40 ms stalls

            def do_GET(self) -> None:
                if self.path == "/slow":
                    replica.slow_started.set()
                    time.sleep(SLOW_SECONDS)
                body = replica.name.encode()
                self.send_response(STATUS_BY_PATH.get(self.path, 200))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output quiet

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def replicas() -> Iterator[Callable[[str], Replica]]:
    started: list[Replica] = []

    def start(name: str) -> Replica:
        started.append(Replica(name))
        return started[-1]

    yield start
    for replica in started:
        replica.close()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[HAProxyRouter]:
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed: apt-get install -y haproxy")
    router = HAProxyRouter(tmp_path / "hp", free_port(), free_port())
    router.ensure_running()
    try:
        yield router
    finally:
        router.stop()


def table(*backends: Backend, sticky: str | None = None) -> RouteTable:
    return RouteTable(backends=backends, sticky_cookie=sticky)


def release(name: str, weight: int, *replicas: Replica) -> Backend:
    return Backend(name, f"v-{name}", tuple(r.address for r in replicas), weight)


def hits(
    url: str, count: int, path: str = "/", headers: dict[str, str] | None = None
) -> Counter[str]:
    """Who answered `count` requests from a client that forgets cookies it is given."""
    answers: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=5.0, headers=headers) as client:
        for _ in range(count):
            answers[client.get(path).text] += 1
            client.cookies.clear()  # a sticky cookie would pin every later request
    return answers


def test_weights_are_honoured_over_1000_requests(
    router: HAProxyRouter, replicas: Callable[[str], Replica]
) -> None:
    router.set_routes(
        table(release("blue", 80, replicas("blue")), release("green", 20, replicas("green")))
    )
    with httpx.Client(base_url=router.url, timeout=5.0) as client:
        answers = Counter(client.get("/").text for _ in range(1000))

    assert abs(answers["blue"] / 10 - 80) <= 5
    assert abs(answers["green"] / 10 - 20) <= 5


def test_weights_are_split_over_replicas_and_read_back(
    router: HAProxyRouter, replicas: Callable[[str], Replica]
) -> None:
    blue = release("blue", 70, replicas("blue-0"), replicas("blue-1"), replicas("blue-2"))
    green = release("green", 30, replicas("green-0"))
    router.set_routes(table(blue, green))

    assert [b.weight for b in router.routes().backends] == [70, 30]
    answers = hits(router.url, 200)
    assert abs(sum(answers[f"blue-{i}"] for i in range(3)) - 140) <= 10
    assert {f"blue-{i}" for i in range(3)} <= set(answers)


def test_live_weight_change_needs_no_reload(
    router: HAProxyRouter, replicas: Callable[[str], Replica]
) -> None:
    blue, green = replicas("blue"), replicas("green")
    router.set_routes(table(release("blue", 100, blue), release("green", 0, green)))
    pid_before = router.pid()
    assert set(hits(router.url, 20)) == {"blue"}

    started = time.perf_counter()
    router.set_routes(table(release("blue", 0, blue), release("green", 100, green)))
    print(f"live weight change applied in {(time.perf_counter() - started) * 1000:.1f} ms")

    assert set(hits(router.url, 50)) == {"green"}
    assert router.pid() == pid_before
    assert [b.weight for b in router.routes().backends] == [0, 100]


def test_pinning_by_header_and_by_cookie_reaches_that_version(
    router: HAProxyRouter, replicas: Callable[[str], Replica]
) -> None:
    blue, green = replicas("blue"), replicas("green")
    router.set_routes(table(release("blue", 100, blue), release("green", 0, green)))

    assert set(hits(router.url, 10, headers={"X-Conveyor-Version": "v-green"})) == {"green"}
    assert set(hits(router.url, 10, headers={"Cookie": "conveyor-version=v-green"})) == {"green"}
    assert set(hits(router.url, 10, headers={"X-Conveyor-Version": "v-unknown"})) == {"blue"}


def test_sticky_cookie_keeps_a_client_on_its_replica(
    router: HAProxyRouter, replicas: Callable[[str], Replica]
) -> None:
    blue, green = replicas("blue"), replicas("green")
    router.set_routes(
        table(release("blue", 50, blue), release("green", 50, green), sticky="sticky")
    )

    with httpx.Client(base_url=router.url, timeout=5.0) as client:
        answers = Counter(client.get("/").text for _ in range(20))
        assert "sticky" in client.cookies

    assert len(answers) == 1
    assert set(hits(router.url, 20)) == {"blue", "green"}  # without the cookie: both


def test_adding_a_release_reloads_gracefully_and_finishes_requests_in_flight(
    router: HAProxyRouter, replicas: Callable[[str], Replica]
) -> None:
    blue, green = replicas("blue"), replicas("green")
    router.set_routes(table(release("blue", 100, blue)))
    pid_before = router.pid()

    with ThreadPoolExecutor(max_workers=4) as pool:
        in_flight = [pool.submit(httpx.get, f"{router.url}/slow", timeout=10.0) for _ in range(4)]
        assert blue.slow_started.wait(timeout=5.0)
        router.set_routes(table(release("blue", 0, blue), release("green", 100, green)))
        answers = [future.result() for future in in_flight]

    assert [(a.status_code, a.text) for a in answers] == [(200, "blue")] * 4
    assert router.pid() != pid_before
    assert set(hits(router.url, 20)) == {"green"}


def test_signals_count_the_requests_of_each_release(
    router: HAProxyRouter, replicas: Callable[[str], Replica]
) -> None:
    blue, green = replicas("blue"), replicas("green")
    router.set_routes(table(release("blue", 60, blue), release("green", 40, green)))
    sent = hits(router.url, 30) + hits(router.url, 3, "/missing") + hits(router.url, 2, "/boom")
    # A client's pins are its own choice: never judged, however many errors they carry.
    pinned = {"X-Conveyor-Version": "v-green"}
    assert hits(router.url, 5, "/boom", headers=pinned) == Counter({"green": 5})

    signals = {s.release_id: s for s in router.signals()}

    assert signals["blue"].requests == sent["blue"]
    assert signals["green"].requests == sent["green"]
    assert sum(s.responses_4xx for s in signals.values()) == 3
    assert sum(s.responses_5xx for s in signals.values()) == 2
    assert all(s.connect_failures == 0 for s in signals.values())


def test_ab_matched_requests_are_judged_and_pinned_ones_are_not(
    router: HAProxyRouter, replicas: Callable[[str], Replica]
) -> None:
    blue, green = replicas("blue"), replicas("green")
    routes = RouteTable(
        backends=(release("blue", 100, blue), release("green", 0, green)),
        matches=(MatchRule("green", "yes", header="X-Beta"),),
    )
    router.set_routes(routes)

    assert hits(router.url, 4, headers={"X-Beta": "yes"}) == Counter({"green": 4})
    assert hits(router.url, 6, headers={"X-Conveyor-Version": "v-green"}) == Counter({"green": 6})

    assert {s.release_id: s.requests for s in router.signals()}.get("green") == 4


def test_signals_survive_a_reload(
    router: HAProxyRouter, replicas: Callable[[str], Replica]
) -> None:
    blue = replicas("blue")
    router.set_routes(table(release("blue", 100, blue)))
    hits(router.url, 7)
    router.set_routes(table(release("blue", 100, blue), release("green", 0, replicas("green"))))
    hits(router.url, 5)

    assert {s.release_id: s.requests for s in router.signals()}["blue"] == 12


def test_connection_failures_are_counted(router: HAProxyRouter) -> None:
    router.set_routes(table(Backend("gone", "v1", (f"127.0.0.1:{free_port()}",), 100)))
    assert httpx.get(router.url, timeout=10.0).status_code == 503  # HAProxy answers itself

    assert router.signals()[0].connect_failures >= 1


def test_generated_config_passes_haproxy_check(tmp_path: Path) -> None:
    routes = RouteTable(
        backends=(
            Backend("shop-a1", "1.0", ("127.0.0.1:9001", "127.0.0.1:9002"), 90),
            Backend("shop-b2", "1.1", ("127.0.0.1:9003",), 10),
        )
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(routes, port=8080, admin_port=8081, socket_path=tmp_path / "s"))

    result = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], check=False, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    text = config.read_text()
    assert "server shop-a1__1 127.0.0.1:9002 weight 90 cookie shop-a1__1" in text
    assert 'cookie conveyor-sticky insert indirect nocache httponly attr "SameSite=Lax"' in text


def test_ab_match_rules_route_by_header_and_cookie_after_version_pins(tmp_path: Path) -> None:
    routes = RouteTable(
        backends=(
            Backend("shop-a1", "1.0", ("127.0.0.1:9001",), 100),
            Backend("shop-b2", "1.1", ("127.0.0.1:9003",), 0),
        ),
        matches=(
            MatchRule("shop-b2", "yes", header="X-Beta"),
            MatchRule("shop-b2", "on", cookie="beta"),
        ),
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(routes, port=8080, admin_port=8081, socket_path=tmp_path / "s"))

    result = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], check=False, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    rules = [line.strip() for line in config.read_text().splitlines() if "use_backend" in line]
    assert rules[-2:] == [
        "use_backend match_shop-b2 if { req.hdr(X-Beta) -m str yes }",
        "use_backend match_shop-b2 if { req.cook(beta) -m str on }",
    ]


def test_an_ab_match_to_an_unknown_release_is_refused(tmp_path: Path) -> None:
    router = HAProxyRouter(tmp_path, free_port(), free_port())
    backends = (Backend("shop-a1", "1.0", ("127.0.0.1:9001",), 100),)
    with pytest.raises(ConveyorError, match="unknown"):
        router.set_routes(RouteTable(backends, matches=(MatchRule("gone", "yes", header="X"),)))
    assert router.pid() is None


@pytest.mark.parametrize(
    "backend",
    [
        Backend("shop", "1.0 or 1", ("127.0.0.1:9001",), 50),
        Backend("shop", "1.0", ("127.0.0.1:9001 backup",), 50),
        Backend("shop", "1.0", ("127.0.0.1:9001",), 101),
    ],
)
def test_unsafe_routes_are_refused_before_haproxy_sees_them(
    tmp_path: Path, backend: Backend
) -> None:
    router = HAProxyRouter(tmp_path, free_port(), free_port())
    with pytest.raises(ConveyorError):
        router.set_routes(RouteTable(backends=(backend,)))
    assert router.pid() is None


def test_a_pid_file_naming_another_program_is_not_haproxy_and_stop_spares_it(
    tmp_path: Path,
) -> None:
    """A stale pid file whose pid was reused by another program: the router is not running,
    and `stop` never signals that program."""
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        router = HAProxyRouter(tmp_path / "router", free_port(), free_port())
        router.state_dir.mkdir()
        router.pid_path.write_text(f"{stranger.pid}\n")

        assert router.pid() is None
        router.stop()
        assert stranger.poll() is None  # still running: never sent SIGTERM
    finally:
        stranger.kill()
        stranger.wait()
