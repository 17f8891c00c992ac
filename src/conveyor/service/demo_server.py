"""The demo's last step: `conveyor server` over the demo's project, left running in the
background like the demo's environments, so its runs, releases and approvals can be seen
in the browser. A second demo replaces the first one's server."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from conveyor.errors import ConveyorError
from conveyor.service.project import Project

PREFERRED_PORT = 8080
READY_SECONDS = 30.0
PID_FILE = "server.pid"
LOG_FILE = "server.log"
_LOGIN_LINE = re.compile(r"Log in as (?P<user>\S+): (?P<url>\S+)")


@dataclass(frozen=True)
class DemoServer:
    url: str
    pid: int
    log: Path
    login_link: str | None  # the first admin's one-time link, when the server printed one


def start_demo_server(project: Project, pid_dir: Path) -> DemoServer:
    """Start `conveyor server` for `project`, detached; stops the previous demo's first.
    `pid_dir` outlives demo repositories (the demo makes a new one each time)."""
    stop_demo_server(pid_dir)
    port = PREFERRED_PORT if _free(PREFERRED_PORT) else _any_free_port()
    url = f"http://127.0.0.1:{port}"
    log = project.state_dir / LOG_FILE
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "server",
                "-f",
                str(project.spec_path),
                "--port",
                str(port),
            ],
            cwd=project.directory,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # it outlives the demo, like the environments
        )
    pid_dir.mkdir(parents=True, exist_ok=True)
    (pid_dir / PID_FILE).write_text(str(process.pid))
    _wait_until_healthy(process, url, log)
    # Left running on purpose, in its own session: nobody here waits for it.
    process.returncode = 0
    return DemoServer(url=url, pid=process.pid, log=log, login_link=_login_link(log))


def stop_demo_server(pid_dir: Path) -> bool:
    """Stop the server a previous demo left running; whether there was one."""
    pid_file = pid_dir / PID_FILE
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    pid_file.unlink(missing_ok=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
        return True
    return False


def _wait_until_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ConveyorError(
                    f"the demo's server exited ({process.returncode})",
                    hint=f"its log: {log}",
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get(url + "/healthz").status_code == 200:
                    return
            time.sleep(0.1)
    raise ConveyorError(f"the demo's server did not answer at {url}", hint=f"its log: {log}")


def _login_link(log: Path) -> str | None:
    # The server prints the link before it serves; it is in the log by now.
    found = _LOGIN_LINE.search(log.read_text(errors="replace"))
    return found["url"] if found else None


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
