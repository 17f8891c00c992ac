"""The builtin router against hostile clients: smuggling, forward-proxy targets,
hop-by-hop headers, slow and idle connections, too many connections, WebSocket
upgrades, and pinned traffic kept out of what the judge reads.

Raw sockets, so that the bytes on the wire are exactly the attack's; the proxy is the
real daemon with short limits.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.deploy.model import RouteTable
from conveyor.deploy.routers.builtin import BuiltinRouter
from conveyor.deploy.routers.client_limits import ClientLimits
from deploy.named_servers import Backends, NamedServer, backend, free_port, named_backends

SHORT = ClientLimits(header_timeout=0.5, body_timeout=0.5, idle_timeout=0.5, max_connections=20)
# Default timeouts: where a loaded machine must not close a kept-alive client between two
# of its requests, or where only the connection limit may make room.
CALM = ClientLimits(max_connections=20)


@pytest.fixture
def backends() -> Iterator[Backends]:
    with named_backends() as started:
        yield started


def start_router(path: Path, limits: ClientLimits) -> BuiltinRouter:
    router = BuiltinRouter(path, free_port(), free_port(), limits)
    router.ensure_running()
    return router


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[BuiltinRouter, NamedServer]]:
    """One router and backend for the tests that read only what the backend saw."""
    with named_backends() as backends, tempfile.TemporaryDirectory() as folder:
        router = start_router(Path(folder) / "router", SHORT)
        server = backends("a")
        router.set_routes(RouteTable(backends=(backend("a", server, weight=100),)))
        try:
            yield router, server
        finally:
            router.stop()


@pytest.fixture
def router(shared: tuple[BuiltinRouter, NamedServer]) -> BuiltinRouter:
    return shared[0]


@pytest.fixture
def app(shared: tuple[BuiltinRouter, NamedServer]) -> NamedServer:
    shared[1].seen.clear()
    return shared[1]


@pytest.fixture
def fresh_router(tmp_path: Path, backends: Backends) -> Iterator[BuiltinRouter]:
    """A router of its own, for tests that read its counters or change its routes."""
    router = start_router(tmp_path / "router", SHORT)
    yield router
    router.stop()


@pytest.fixture
def calm_router(tmp_path: Path, backends: Backends) -> Iterator[BuiltinRouter]:
    router = start_router(tmp_path / "router", CALM)
    yield router
    router.stop()


@pytest.fixture
def fresh_app(fresh_router: BuiltinRouter, backends: Backends) -> NamedServer:
    server = backends("a")
    fresh_router.set_routes(RouteTable(backends=(backend("a", server, weight=100),)))
    return server


def connect(router: BuiltinRouter) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", router.port), timeout=3)
    return sock


def read_all(sock: socket.socket, seconds: float = 3.0) -> bytes:
    """Everything until the proxy closes the connection (fails the test after `seconds`)."""
    sock.settimeout(seconds)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def exchange(router: BuiltinRouter, raw: bytes) -> bytes:
    with connect(router) as sock:
        sock.sendall(raw)
        return read_all(sock)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def proxy_descriptors(router: BuiltinRouter) -> int:
    pid = int((router.state_dir / "router.pid").read_text())
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- request smuggling and framing --------------------------------------------------------

# TE.CL: the proxy reads one chunked body; a backend that trusts Content-Length reads
# "5c\r\n" as the body and the rest as a second request, answered to the next client
# of the pooled connection.
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nx="
CL_TE = (
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    + f"{len(SMUGGLED):x}\r\n".encode()
    + SMUGGLED
    + b"\r\n0\r\n\r\n"
)


@pytest.mark.real
def test_a_request_framed_by_both_content_length_and_transfer_encoding_is_refused(
    router: BuiltinRouter, app: NamedServer
) -> None:
    response = exchange(router, CL_TE)
    assert status_of(response) == 400
    assert b"both Content-Length and Transfer-Encoding" in response
    # The next client on (what would be) the pooled connection gets its own answer.
    assert httpx.get(f"{router.url}/next").text == "a"
    assert [seen.request_line for seen in app.seen] == ["GET /next HTTP/1.1"]


@pytest.mark.real
@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            501,
        ),
        (b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ],
    ids=[
        "two-lengths",
        "length-list",
        "signed-length",
        "te-gzip-chunked",
        "te-chunked-not-final",
        "te-identity",
        "te-twice",
        "te-in-http-1.0",
        "two-hosts",
        "space-before-colon",
    ],
)
def test_ambiguous_framing_is_refused_and_never_forwarded(
    router: BuiltinRouter, app: NamedServer, head: bytes, status: int
) -> None:
    response = exchange(router, head + b"hello")
    assert status_of(response) == status
    assert b"connection: close" in response.lower()
    assert app.seen == []


@pytest.mark.real
@pytest.mark.parametrize(
    "request_line",
    [
        b"GET http://evil.example/ HTTP/1.1",
        b"GET https://a/ HTTP/1.1",
        b"CONNECT evil.example:443 HTTP/1.1",
        b"GET * HTTP/1.1",
        b"GET evil HTTP/1.1",
    ],
)
def test_targets_other_than_origin_form_are_refused(
    router: BuiltinRouter, app: NamedServer, request_line: bytes
) -> None:
    response = exchange(router, request_line + b"\r\nHost: a\r\n\r\n")
    assert status_of(response) == 400
    assert b"only origin-form targets" in response
    assert app.seen == []


@pytest.mark.real
def test_options_asterisk_is_forwarded(router: BuiltinRouter, app: NamedServer) -> None:
    with connect(router) as sock:
        sock.sendall(b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        response = read_all(sock)
    assert (status_of(response), response[-1:]) == (200, b"a")
    assert [seen.request_line for seen in app.seen] == ["OPTIONS * HTTP/1.1"]


# -- headers --------------------------------------------------------------------------------


@pytest.mark.real
def test_hop_by_hop_headers_stop_at_the_proxy(router: BuiltinRouter, app: NamedServer) -> None:
    response = httpx.get(
        router.url,
        headers={
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "only for the proxy",
            "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Trailer": "X-Checksum",
            "Upgrade": "h2c",  # not named in Connection: no upgrade asked
            "X-Kept": "yes",
        },
    )
    assert response.text == "a"
    [seen] = app.seen
    for name in (
        "x-secret",
        "proxy-authorization",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ):
        assert name not in seen.headers, name
    assert seen.headers["x-kept"] == "yes"
    assert "x-secret" not in seen.headers.get("connection", "").lower()


@pytest.mark.real
def test_connection_cannot_remove_host_or_the_proxys_forwarded_headers(
    router: BuiltinRouter, app: NamedServer
) -> None:
    response = exchange(
        router,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, Host, X-Forwarded-For\r\n\r\n",
    )
    assert (status_of(response), response[-1:]) == (200, b"a")
    [seen] = app.seen
    assert seen.headers["host"] == "a"
    assert seen.headers["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.real
def test_hop_by_hop_response_headers_stop_at_the_proxy(
    router: BuiltinRouter, app: NamedServer
) -> None:
    response = httpx.get(f"{router.url}/hop")
    assert response.text == "a"
    for name in ("x-internal", "proxy-authenticate", "keep-alive"):
        assert name not in response.headers, name


@pytest.mark.real
def test_a_request_body_is_reframed_for_the_backend(
    router: BuiltinRouter, app: NamedServer
) -> None:
    chunked = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    assert exchange(router, chunked).endswith(b"a:hello")
    [seen] = app.seen
    assert "content-length" not in seen.headers
    assert seen.headers["transfer-encoding"] == "chunked"


@pytest.mark.real
def test_x_forwarded_for_is_appended_and_x_forwarded_proto_set(
    router: BuiltinRouter, app: NamedServer
) -> None:
    httpx.get(router.url, headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    httpx.get(router.url)
    first, second = app.seen
    assert first.headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert first.headers["x-forwarded-proto"] == "http"  # the client's claim replaced
    assert second.headers["x-forwarded-for"] == "127.0.0.1"


# -- slow, idle and too many connections ----------------------------------------------------


@pytest.mark.real
def test_a_slowloris_is_answered_408_and_closed_after_the_header_timeout(
    router: BuiltinRouter, app: NamedServer
) -> None:
    with connect(router) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        sock.settimeout(0.1)
        received = b""
        for _ in range(30):  # one header byte every 0.1 s, never the end of the head
            try:
                sock.sendall(b"X")
                received += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if received:
                break
        elapsed = time.monotonic() - started
    assert status_of(received) == 408
    assert 0.4 <= elapsed < 1.5
    assert app.seen == []


@pytest.mark.real
def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    router: BuiltinRouter,
) -> None:
    with connect(router) as sock:
        started = time.monotonic()
        read_all(sock)
        assert 0.4 <= time.monotonic() - started < 1.5


@pytest.mark.real
def test_a_slow_request_body_is_answered_408_and_not_counted_as_the_releases_error(
    fresh_router: BuiltinRouter, fresh_app: NamedServer
) -> None:
    with connect(fresh_router) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        started = time.monotonic()
        response = read_all(sock)
        assert time.monotonic() - started < 1.5
    assert status_of(response) == 408
    [signals] = fresh_router.signals()
    assert (signals.responses_4xx, signals.responses_5xx) == (1, 0)


@pytest.mark.real
def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
    router: BuiltinRouter, app: NamedServer
) -> None:
    with connect(router) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        started = time.monotonic()
        response = read_all(sock)  # the answer, then the close when idle
        assert 0.4 <= time.monotonic() - started < 1.5
    assert status_of(response) == 200
    assert response.endswith(b"a")  # no 408 sent to an idle connection


@pytest.mark.real
def test_300_idle_connections_make_room_for_a_real_request(
    calm_router: BuiltinRouter, backends: Backends
) -> None:
    calm_router.set_routes(RouteTable(backends=(backend("a", backends("a"), weight=100),)))
    idle = [connect(calm_router) for _ in range(300)]
    try:
        started = time.monotonic()
        response = httpx.get(calm_router.url, timeout=2)
        assert (response.status_code, response.text) == (200, "a")
        assert time.monotonic() - started < 1.0
        # The proxy holds at most its limit of client connections, not 300.
        assert proxy_descriptors(calm_router) < CALM.max_connections + 20
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.real
def test_a_connection_beyond_the_limit_is_refused_503_when_all_have_requests_in_flight(
    tmp_path: Path, backends: Backends
) -> None:
    router = start_router(
        tmp_path / "router", ClientLimits(header_timeout=2, body_timeout=2, max_connections=3)
    )
    try:
        router.set_routes(RouteTable(backends=(backend("a", backends("a"), weight=100),)))
        busy = [connect(router) for _ in range(3)]
        for sock in busy:
            sock.sendall(b"GET /sleep/1 HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.2)  # the three requests are in flight
        started = time.monotonic()
        with connect(router) as extra:
            refused = read_all(extra)
        assert time.monotonic() - started < 0.5
        assert status_of(refused) == 503
        for sock in busy:  # the requests in flight are served all the same
            sock.settimeout(3)
            assert status_of(sock.recv(65536)) == 200
            sock.close()
        assert httpx.get(router.url).text == "a"
    finally:
        router.stop()


# -- WebSocket: an upgrade is spliced both ways ----------------------------------------------

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class EchoUpgradeServer:
    """Answers an Upgrade: websocket handshake with 101, greets, then echoes every byte."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.heads: list[bytes] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def serve(self) -> None:
        with self.listener, self.listener.accept()[0] as conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            self.heads.append(head)
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\nhello"
            )
            while data := conn.recv(65536):
                conn.sendall(data)


