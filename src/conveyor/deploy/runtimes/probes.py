"""Readiness and liveness checks of one replica on 127.0.0.1, shared by the runtimes."""

from __future__ import annotations

import socket
import urllib.request

from conveyor.deploy.model import HealthCheck

HOST = "127.0.0.1"


def probe_ok(port: int, check: HealthCheck) -> bool:
    """A GET of the check's path answers 2xx or 3xx; without a path, the port accepts a
    TCP connection (what most apps offer: few have a health page)."""
    if check.path is None:
        return tcp_ok(port, check.timeout)
    url = f"http://{HOST}:{port}{check.path}"
    try:
        with urllib.request.urlopen(url, timeout=check.timeout) as response:
            return 200 <= int(response.status) < 400
    except (OSError, ValueError):  # URLError, HTTPError, timeouts and resets are OSErrors
        return False


def tcp_ok(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def describe_check(check: HealthCheck) -> str:
    return check.path or "TCP connect"
