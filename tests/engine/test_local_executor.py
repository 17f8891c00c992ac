import asyncio
import os
import select
import signal
import sys
from pathlib import Path

import pytest

from conveyor.engine.executors import local
from conveyor.engine.executors.base import ExecRequest, ExecResult, Stream
from conveyor.engine.executors.local import LocalExecutor
from conveyor.states import FailureClass

pytestmark = pytest.mark.timeout(30)  # a hang here is a bug: fail fast instead


class ListSink:
    def __init__(self) -> None:
        self.lines: list[tuple[Stream, str]] = []
        self.first_line = asyncio.Event()

    def write(self, stream: Stream, line: str) -> None:
        self.lines.append((stream, line))
        self.first_line.set()

    def of(self, stream: Stream) -> list[str]:
        return [line for s, line in self.lines if s is stream]


def request(argv: list[str], cwd: Path, **options: float) -> ExecRequest:
    return ExecRequest(argv=argv, cwd=cwd, env=dict(os.environ), **options)


def execute(req: ExecRequest) -> tuple[ExecResult, ListSink]:
    async def scenario() -> tuple[ExecResult, ListSink]:
        sink = ListSink()
        return await LocalExecutor().execute(req, sink), sink

    return asyncio.run(scenario())


def has_exited(pid: int, within: float = 10.0) -> bool:
    """Wait (at most `within` seconds) for a process that is not our child to end."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], within)
        return bool(readable)
    finally:
        os.close(pidfd)


def bash(script: str, cwd: Path, **options: float) -> ExecRequest:
    return request(["bash", "-c", script], cwd, **options)


def test_success(tmp_path: Path) -> None:
    result, sink = execute(bash("echo hello", tmp_path))
    assert result.ok
    assert result.exit_code == 0
    assert result.failure is None
    assert result.duration > 0
    assert sink.lines == [(Stream.STDOUT, "hello")]


def test_non_zero_exit(tmp_path: Path) -> None:
    result, _ = execute(bash("exit 3", tmp_path))
    assert result.exit_code == 3
    assert result.failure is FailureClass.EXIT_CODE
    assert "3" in result.detail


def test_killed_by_a_signal_reports_128_plus_signum(tmp_path: Path) -> None:
    script = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    result, _ = execute(request([sys.executable, "-c", script], tmp_path))
    assert result.exit_code == 143
    assert result.failure is FailureClass.EXIT_CODE
    assert "SIGTERM" in result.detail


def test_lines_of_each_stream_arrive_in_order(tmp_path: Path) -> None:
    script = "printf 'o1\\no2\\n'; printf 'e1\\n' >&2; echo o3; printf 'e2\\r\\ne3' >&2; printf o4"
    result, sink = execute(bash(script, tmp_path))
    assert result.ok
    assert sink.of(Stream.STDOUT) == ["o1", "o2", "o3", "o4"]
    assert sink.of(Stream.STDERR) == ["e1", "e2", "e3"]


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    result, sink = execute(bash("printf 'ok \\377\\n'", tmp_path))
    assert result.ok
    assert sink.of(Stream.STDOUT) == ["ok \ufffd"]


def test_env_and_cwd_are_honoured(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "GREETING": "hi there"}
    req = ExecRequest(
        argv=["bash", "-c", 'echo "$GREETING"; pwd -P; echo "${HOME-unset}"'],
        cwd=tmp_path,
        env=env,
    )
    result, sink = execute(req)
    assert result.ok
    assert sink.of(Stream.STDOUT) == ["hi there", str(tmp_path.resolve()), "unset"]


def test_a_one_megabyte_line_without_newline_is_delivered(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write('x' * 1_000_000)"
    result, sink = execute(request([sys.executable, "-c", script], tmp_path))
    assert result.ok
    assert sink.of(Stream.STDOUT) == ["x" * 1_000_000]


def test_overlong_lines_are_split_without_breaking_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "MAX_LINE_BYTES", 10)
    result, sink = execute(bash("printf 'aaaaaaaaa\\xc3\\xa9bbbbb\\nshort\\n'", tmp_path))
    assert result.ok
    assert sink.of(Stream.STDOUT) == ["aaaaaaaaa", "ébbbbb", "short"]


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    req = bash("sleep 100 & echo $!; wait", tmp_path, timeout=0.5, kill_grace=5)
    result, sink = execute(req)
    assert result.failure is FailureClass.TIMEOUT
    assert result.exit_code is None
    assert result.detail == "timed out after 0.5s"
    (grandchild,) = sink.of(Stream.STDOUT)
    assert has_exited(int(grandchild))


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    req = bash("trap '' TERM; sleep 100 & echo $!; wait", tmp_path, timeout=0.3, kill_grace=0.3)
    result, sink = execute(req)
    assert result.failure is FailureClass.TIMEOUT
    (grandchild,) = sink.of(Stream.STDOUT)
    assert has_exited(int(grandchild))


def test_background_process_left_after_a_normal_exit_is_killed(tmp_path: Path) -> None:
    # The grandchild keeps stdout and stderr open; reading them must not wait for it.
    result, sink = execute(bash("sleep 100 & echo $!", tmp_path))
    assert result.ok
    (grandchild,) = sink.of(Stream.STDOUT)
    assert has_exited(int(grandchild))


def test_cancellation_kills_the_group_and_reraises(tmp_path: Path) -> None:
    async def scenario() -> ListSink:
        sink = ListSink()
        req = bash("sleep 100 & echo $$ $!; wait", tmp_path, kill_grace=5)
        task = asyncio.create_task(LocalExecutor().execute(req, sink))
        await sink.first_line.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return sink

    sink = asyncio.run(scenario())
    (pids,) = sink.of(Stream.STDOUT)
    for pid in pids.split():
        assert has_exited(int(pid))


@pytest.mark.parametrize("argv0", ["definitely-not-a-command-5f1c", "./not-executable.sh"])
def test_command_that_cannot_start_is_an_infrastructure_failure(tmp_path: Path, argv0: str) -> None:
    (tmp_path / "not-executable.sh").write_text("#!/bin/sh\necho hi\n")
    result, sink = execute(request([argv0], tmp_path))
    assert result.failure is FailureClass.INFRASTRUCTURE
    assert result.exit_code is None
    assert argv0 in result.detail
    assert sink.lines == []


@pytest.mark.parametrize("cwd_name", ["missing", "a-file"])
def test_bad_working_directory_is_an_infrastructure_failure(tmp_path: Path, cwd_name: str) -> None:
    (tmp_path / "a-file").write_text("")
    result, _ = execute(bash("true", tmp_path / cwd_name))
    assert result.failure is FailureClass.INFRASTRUCTURE
    assert "working directory" in result.detail
    assert cwd_name in result.detail


def test_a_failing_log_sink_is_an_infrastructure_failure(tmp_path: Path) -> None:
    class BrokenSink:
        def write(self, stream: Stream, line: str) -> None:
            raise OSError("disk full")

    async def scenario() -> ExecResult:
        return await LocalExecutor().execute(bash("echo hi", tmp_path), BrokenSink())

    result = asyncio.run(scenario())
    assert result.failure is FailureClass.INFRASTRUCTURE
    assert "disk full" in result.detail


ESCAPE_THE_GROUP = """
import os
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.setsid()
    os.execvp("sleep", ["sleep", "100"])
os.close(write_end)
os.read(read_end, 1)  # EOF once the child has exec'd: the pipe is close-on-exec
print(pid)
"""


def test_detached_process_holding_the_pipes_does_not_hang_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new session leaves the process group, so the executor cannot kill it; it must
    # stop reading instead of waiting for the pipes to close.
    monkeypatch.setattr(local, "PIPE_DRAIN_TIMEOUT", 0.2)
    result, sink = execute(request([sys.executable, "-c", ESCAPE_THE_GROUP], tmp_path))
    (escaped,) = sink.of(Stream.STDOUT)
    os.kill(int(escaped), signal.SIGKILL)
    assert result.ok
    assert any("held open" in line for line in sink.of(Stream.SYSTEM))
