"""Real servers the tests start: wait until one answers, and stop it."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

READY_SECONDS = 30.0  # only bounds a broken server; they start in about a second
STOP_SECONDS = 10.0


def wait_until_answering(
    process: subprocess.Popen[bytes], url: str, name: str, log_path: Path
) -> None:
    """Until `url` answers 200; fails the test (with the server's log) if the server
    exits or never answers."""
    deadline = time.monotonic() + READY_SECONDS
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{name} exited {process.returncode}: {log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.02)
    pytest.fail(f"{name} did not answer {url} in time: {log_path.read_text()}")


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers_health(url: str) -> bool:
    """Whether a `conveyor server` at `url` answers its /healthz now."""
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    return False


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_SECONDS)


# What a fake answers a POST: (status, JSON body), given (path, lowercased headers, body
# decoded as JSON or None when it is not JSON).
PostAnswer = Callable[[str, dict[str, str], Any], tuple[int, Any]]


@contextlib.contextmanager
def json_post_server(answer: PostAnswer) -> Iterator[str]:
    """A local HTTP server answering POSTs with `answer`, for fakes of hosted APIs (the
    forges' status and issue endpoints); yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, reply = answer(self.path, headers, body)
            payload = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