@pytest.mark.real
def test_a_websocket_upgrade_is_passed_through_and_spliced_both_ways(
    fresh_router: BuiltinRouter,
) -> None:
    upstream = EchoUpgradeServer()
    fresh_router.set_routes(RouteTable(backends=(backend("ws", upstream.address, weight=100),)))
    key = base64.b64encode(os.urandom(16))
    with connect(fresh_router) as sock:
        sock.sendall(
            b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
        )
        received = b""
        while not received.endswith(b"hello"):
            received += sock.recv(65536)
        head = received.split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 101")
        assert b"upgrade: websocket" in head
        assert b"connection: upgrade" in head
        # Longer than every timeout of the proxy: a tunnel is not a slow request.
        time.sleep(0.7)
        sock.sendall(b"\x81\x05ping!")
        echoed = b""
        while len(echoed) < 7:
            echoed += sock.recv(65536)
        assert echoed == b"\x81\x05ping!"
    [upgrade_head] = upstream.heads
    assert b"upgrade: websocket" in upgrade_head.lower()
    assert b"connection: upgrade" in upgrade_head.lower()
    # The switch is counted as a request, with the handshake's latency, not the session's.
    [signals] = fresh_router.signals()
    assert signals.requests == 1
    assert signals.latency_buckets[1.0] == 1


