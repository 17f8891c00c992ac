"""The local executor: run a command as a subprocess in its own process group.

Output arrives through a `SubprocessProtocol` that splits it into lines as data comes in,
rather than through `asyncio.subprocess.Process`: `Process.wait()` only returns once the
output pipes close, so a background grandchild holding them open would hang the job.
Here the exit of the main process is noticed on its own, and then whatever is left of
its process group is killed so the pipes close.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from typing import cast

from conveyor.engine.executors.base import ExecRequest, ExecResult, LogSink, Stream
from conveyor.states import FailureClass

# Longer lines are delivered in pieces of this size, so one runaway line cannot eat memory.
MAX_LINE_BYTES = 8 * 1024 * 1024
# After the process group is killed, how long to wait for the output pipes to close; only
# a process that left the group (setsid, a daemon) can keep them open that long.
PIPE_DRAIN_TIMEOUT = 5.0

_STREAM_OF_FD = {1: Stream.STDOUT, 2: Stream.STDERR}


class LocalExecutor:
    name = "local"

    async def execute(self, request: ExecRequest, sink: LogSink) -> ExecResult:
        started = time.monotonic()
        if not request.argv:
            return ExecResult(None, FailureClass.INFRASTRUCTURE, 0.0, "empty command")
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _JobProtocol(sink, loop),
                *request.argv,
                cwd=request.cwd,
                env=request.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            detail = _start_failure(exc, request)
            return ExecResult(None, FailureClass.INFRASTRUCTURE, _since(started), detail)
        group = transport.get_pid()
        try:
            result = await _supervise(request, protocol, group, started)
        except asyncio.CancelledError:
            await _stop_group(group, protocol, request.kill_grace)
            raise
        finally:
            _signal_group(group, signal.SIGKILL)
            transport.close()
            protocol.flush()
        if protocol.sink_error is not None:
            detail = f"could not write the job's log: {protocol.sink_error}"
            return ExecResult(None, FailureClass.INFRASTRUCTURE, _since(started), detail)
        return result


async def _supervise(
    request: ExecRequest, protocol: _JobProtocol, group: int, started: float
) -> ExecResult:
    timed_out = False
    try:
        async with asyncio.timeout(request.timeout):
            returncode = await asyncio.shield(protocol.exited)
    except TimeoutError:
        timed_out = True
        returncode = await _stop_group(group, protocol, request.kill_grace)
    # Kill what the command left running in the background so the pipes close.
    _signal_group(group, signal.SIGKILL)
    await _drain(protocol)
    duration = _since(started)
    if timed_out:
        detail = f"timed out after {request.timeout:g}s"
        return ExecResult(None, FailureClass.TIMEOUT, duration, detail)
    return _result_of(returncode, duration)


async def _stop_group(group: int, protocol: _JobProtocol, grace: float) -> int:
    """SIGTERM the group, SIGKILL it if the main process outlives `grace`; its exit code."""
    _signal_group(group, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            return await asyncio.shield(protocol.exited)
    except TimeoutError:
        _signal_group(group, signal.SIGKILL)
        return await asyncio.shield(protocol.exited)


async def _drain(protocol: _JobProtocol) -> None:
    try:
        async with asyncio.timeout(PIPE_DRAIN_TIMEOUT):
            await asyncio.shield(protocol.pipes_closed)
    except TimeoutError:
        protocol.write_system("output pipes held open by a detached process; stopped reading")


def _result_of(returncode: int, duration: float) -> ExecResult:
    if returncode == 0:
        return ExecResult(0, None, duration)
    if returncode < 0:
        signum = -returncode
        detail = f"killed by signal {_signal_name(signum)}"
        return ExecResult(128 + signum, FailureClass.EXIT_CODE, duration, detail)
    return ExecResult(
        returncode, FailureClass.EXIT_CODE, duration, f"exited with code {returncode}"
    )


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _signal_group(group: int, signum: int) -> None:
    # ProcessLookupError: the whole group has exited. PermissionError: only members that
    # changed user (setuid programs) are left, and those are beyond our reach.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _start_failure(exc: OSError | ValueError, request: ExecRequest) -> str:
    program = request.argv[0]
    if not isinstance(exc, OSError):
        return f"cannot start {program}: {exc}"
    if exc.filename is not None and os.fsdecode(exc.filename) == os.fspath(request.cwd):
        return f"working directory {request.cwd}: {exc.strerror}"
    return f"cannot start {program}: {exc.strerror}"


def _since(started: float) -> float:
    return time.monotonic() - started


class _JobProtocol(asyncio.SubprocessProtocol):
    """Turns pipe data into log lines and reports the exit and the closing of the pipes."""

    def __init__(self, sink: LogSink, loop: asyncio.AbstractEventLoop) -> None:
        self._sink = sink
        self._splitters = {fd: _LineSplitter(stream) for fd, stream in _STREAM_OF_FD.items()}
        self._open_pipes = set(_STREAM_OF_FD)
        self.exited: asyncio.Future[int] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self.sink_error: Exception | None = None
        self._transport: asyncio.SubprocessTransport | None = None

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._deliver(self._splitters[fd].feed(data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._deliver(self._splitters[fd].finish())
        self._open_pipes.discard(fd)
        if not self._open_pipes and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.SubprocessTransport, transport)

    def process_exited(self) -> None:
        returncode = self._transport.get_returncode() if self._transport else None
        if returncode is not None and not self.exited.done():
            self.exited.set_result(returncode)

    def flush(self) -> None:
        for splitter in self._splitters.values():
            self._deliver(splitter.finish())

    def write_system(self, line: str) -> None:
        self._deliver([(Stream.SYSTEM, line)])

    def _deliver(self, lines: list[tuple[Stream, str]]) -> None:
        if self.sink_error is not None:
            return
        try:
            for stream, line in lines:
                self._sink.write(stream, line)
        except Exception as exc:  # a broken sink must not leave the process unsupervised
            self.sink_error = exc


class _LineSplitter:
    """Bytes in, complete decoded lines out; keeps the unfinished last line pending."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[tuple[Stream, str]]:
        *complete, rest = data.split(b"\n")
        if complete:
            complete[0] = bytes(self._pending) + complete[0]
            self._pending = bytearray(rest)
        else:
            self._pending += rest
        pieces = [piece for line in complete for piece in _pieces(line.removesuffix(b"\r"))]
        if len(self._pending) > MAX_LINE_BYTES:
            *full, tail = _pieces(bytes(self._pending))
            pieces.extend(full)
            self._pending = bytearray(tail)
        return [(self._stream, _decode(piece)) for piece in pieces]

    def finish(self) -> list[tuple[Stream, str]]:
        """The last line when the output did not end with a newline."""
        if not self._pending:
            return []
        line, self._pending = bytes(self._pending), bytearray()
        return [(self._stream, _decode(line.removesuffix(b"\r")))]


def _pieces(line: bytes) -> list[bytes]:
    """`line` cut into pieces of at most MAX_LINE_BYTES, never inside a UTF-8 character."""
    pieces: list[bytes] = []
    start = 0
    while len(line) - start > MAX_LINE_BYTES:
        cut = start + MAX_LINE_BYTES
        # UTF-8 continuation bytes are 10xxxxxx; a character has at most three of them.
        while cut > start + MAX_LINE_BYTES - 3 and line[cut] & 0xC0 == 0x80:
            cut -= 1
        pieces.append(line[start:cut])
        start = cut
    pieces.append(line[start:])
    return pieces


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")
