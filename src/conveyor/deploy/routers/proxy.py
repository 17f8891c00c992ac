"""The builtin router's proxy: an asyncio HTTP/1.1 reverse proxy in a process of its own.

Run as `python -m conveyor.deploy.routers.proxy --state-dir DIR --port P --admin-port A`.
HTTP framing (request line, headers, Content-Length and chunked bodies, keep-alive) is
h11's; `http_rules` refuses what a proxy must not forward and rewrites the hop-by-hop
headers; `client_limits` bounds how long and how many clients. This module chooses
backends, pools upstream connections, splices upgraded connections (WebSocket) and
counts. Routes come from `DIR/routes.json`, re-read on SIGHUP or when its identity
changes (polled); a new table replaces the old one in a single assignment, so a request
sees one table or the other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
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
from conveyor.deploy.routers.client_limits import ClientLimits, ConnectionSlots, Phase, Slot
from conveyor.deploy.routers.feedback_intake import (
    FEEDBACK_PATH,
    FeedbackIntake,
    FeedbackLimits,
    Rejected,
    origin_allowed,
    parse_post,
)
from conveyor.deploy.routers.http_rules import (
    Refused,
    check_request,
    client_response_headers,
    upstream_request_headers,
    wants_upgrade,
)

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
READ_SIZE = 65536
IDLE_PER_ADDRESS = 32
CONNECT_TIMEOUT = 2.0
ROUTES_POLL_SECONDS = 0.15
# After refusing a request, read what the client still sends for this long before
# closing: closing with unread bytes resets the connection and can lose the answer.
LINGER_SECONDS = 0.5
ADMIN_CONNECTIONS = 64
EMPTY_TABLE = RouteTable(backends=())
# nginx's convention for "the client went away before the answer": a 4xx, never an
# error of the release.
CLIENT_CLOSED = 499


class UpstreamError(Exception):
    """The upstream broke off after the request started: never retried."""


class ConnectFailed(Exception):
    """No TCP connection to the upstream: the only failure worth a retry."""


class ClientFault(Refused):
    """The client broke the exchange (too slow, malformed, gone): counted as a 4xx of the
    release it was sent to, not as a refusal of the proxy's."""


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
    limits: ClientLimits = field(default_factory=ClientLimits)

    @property
    def ip(self) -> str:
        peer = self.writer.get_extra_info("peername")
        return str(peer[0]) if peer else "unknown"

    def write(self, event: h11.Event) -> None:
        self.writer.write(self.conn.send(event) or b"")

    async def flush(self) -> None:
        """Wait until the client takes what was written, for at most `body_timeout`."""
        try:
            await asyncio.wait_for(self.writer.drain(), self.limits.body_timeout)
        except TimeoutError as error:
            raise ClientFault(408, "the client stopped reading") from error
        except OSError as error:
            raise ClientFault(CLIENT_CLOSED, f"the client went away: {error}") from error

    async def next_body_event(self) -> object:
        try:
            return await next_event(self.conn, self.reader, self.limits.body_timeout)
        except TimeoutError as error:
            raise ClientFault(408, "request timeout: the body came too slowly\n") from error
        except h11.RemoteProtocolError as error:
            raise ClientFault(error.error_status_hint, f"bad request: {error}\n") from error
        except OSError as error:
            raise ClientFault(CLIENT_CLOSED, f"the client went away: {error}") from error

    async def next_head(self, kept_alive: bool) -> object:
        """The next request head. A kept-alive connection may wait `idle_timeout` for the
        first byte of its next request; from there (or from the connection's start) the
        whole head must arrive within `header_timeout`: a slowloris gets no longer."""
        limits, loop = self.limits, asyncio.get_running_loop()
        waiting = kept_alive
        async with asyncio.timeout(
            limits.idle_timeout if kept_alive else limits.header_timeout
        ) as deadline:
            while True:
                event = self.conn.next_event()
                if event is not h11.NEED_DATA:
                    return event
                data = await self.reader.read(READ_SIZE)
                if waiting and data:
                    waiting = False
                    deadline.reschedule(loop.time() + limits.header_timeout)
                self.conn.receive_data(data)


class Route(enum.Enum):
    """Why a request went where it went; a pinned request is never judged."""

    PINNED = "pinned"  # the client named the version (header or cookie)
    MATCHED = "matched"  # an A/B rule: the test's own traffic, judged
    STICKY = "sticky"
    WEIGHTED = "weighted"