# -- pinned traffic is never judged ------------------------------------------------------------


@pytest.mark.real
def test_pinned_requests_with_errors_do_not_change_the_judged_counts(
    calm_router: BuiltinRouter, backends: Backends
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    calm_router.set_routes(
        RouteTable(
            backends=(
                backend("stable", backends("stable"), weight=90),
                backend("canary", backends("canary"), weight=10),
                backend("gone", dead, weight=0),
            ),
            sticky_cookie=None,
        )
    )
    with httpx.Client(base_url=calm_router.url) as client:
        for _ in range(40):  # a client pouring errors into the canary's arm
            client.get("/status/500", headers={"X-Conveyor-Version": "CANARY"})
            client.get("/sleep/0.02", headers={"Cookie": "conveyor-version=CANARY"})
        for _ in range(5):
            client.get("/", headers={"X-Conveyor-Version": "GONE"})
        for _ in range(20):
            client.get("/")
    signals = {signal.release_id: signal for signal in calm_router.signals()}
    judged = sum(signal.requests for signal in signals.values())
    assert judged == 20
    assert sum(signal.responses_5xx for signal in signals.values()) == 0
    assert sum(signal.connect_failures for signal in signals.values()) == 0
    assert "gone" not in signals
    exposition = httpx.get(f"http://127.0.0.1:{calm_router.admin_port}/-/metrics").text
    pinned = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith("conveyor_router_pinned_")
    }
    assert (
        pinned[("conveyor_router_pinned_requests_total", (("code", "5xx"), ("release", "canary")))]
        == 40
    )
    assert (
        pinned[("conveyor_router_pinned_connect_failures_total", (("release", "gone"),))] == 10
    )  # two tries each
