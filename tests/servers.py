"""Real servers the tests start: wait until one answers, and stop it."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

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


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_SECONDS)
