"""The builtin router's proxy: an asyncio HTTP/1.1 reverse proxy in a process of its own.

Run as `python -m conveyor.deploy.routers.proxy --state-dir DIR --port P --admin-port A`.
HTTP framing (request line, headers, Content-Length and chunked bodies, keep-alive) is
h11's; this module chooses backends, pools upstream connections and counts. Routes come
from `DIR/routes.json`, re-read on SIGHUP or when its identity changes (polled); a new
table replaces the old one in a single assignment, so a request sees one table or the other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import sys
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

import h11
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram

from conveyor.deploy.model import Backend, RouteTable
from conveyor.deploy.routers.builtin import (
    METRIC_PREFIX,
    PID_FILE,
    ROUTE_TABLE,
    ROUTES_FILE,
    routes_from_json,
)

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
# Hop-by-hop headers (RFC 9110 7.6.1); framing headers stay: h11 re-frames from them.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"expect"}
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
READ_SIZE = 65536
IDLE_PER_ADDRESS = 32
CONNECT_TIMEOUT = 2.0
ROUTES_POLL_SECONDS = 0.15
EMPTY_TABLE = RouteTable(backends=())


class UpstreamError(Exception):
    """The upstream broke off after the request started: never retried."""


class ConnectFailed(Exception):
    """No TCP connection to the upstream: the only failure worth a retry."""


@dataclass
class Upstream:
    address: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))


@dataclass
class Downstream:
    """A client's connection to the proxy."""

    conn: h11.Connection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def write(self, event: h11.Event) -> None:
        self.writer.write(self.conn.send(event) or b"")


@dataclass(frozen=True)
class Choice:
    backend: Backend
    pinned: bool
    set_sticky: bool


