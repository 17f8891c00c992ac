"""The real server: `python -m app` as a subprocess, exercised over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SHOP_ROOT = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE_S = 10.0
SHUTDOWN_DEADLINE_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(http: httpx.Client, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"server exited with {server.returncode}:\n{log.read_text()}")
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"server not healthy after {STARTUP_DEADLINE_S}s:\n{log.read_text()}")


def stop(server: subprocess.Popen[bytes]) -> int:
    server.terminate()  # SIGTERM: uvicorn finishes in-flight requests and exits
    try:
        return server.wait(timeout=SHUTDOWN_DEADLINE_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        raise


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    """A running server on a free port with a fresh database; yields a client and its log."""
    workdir = tmp_path_factory.mktemp("shop")
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SHOP_DB": str(workdir / "shop.db"),
        "SHOP_VERSION": "9.9.9-test",
        "SHOP_FAULT_RATE": "0",
        "SHOP_EXTRA_LATENCY_MS": "0",
    }
    log = workdir / "server.log"
    with (
        log.open("wb") as log_file,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http,
    ):
        server = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=SHOP_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_healthy(http, server, log)
            yield http, log
        finally:
            exit_code = stop(server)
        # Recent uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is clean too.
        assert exit_code in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text()


def test_health_reports_the_deployed_version(served: tuple[httpx.Client, Path]) -> None:
    http, _ = served

    assert http.get("/healthz").json() == {"status": "ok", "version": "9.9.9-test"}
    assert http.get("/version").json() == {"version": "9.9.9-test"}


def test_create_list_get_delete_over_http(served: tuple[httpx.Client, Path]) -> None:
    http, _ = served

    created = http.post("/api/products", json={"name": "Espresso cup", "price": 6.5})
    assert created.status_code == 201
    location = created.headers["location"]
    product = created.json()

    assert product in http.get("/api/products").json()
    assert http.get(location).json() == product
    assert "Espresso cup" in http.get("/").text

    assert http.delete(location).status_code == 204
    assert http.get(location).status_code == 404
    assert product not in http.get("/api/products").json()


def test_invalid_product_is_refused_over_http(served: tuple[httpx.Client, Path]) -> None:
    http, _ = served

    assert http.post("/api/products", json={"name": "", "price": -1}).status_code == 422


def test_metrics_expose_the_request_counter(served: tuple[httpx.Client, Path]) -> None:
    http, _ = served
    http.get("/healthz")

    exposition = http.get("/metrics").text

    assert "# TYPE shop_http_requests_total counter" in exposition
    assert 'shop_http_requests_total{method="GET",route="/healthz",status="200"}' in exposition
    assert 'shop_build_info{version="9.9.9-test"} 1.0' in exposition
