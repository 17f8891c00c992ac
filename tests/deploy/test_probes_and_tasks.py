"""The readiness check without a path (a TCP connect), and one-off tasks: streamed
output, exit codes, and a kill at the timeout that takes the task's children too."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from conftest import wait_until
from conveyor.deploy.model import HealthCheck
from conveyor.deploy.runtimes.probes import describe_check, probe_ok
from conveyor.deploy.runtimes.process import is_alive
from conveyor.deploy.runtimes.tasks import run_streaming


def test_a_check_without_a_path_passes_once_the_port_accepts_connections() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = int(listener.getsockname()[1])
        assert not probe_ok(port, HealthCheck(timeout=0.5))  # bound, not listening
        listener.listen()
        assert probe_ok(port, HealthCheck(timeout=0.5))
        assert not probe_ok(port, HealthCheck("/healthz", timeout=0.5))  # no HTTP answer
    assert describe_check(HealthCheck()) == "TCP connect"
    assert describe_check(HealthCheck("/ready")) == "/ready"


def test_a_task_streams_its_lines_and_returns_its_exit_code() -> None:
    lines: list[str] = []
    code = "import sys; print('one'); print('two', file=sys.stderr); sys.exit(4)"
    result = run_streaming(
        [sys.executable, "-c", code], cwd=None, env={}, timeout=30, on_line=lines.append
    )
    assert (result.exit_code, result.timed_out, result.succeeded) == (4, False, False)
    assert sorted(lines) == ["one", "two"]
    assert result.last_line in ("one", "two")


def test_a_missing_program_fails_like_a_shell_would() -> None:
    lines: list[str] = []
    result = run_streaming(["/nonexistent/x"], cwd=None, env={}, timeout=5, on_line=lines.append)
    assert result.exit_code == 127
    assert lines == ["cannot start '/nonexistent/x': No such file or directory"]


def test_a_task_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # only SIGKILL ends it
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('stuck', flush=True)\n"
        "time.sleep(600)\n"
    )
    started = time.monotonic()
    lines: list[str] = []
    result = run_streaming(
        [sys.executable, "-c", code], cwd=None, env={}, timeout=1.0, on_line=lines.append
    )
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 15
    assert lines == ["stuck"] and result.last_line == "stuck"
    child = int(pid_file.read_text())
    wait_until(lambda: not is_alive(child), "the task's child to be killed", 10)