def no_delay(writer: asyncio.StreamWriter) -> None:
    """Headers and body leave in separate writes: Nagle would hold the body ~40 ms.

    asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, which accepted
    sockets and those of `open_connection` are not always.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(READ_SIZE))


class UpstreamPool:
    """Idle keep-alive connections per upstream address, at most IDLE_PER_ADDRESS each."""

    def __init__(self) -> None:
        self._idle: dict[str, list[Upstream]] = {}

    async def acquire(self, address: str) -> Upstream:
        idle = self._idle.get(address, [])
        while idle:
            upstream = idle.pop()
            if not upstream.reader.at_eof():
                return upstream
            upstream.writer.close()
        host, _, port = address.rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port)), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError, ValueError) as error:
            raise ConnectFailed(f"{address}: {error}") from error
        no_delay(writer)
        return Upstream(address, reader, writer)

    def release(self, upstream: Upstream) -> None:
        conn = upstream.conn
        idle = self._idle.setdefault(upstream.address, [])
        if (
            conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
            and len(idle) < IDLE_PER_ADDRESS
        ):
            conn.start_next_cycle()
            idle.append(upstream)
        else:
            upstream.writer.close()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"{METRIC_PREFIX}_requests",
            "Requests answered, by release and status class.",
            ["release", "code"],
            registry=self.registry,
        )
        self.connect_failures = Counter(
            f"{METRIC_PREFIX}_connect_failures",
            "Connections to a release's replicas that could not be opened.",
            ["release"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{METRIC_PREFIX}_request_duration_seconds",
            "Time from request to the end of the response, by release.",
            ["release"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, release: str, status: int, seconds: float) -> None:
        self.requests.labels(release=release, code=f"{status // 100}xx").inc()
        self.latency.labels(release=release).observe(seconds)

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


def request_cookies(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    cookie = SimpleCookie()
    for name, value in headers:
        if name == b"cookie":
            with contextlib.suppress(CookieError):
                cookie.load(value.decode("latin-1"))
    return {key: morsel.value for key, morsel in cookie.items()}


def header(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    wanted = name.lower().encode()
    return next((value.decode("latin-1") for key, value in headers if key == wanted), None)


def weighted(backends: list[Backend]) -> Backend | None:
    live = [backend for backend in backends if backend.weight > 0 and backend.addresses]
    if not live:
        return None
    return random.choices(live, weights=[backend.weight for backend in live])[0]


class Proxy:
    def __init__(self, state_dir: Path) -> None:
        self.routes_path = state_dir / ROUTES_FILE
        self.table = EMPTY_TABLE
        self._routes_identity: tuple[int, int, int] | None = None
        self._round_robin: dict[str, itertools.count[int]] = {}
        self.pool = UpstreamPool()
        self.metrics = Metrics()

    # -- routes ------------------------------------------------------------------------
    def reload_routes(self) -> None:
        try:
            stat = self.routes_path.stat()
        except FileNotFoundError:
            return
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if identity == self._routes_identity:
            return
        try:
            table = routes_from_json(self.routes_path.read_bytes())
        except (OSError, ValueError) as error:
            print(f"routes.json ignored, keeping the table in force: {error}", file=sys.stderr)
        else:
            self.table = table  # the one assignment that switches traffic
        self._routes_identity = identity

    async def watch_routes(self) -> None:
        while True:
            self.reload_routes()
            await asyncio.sleep(ROUTES_POLL_SECONDS)

    # -- choosing ----------------------------------------------------------------------
    def choose(self, table: RouteTable, headers: list[tuple[bytes, bytes]]) -> Choice | None:
        cookies = request_cookies(headers)
        version = header(headers, table.pin_header) or cookies.get(table.pin_cookie)
        for backend in table.backends:
            if version and backend.version == version and backend.addresses:
                return Choice(backend, pinned=True, set_sticky=False)
        if table.matches:
            named = {key.decode("latin-1"): value.decode("latin-1") for key, value in headers}
            for rule in table.matches:
                if rule.matches(named, cookies):
                    for backend in table.backends:
                        if backend.release_id == rule.release_id and backend.addresses:
                            return Choice(backend, pinned=True, set_sticky=False)
        sticky = cookies.get(table.sticky_cookie) if table.sticky_cookie else None
        for backend in table.backends:
            if backend.release_id == sticky and backend.weight > 0 and backend.addresses:
                return Choice(backend, pinned=False, set_sticky=False)
        chosen = weighted(list(table.backends))
        if chosen is None:
            return None
        return Choice(chosen, pinned=False, set_sticky=table.sticky_cookie is not None)

    def next_address(self, backend: Backend) -> str:
        counter = self._round_robin.setdefault(backend.release_id, itertools.count())
        return backend.addresses[next(counter) % len(backend.addresses)]

    def fallback(self, table: RouteTable, choice: Choice, failed: str) -> tuple[Backend, str]:
        """Where a retry goes: another replica of the release, else another release."""
        backend = choice.backend
        if len(backend.addresses) > 1:
            address = self.next_address(backend)
            if address == failed:
                address = self.next_address(backend)
            return backend, address
        if not choice.pinned:
            others = [other for other in table.backends if other is not backend]
            other = weighted(others)
            if other is not None:
                return other, self.next_address(other)
        return backend, self.next_address(backend)

    async def connect(
        self, table: RouteTable, choice: Choice, method: bytes
    ) -> tuple[Backend, Upstream | None]:
        backend, address = choice.backend, self.next_address(choice.backend)
        attempts = 2 if method in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                return backend, await self.pool.acquire(address)
            except ConnectFailed as error:
                print(f"connect failed: {error}", file=sys.stderr)
                self.metrics.connect_failures.labels(release=backend.release_id).inc()
                if attempt + 1 < attempts:
                    backend, address = self.fallback(table, choice, address)
        return backend, None

    # -- serving -----------------------------------------------------------------------
    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        client = Downstream(h11.Connection(h11.SERVER), reader, writer)
        no_delay(writer)
        try:
            while True:
                event = await next_event(client.conn, reader)
                if not isinstance(event, h11.Request):
                    break
                await self.handle(client, event)
                if client.conn.our_state is not h11.DONE or client.conn.their_state is not h11.DONE:
                    break
                client.conn.start_next_cycle()
        except (h11.ProtocolError, UpstreamError, ConnectionError):
            pass  # a broken exchange ends its connection; nothing half-sent is repaired
        finally:
            writer.close()

    async def handle(self, client: Downstream, request: h11.Request) -> None:
        started = asyncio.get_running_loop().time()
        table = self.table
        choice = self.choose(table, list(request.headers))
        if choice is None:
            await send_simple(client, 503, b"no route: the route table is empty\n")
            return
        backend, upstream = await self.connect(table, choice, request.method)
        status = 502
        try:
            if upstream is None:
                await send_simple(client, 502, b"bad gateway: no backend reachable\n")
                return
            sticky = choice.set_sticky and table.sticky_cookie is not None
            # Only the router reads it: no script needs it, no other site should send it.
            flags = "Path=/; HttpOnly; SameSite=Lax"
            cookie = f"{table.sticky_cookie}={backend.release_id}; {flags}" if sticky else None
            status = await self.exchange(client, request, upstream, cookie)
        finally:
            elapsed = asyncio.get_running_loop().time() - started
            self.metrics.observe(backend.release_id, status, elapsed)

    async def exchange(
        self, client: Downstream, request: h11.Request, upstream: Upstream, cookie: str | None
    ) -> int:
        """Relay one request and its response; returns the status sent to the client."""
        headers = [(n, v) for n, v in request.headers if n not in HOP_BY_HOP]
        try:
            send(
                upstream, h11.Request(method=request.method, target=request.target, headers=headers)
            )
            if client.conn.client_is_waiting_for_100_continue:
                client.write(h11.InformationalResponse(status_code=100, headers=[]))
            while True:
                event = await next_event(client.conn, client.reader)
                if isinstance(event, h11.Data | h11.EndOfMessage):
                    send(upstream, event)
                if not isinstance(event, h11.Data):
                    break
            response = await next_event(upstream.conn, upstream.reader)
            while isinstance(response, h11.InformationalResponse):
                response = await next_event(upstream.conn, upstream.reader)
            if not isinstance(response, h11.Response):
                raise UpstreamError(f"{upstream.address} closed without a response")
        except (OSError, h11.ProtocolError, UpstreamError) as error:
            upstream.writer.close()
            await send_simple(client, 502, b"bad gateway: upstream failed\n")
            raise UpstreamError(str(error)) from error
        await self.relay_response(client, upstream, response, cookie)
        return int(response.status_code)

    async def relay_response(
        self, client: Downstream, upstream: Upstream, response: h11.Response, cookie: str | None
    ) -> None:
        headers = [(n, v) for n, v in response.headers if n not in HOP_BY_HOP]
        if cookie is not None:
            headers.append((b"set-cookie", cookie.encode()))
        try:
            client.write(
                h11.Response(
                    status_code=response.status_code, headers=headers, reason=response.reason
                )
            )
            while True:
                event = await next_event(upstream.conn, upstream.reader)
                if isinstance(event, h11.Data | h11.EndOfMessage):
                    client.write(event)
                    await client.writer.drain()
                if not isinstance(event, h11.Data):
                    break
        except (OSError, h11.ProtocolError) as error:
            upstream.writer.close()
            raise UpstreamError(str(error)) from error
        self.pool.release(upstream)


def send(upstream: Upstream, event: h11.Event) -> None:
    upstream.writer.write(upstream.conn.send(event) or b"")


async def send_simple(
    client: Downstream, status: int, body: bytes, content_type: bytes = b"text/plain"
) -> None:
    if client.conn.our_state is not h11.SEND_RESPONSE:
        return  # a response already started cannot be replaced
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    client.write(h11.Response(status_code=status, headers=headers))
    client.write(h11.Data(data=body))
    client.write(h11.EndOfMessage())
    await client.writer.drain()


class Admin:
    """The admin port: /-/metrics, /-/routes and /-/healthz, one request per connection."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = Downstream(h11.Connection(h11.SERVER), reader, writer)
        try:
            event = await next_event(client.conn, reader)
            if isinstance(event, h11.Request):
                status, content_type, body = self.answer(event.target.decode("latin-1"))
                await send_simple(client, status, body, content_type)
        except (h11.ProtocolError, ConnectionError):
            pass
        finally:
            writer.close()

    def answer(self, target: str) -> tuple[int, bytes, bytes]:
        path = target.split("?", 1)[0]
        if path == "/-/metrics":
            return (
                200,
                prometheus_client.CONTENT_TYPE_LATEST.encode(),
                self.proxy.metrics.exposition(),
            )
        if path == "/-/routes":
            return 200, b"application/json", ROUTE_TABLE.dump_json(self.proxy.table)
        if path == "/-/healthz":
            return 200, b"application/json", json.dumps({"pid": os.getpid()}).encode()
        return 404, b"text/plain", b"not found\n"


