"""The demo's background services, left running like the demo's environments: the flag
evaluation API the shop's production replicas ask (`conveyor flags serve`, started first),
and at the end `conveyor server` over the demo's project, so its runs, releases and
approvals can be seen in the browser. A second demo replaces the first one's."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from conveyor.errors import ConveyorError
from conveyor.service.project import Project

PREFERRED_PORT = 8080
READY_SECONDS = 30.0
# Where the demo's background services' pids are kept: outlives demo repositories.
DEMO_PID_DIR = Path(tempfile.gettempdir()) / "conveyor-demo"
PID_FILE = "server.pid"
LOG_FILE = "server.log"
# The shop's conveyor.yml names this address as production's CONVEYOR_FLAGS_URL.
FLAGS_PORT = 4242
FLAGS_PID_FILE = "flags.pid"
FLAGS_LOG_FILE = "flags.log"
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
    argv = ["server", "-f", str(project.spec_path), "--port", str(port)]
    pid = _start_detached(project, argv, log, pid_dir / PID_FILE, url + "/healthz")
    return DemoServer(url=url, pid=pid, log=log, login_link=_login_link(log))


def flags_port(pid_dir: Path) -> int:
    """FLAGS_PORT, the one examples/shop's conveyor.yml names, once the previous demo's
    flag server is stopped; any free port if something else holds it."""
    stop_demo_server(pid_dir, FLAGS_PID_FILE)
    return FLAGS_PORT if _free(FLAGS_PORT) else _any_free_port()


def start_flag_server(project: Project, pid_dir: Path, port: int) -> str:
    """Start `conveyor flags serve` on `port` for `project`, detached; its URL."""
    url = f"http://127.0.0.1:{port}"
    log = project.state_dir / FLAGS_LOG_FILE
    argv = ["flags", "serve", "-f", str(project.spec_path), "--port", str(port)]
    _start_detached(project, argv, log, pid_dir / FLAGS_PID_FILE, url + "/healthz")
    return url


def _start_detached(
    project: Project, argv: list[str], log: Path, pid_file: Path, health_url: str
) -> int:
    """`conveyor ARGV` in its own session, its output in `log`, its pid in `pid_file`;
    returns once `health_url` answers 200."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *argv],
            cwd=project.directory,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # it outlives the demo, like the environments
        )
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(process.pid))
    _wait_until_healthy(process, health_url, log)
    # Left running on purpose, in its own session: nobody here waits for it.
    process.returncode = 0
    return process.pid


def stop_demo_server(pid_dir: Path, name: str = PID_FILE) -> bool:
    """Stop the server a previous demo left running; whether there was one."""
    pid_file = pid_dir / name
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    pid_file.unlink(missing_ok=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
        return True
    return False


def _wait_until_healthy(process: subprocess.Popen[bytes], health_url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ConveyorError(
                    f"the demo's server exited ({process.returncode})",
                    hint=f"its log: {log}",
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get(health_url).status_code == 200:
                    return
            time.sleep(0.1)
    raise ConveyorError(f"the demo's server did not answer at {health_url}", hint=f"its log: {log}")


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
