"""Small real backends for the builtin router's tests: each answers its own name and
records every request it read (what went past the router)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conveyor.deploy.model import Backend


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Seen:
    """A request as the backend read it."""

    request_line: str
    headers: dict[str, str]  # names in lower case
    body: bytes


class NamedHandler(BaseHTTPRequestHandler):
    """Answers the server's name; `/sleep/SECONDS` waits first, `/status/CODE` fails,
    `/hop` answers with hop-by-hop headers a proxy must not pass on.

    A body's length is read from Content-Length when there is one, as many servers do:
    a request framed both ways leaves this server reading the rest as a second request.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: NamedServer
    timeout = 10

    def do_GET(self) -> None:
        self.remember(b"")
        status = 200
        if self.path.startswith("/sleep/"):
            time.sleep(float(self.path.removeprefix("/sleep/")))
        elif self.path.startswith("/status/"):
            status = int(self.path.removeprefix("/status/"))
        extra = {}
        if self.path == "/hop":
            extra = {
                "Connection": "X-Internal",
                "X-Internal": "leaked",
                "Proxy-Authenticate": "Basic",
                "Keep-Alive": "timeout=5",
            }
        self.answer(status, self.server.name.encode(), extra)

    def do_OPTIONS(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        if "Content-Length" in self.headers:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        elif self.headers.get("Transfer-Encoding") == "chunked":
            body = self.read_chunks()
        else:
            body = b""
        self.remember(body)
        self.answer(200, self.server.name.encode() + b":" + body)

    def remember(self, body: bytes) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.seen.append(Seen(self.requestline, headers, body))

    def read_chunks(self) -> bytes:
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()  # the empty trailer section
        return body

    def answer(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class NamedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), NamedHandler)
        self.name = name
        self.seen: list[Seen] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class Backends:
    """Starts named servers; `stop_all` ends them."""

    def __init__(self) -> None:
        self._started: list[tuple[NamedServer, threading.Thread]] = []

    def __call__(self, name: str) -> NamedServer:
        server = NamedServer(name)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        self._started.append((server, thread))
        return server

    def stop_all(self) -> None:
        for server, thread in self._started:
            server.shutdown()
            server.server_close()
            thread.join()


@contextmanager
def named_backends() -> Iterator[Backends]:
    started = Backends()
    try:
        yield started
    finally:
        started.stop_all()


def backend(release: str, *servers: NamedServer | str, weight: int) -> Backend:
    addresses = tuple(s if isinstance(s, str) else s.address for s in servers)
    return Backend(release_id=release, version=release.upper(), addresses=addresses, weight=weight)