def bind(port: int) -> socket.socket:
    try:
        return socket.create_server(("127.0.0.1", port), reuse_port=False, backlog=512)
    except OSError as error:
        sys.exit(f"cannot listen on 127.0.0.1:{port}: {error}")


async def serve(state_dir: Path, public: socket.socket, admin: socket.socket) -> None:
    proxy = Proxy(state_dir)
    proxy.reload_routes()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, proxy.reload_routes)
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    servers = [
        await asyncio.start_server(proxy.serve_client, sock=public),
        await asyncio.start_server(Admin(proxy).serve, sock=admin),
    ]
    watcher = asyncio.create_task(proxy.watch_routes())
    await stopped.wait()
    watcher.cancel()
    for server in servers:
        server.close()


def detach(pid_file: Path) -> None:
    """Fork the daemon and exit: the daemon is then nobody's child, in its own session."""
    child = os.fork()
    if child:
        pid_file.write_text(f"{child}\n")
        os._exit(0)
    os.setsid()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="conveyor.deploy.routers.proxy")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--detach", action="store_true", help="fork into the background")
    options = parser.parse_args(argv)
    pid_file = options.state_dir / PID_FILE
    # Bound before forking, so that a port in use fails the launcher, not a lost daemon.
    public, admin = bind(options.port), bind(options.admin_port)
    if options.detach:
        detach(pid_file)
    else:
        pid_file.write_text(f"{os.getpid()}\n")
    try:
        asyncio.run(serve(options.state_dir, public, admin))
    finally:
        pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