@dataclass(frozen=True)
class Choice:
    backend: Backend
    route: Route
    set_sticky: bool = False

    @property
    def stays_on_release(self) -> bool:
        """A retry must not move a request the client (or a rule) sent to one release."""
        return self.route in {Route.PINNED, Route.MATCHED}

    @property
    def judged(self) -> bool:
        """Whether the request counts in the signals the judge reads: a client choosing
        the version could otherwise pour errors or latency into one arm of a canary."""
        return self.route is not Route.PINNED


@dataclass
class Tunnel:
    """An upgraded connection (101 Switching Protocols): bytes both ways until one side
    closes. Its duration is not a request's latency, so it runs after the counting."""

    client: Downstream
    upstream: Upstream

    async def run(self) -> None:
        client, upstream = self.client, self.upstream
        client_rest, _ = client.conn.trailing_data
        upstream_rest, _ = upstream.conn.trailing_data
        upstream.writer.write(client_rest)
        client.writer.write(upstream_rest)
        pumps = [
            asyncio.create_task(pump(client.reader, upstream.writer)),
            asyncio.create_task(pump(upstream.reader, client.writer)),
        ]
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.exception()  # a reset ends the tunnel; nothing to report
        finally:
            for task in pumps:
                task.cancel()
            upstream.writer.close()


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of file, then half-close: the other direction may still talk."""
    while data := await reader.read(READ_SIZE):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


@dataclass(frozen=True)
class Outcome:
    status: int
    tunnel: Tunnel | None = None


def no_delay(writer: asyncio.StreamWriter) -> None:
    """Headers and body leave in separate writes: Nagle would hold the body ~40 ms.

    asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, which accepted
    sockets and those of `open_connection` are not always.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def next_event(
    conn: h11.Connection, reader: asyncio.StreamReader, timeout: float | None = None
) -> object:
    """h11's next event, reading as needed; each read waits at most `timeout`."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await asyncio.wait_for(reader.read(READ_SIZE), timeout))


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


class ReleaseCounters:
    """Requests by release and status class, connect failures and a latency histogram."""

    def __init__(self, registry: CollectorRegistry, prefix: str, whose: str) -> None:
        self.requests = Counter(
            f"{prefix}_requests",
            f"Requests answered, by release and status class{whose}.",
            ["release", "code"],
            registry=registry,
        )
        self.connect_failures = Counter(
            f"{prefix}_connect_failures",
            f"Connections to a release's replicas that could not be opened{whose}.",
            ["release"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}_request_duration_seconds",
            f"Time from request to the end of the response, by release{whose}.",
            ["release"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class Metrics:
    """The judged series (`conveyor_router_*`, what `parse_signals` and the judge read)
    and, apart, the pinned ones (`conveyor_router_pinned_*`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.judged = ReleaseCounters(self.registry, METRIC_PREFIX, "")
        self.pinned = ReleaseCounters(
            self.registry,
            f"{METRIC_PREFIX}_pinned",
            " (pinned to a version by the client: never judged)",
        )
        self.refused = Counter(
            f"{METRIC_PREFIX}_refused",
            "Requests and connections the proxy answered itself, by status.",
            ["code"],
            registry=self.registry,
        )

    def of(self, choice: Choice) -> ReleaseCounters:
        return self.judged if choice.judged else self.pinned

    def observe(self, choice: Choice, release: str, status: int, seconds: float | None) -> None:
        """One answered request; `seconds` is None when the client broke the exchange off
        (its own slowness is not the release's latency)."""
        counters = self.of(choice)
        counters.requests.labels(release=release, code=f"{status // 100}xx").inc()
        if seconds is not None:
            counters.latency.labels(release=release).observe(seconds)

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
    def __init__(
        self,
        state_dir: Path,
        limits: ClientLimits | None = None,
        feedback: FeedbackLimits | None = None,
    ) -> None:
        self.limits = limits or ClientLimits()
        self.feedback = FeedbackIntake(state_dir, feedback)
        self.slots = ConnectionSlots(self.limits.max_connections)
        self.routes_path = state_dir / ROUTES_FILE
        self.table = EMPTY_TABLE
        self._routes_identity: tuple[int, int, int] | None = None
        self._round_robin: dict[str, itertools.count[int]] = {}
        self.pool = UpstreamPool()
        self.metrics = Metrics()
        self.feedback_posts = Counter(
            f"{METRIC_PREFIX}_feedback_posts",
            "Posts to /.conveyor/feedback, by the status answered.",
            ["code"],
            registry=self.metrics.registry,
        )

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
                return Choice(backend, Route.PINNED)
        if table.matches:
            named = {key.decode("latin-1"): value.decode("latin-1") for key, value in headers}
            for rule in table.matches:
                if rule.matches(named, cookies):
                    for backend in table.backends:
                        if backend.release_id == rule.release_id and backend.addresses:
                            return Choice(backend, Route.MATCHED)
        sticky = cookies.get(table.sticky_cookie) if table.sticky_cookie else None
        for backend in table.backends:
            if backend.release_id == sticky and backend.weight > 0 and backend.addresses:
                return Choice(backend, Route.STICKY)
        chosen = weighted(list(table.backends))
        if chosen is None:
            return None
        return Choice(chosen, Route.WEIGHTED, set_sticky=table.sticky_cookie is not None)

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
        if not choice.stays_on_release:
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
                self.metrics.of(choice).connect_failures.labels(release=backend.release_id).inc()
                if attempt + 1 < attempts:
                    backend, address = self.fallback(table, choice, address)
        return backend, None

    # -- serving ---------------------------------------------------------------------
    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        client = Downstream(h11.Connection(h11.SERVER), reader, writer, self.limits)
        slot = self.slots.admit(writer.transport.abort)
        if slot is None:
            self.metrics.refused.labels(code="503").inc()
            # No lingering here: a flood of these must not hold descriptors.
            await send_simple(client, 503, b"busy: every connection has a request in flight\n")
            writer.close()
            return
        no_delay(writer)
        try:
            await self.serve_requests(client, slot)
        except ClientFault as fault:
            await refuse(client, fault.status, fault.reason.encode())
        except Refused as refusal:
            self.metrics.refused.labels(code=str(refusal.status)).inc()
            await refuse(client, refusal.status, refusal.reason.encode())
        except TimeoutError:
            self.metrics.refused.labels(code="408").inc()
            await refuse(client, 408, b"request timeout: the request head came too slowly\n")
        except h11.RemoteProtocolError as error:
            self.metrics.refused.labels(code=str(error.error_status_hint)).inc()
            await refuse(client, error.error_status_hint, f"bad request: {error}\n".encode())
        except (h11.ProtocolError, UpstreamError, ConnectionError):
            pass  # a broken exchange ends its connection; nothing half-sent is repaired
        finally:
            self.slots.release(slot)
            writer.close()

    async def serve_requests(self, client: Downstream, slot: Slot) -> None:
        kept_alive = False
        while True:
            self.slots.enter(slot, Phase.WAITING)
            try:
                event = await client.next_head(kept_alive)
            except TimeoutError:
                if kept_alive and client.conn.their_state is h11.IDLE:
                    return  # an idle keep-alive connection just ends, unanswered
                raise
            if not isinstance(event, h11.Request):
                return
            self.slots.enter(slot, Phase.BUSY)
            check_request(event)
            await self.handle(client, event)
            if client.conn.our_state is not h11.DONE or client.conn.their_state is not h11.DONE:
                return
            client.conn.start_next_cycle()
            kept_alive = True

    async def handle(self, client: Downstream, request: h11.Request) -> None:
        started = asyncio.get_running_loop().time()
        table = self.table
        if request.target.split(b"?", 1)[0] == FEEDBACK_PATH.encode():
            await self.answer_feedback(client, request, table)
            return
        choice = self.choose(table, list(request.headers))
        if choice is None:
            await send_simple(client, 503, b"no route: the route table is empty\n")
            return
        backend, upstream = await self.connect(table, choice, request.method)
        if upstream is None:
            elapsed = asyncio.get_running_loop().time() - started
            self.metrics.observe(choice, backend.release_id, 502, elapsed)
            await send_simple(client, 502, b"bad gateway: no backend reachable\n")
            return
        sticky = choice.set_sticky and table.sticky_cookie is not None
        # Only the router reads it: no script needs it, no other site should send it.
        flags = "Path=/; HttpOnly; SameSite=Lax"
        cookie = f"{table.sticky_cookie}={backend.release_id}; {flags}" if sticky else None
        status, seconds = 502, None
        try:
            outcome = await self.exchange(client, request, upstream, cookie)
            status, seconds = outcome.status, asyncio.get_running_loop().time() - started
        except ClientFault as fault:
            status = fault.status
            raise
        except UpstreamError:
            seconds = asyncio.get_running_loop().time() - started
            await send_simple(client, 502, b"bad gateway: upstream failed\n")
            raise
        finally:
            self.metrics.observe(choice, backend.release_id, status, seconds)
        if outcome.tunnel is not None:
            await outcome.tunnel.run()

    # -- feedback (feedback_intake.py) --------------------------------------------------
    async def answer_feedback(
        self, client: Downstream, request: h11.Request, table: RouteTable
    ) -> None:
        headers = list(request.headers)
        origin = header(headers, "origin")
        cors: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
        try:
            if origin is not None:
                if not origin_allowed(
                    origin, header(headers, "host"), self.feedback.limits.origins
                ):
                    raise Rejected(403, "this origin may not post feedback here")
                cors.append((b"access-control-allow-origin", origin.encode("latin-1")))
            if request.method == b"OPTIONS":  # a CORS preflight
                cors += [
                    (b"access-control-allow-methods", b"POST"),
                    (b"access-control-allow-headers", b"content-type"),
                    (b"access-control-max-age", b"600"),
                ]
                await send_simple(client, 204, b"", extra=cors)
                return
            if request.method != b"POST":
                raise Rejected(405, "feedback is posted")
            media = (header(headers, "content-type") or "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                raise Rejected(415, "feedback is posted as application/json")
            self.feedback.admit(client.ip)
            post = parse_post(await self.read_body(client), self.feedback.limits)
            release_id, route = self.served_release(table, headers)
            self.feedback.record(post, release_id, route)
        except Rejected as rejected:
            self.feedback_posts.labels(code=str(rejected.status)).inc()
            extra = cors if rejected.status != 403 else [(b"vary", b"Origin")]
            if rejected.retry_after is not None:
                extra = [
                    *extra,
                    (b"retry-after", str(max(1, round(rejected.retry_after))).encode()),
                ]
            body = json.dumps({"error": rejected.status, "reason": rejected.reason}).encode()
            await send_simple(client, rejected.status, body, b"application/json", extra=extra)
            return
        self.feedback_posts.labels(code="202").inc()
        body = json.dumps({"status": "accepted", "release": release_id}).encode()
        await send_simple(client, 202, body, b"application/json", extra=cors)

    async def read_body(self, client: Downstream) -> bytes:
        limit = self.feedback.limits.max_body
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await client.next_body_event()
            if not isinstance(event, h11.Data):
                return b"".join(chunks)
            size += len(event.data)
            if size > limit:
                raise Rejected(413, f"the body is larger than {limit} bytes")
            chunks.append(bytes(event.data))

    def served_release(
        self, table: RouteTable, headers: list[tuple[bytes, bytes]]
    ) -> tuple[str | None, str]:
        """The release this user's pages come from, and how the router knows: a pin, an
        A/B rule, the sticky cookie, or the one release with traffic. Without any of them
        the next page could come from any release: unknown."""
        choice = self.choose(table, headers)
        if choice is not None and choice.route is not Route.WEIGHTED:
            return choice.backend.release_id, choice.route.value
        live = [b for b in table.backends if b.weight > 0 and b.addresses]
        if len(live) == 1:
            return live[0].release_id, "only"
        return None, "unknown"

    async def exchange(
        self, client: Downstream, request: h11.Request, upstream: Upstream, cookie: str | None
    ) -> Outcome:
        """Relay one request and its response: the status sent to the client, and the
        tunnel to run when the upstream switched protocols."""
        upgrade = wants_upgrade(request)
        try:
            headers = upstream_request_headers(request, client.ip, upgrade)
            try:
                forwarded = h11.Request(
                    method=request.method, target=request.target, headers=headers
                )
            except h11.LocalProtocolError as error:  # what the client sent, rewritten
                raise ClientFault(400, f"bad request: {error}\n") from error
            send(upstream, forwarded)
            if client.conn.client_is_waiting_for_100_continue:
                client.write(h11.InformationalResponse(status_code=100, headers=[]))
            while True:
                event = await client.next_body_event()
                if isinstance(event, h11.Data | h11.EndOfMessage):
                    send(upstream, event)
                if not isinstance(event, h11.Data):
                    break
            response = await read_response(upstream)
            if isinstance(response, h11.InformationalResponse):
                client.write(
                    h11.InformationalResponse(
                        status_code=101,
                        headers=client_response_headers(response),
                        reason=response.reason,
                    )
                )
                return Outcome(101, Tunnel(client, upstream))
            await self.relay_response(client, upstream, response, cookie)
        except BaseException:
            upstream.writer.close()  # half an exchange: the connection is unusable
            raise
        return Outcome(int(response.status_code))

    async def relay_response(
        self, client: Downstream, upstream: Upstream, response: h11.Response, cookie: str | None
    ) -> None:
        headers = client_response_headers(response)
        if cookie is not None:
            headers.append((b"set-cookie", cookie.encode()))
        client.write(
            h11.Response(status_code=response.status_code, headers=headers, reason=response.reason)
        )
        while True:
            try:
                event = await next_event(upstream.conn, upstream.reader)
            except (OSError, h11.ProtocolError) as error:
                raise UpstreamError(str(error)) from error
            if isinstance(event, h11.Data | h11.EndOfMessage):
                client.write(event)
                await client.flush()
            if not isinstance(event, h11.Data):
                break
        self.pool.release(upstream)


async def read_response(upstream: Upstream) -> h11.Response | h11.InformationalResponse:
    """The upstream's response head, skipping 1xx ones but a 101 (the switch)."""
    try:
        while True:
            response = await next_event(upstream.conn, upstream.reader)
            if isinstance(response, h11.Response):
                return response
            if not isinstance(response, h11.InformationalResponse):
                raise UpstreamError(f"{upstream.address} closed without a response")
            if response.status_code == 101:
                return response
    except (OSError, h11.ProtocolError) as error:
        raise UpstreamError(f"{upstream.address}: {error}") from error


def send(upstream: Upstream, event: h11.Event) -> None:
    upstream.writer.write(upstream.conn.send(event) or b"")


async def send_simple(
    client: Downstream,
    status: int,
    body: bytes,
    content_type: bytes = b"text/plain",
    close: bool = False,
    *,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    if client.conn.our_state not in {h11.IDLE, h11.SEND_RESPONSE}:
        return  # a response already started cannot be replaced
    if client.conn.their_state is h11.SEND_BODY:
        # A request without a body (most) ends here: the connection can be kept.
        with contextlib.suppress(h11.ProtocolError):
            client.conn.next_event()
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers += extra or []
    # An answer before the request's end leaves its body unread: the connection ends with
    # it, and says so, or the client would send its next request into a closing socket.
    if close or client.conn.their_state is not h11.DONE:
        headers.append((b"connection", b"close"))
    events = [h11.Response(status_code=status, headers=headers), h11.Data(data=body)]
    with contextlib.suppress(h11.LocalProtocolError):  # one write: one segment
        client.writer.write(
            b"".join(client.conn.send(e) or b"" for e in [*events, h11.EndOfMessage()])
        )
    with contextlib.suppress(OSError, ClientFault):
        await client.flush()


async def refuse(client: Downstream, status: int, body: bytes) -> None:
    """Answer `status` and close. What the client still sends is read (and dropped) for a
    moment first: closing on unread bytes resets the connection, and the answer with it."""
    await send_simple(client, status, body, close=True)
    writer = client.writer
    if writer.is_closing() or not writer.can_write_eof():
        return
    with contextlib.suppress(OSError):
        writer.write_eof()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(LINGER_SECONDS):
            while await client.reader.read(READ_SIZE):
                pass


class Admin:
    """The admin port: /-/metrics, /-/routes and /-/healthz, one request per connection."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.slots = ConnectionSlots(ADMIN_CONNECTIONS)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = Downstream(h11.Connection(h11.SERVER), reader, writer, self.proxy.limits)
        slot = self.slots.admit(writer.transport.abort)
        try:
            event = await client.next_head(kept_alive=False)
            if isinstance(event, h11.Request):
                status, content_type, body = self.answer(event.target.decode("latin-1"))
                await send_simple(client, status, body, content_type)
        except (h11.ProtocolError, ConnectionError, TimeoutError):
            pass
        finally:
            if slot is not None:
                self.slots.release(slot)
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


async def serve(
    state_dir: Path,
    public: socket.socket,
    admin: socket.socket,
    limits: ClientLimits,
    feedback: FeedbackLimits | None = None,
) -> None:
    proxy = Proxy(state_dir, limits, feedback)
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
    ClientLimits.add_arguments(parser)
    FeedbackLimits.add_arguments(parser)
    options = parser.parse_args(argv)
    limits = ClientLimits.from_options(options)
    pid_file = options.state_dir / PID_FILE
    # Bound before forking, so that a port in use fails the launcher, not a lost daemon.
    public, admin = bind(options.port), bind(options.admin_port)
    if options.detach:
        detach(pid_file)
    else:
        pid_file.write_text(f"{os.getpid()}\n")
    try:
        feedback = FeedbackLimits.from_options(options)
        asyncio.run(serve(options.state_dir, public, admin, limits, feedback))
    finally:
        pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
