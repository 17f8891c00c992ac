"""One-off tasks in a release's image (release hooks): run a command to its end, stream
its output line by line, kill it at its timeout.

A runtime builds the command (a process in the release's unpacked image, a `podman run`)
and hands it here; `kill` is how that runtime stops what the command started (the
process group; for podman, the container too, which the client's death leaves running).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

LineSink = Callable[[str], None]
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a task past its timeout
_LINE_LIMIT = 64 * 1024  # a longer line is cut in pieces
_READER_DRAIN = 2.0  # seconds the reader may take to pass on the last output


@dataclass(frozen=True)
class TaskResult:
    exit_code: int | None  # None: killed at its timeout
    seconds: float
    last_line: str = ""  # the task's last words, for the failure's reason

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def run_streaming(
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str],
    timeout: float,
    on_line: LineSink,
    kill: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> TaskResult:
    """Run `argv` in a session of its own (so its children can be killed with it)."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:
        message = f"cannot start {argv[0]!r}: {error.strerror or error}"
        on_line(message)
        return TaskResult(127, time.monotonic() - started, message)
    assert process.stdout is not None  # a pipe: asked for above
    reader = _Reader(process.stdout, on_line)
    try:
        code: int | None = process.wait(timeout)
    except subprocess.TimeoutExpired:
        (kill or kill_group)(process)
        code = None
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(KILL_GRACE + 1)
    reader.join(_READER_DRAIN)
    return TaskResult(code, time.monotonic() - started, reader.last_line)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the task's process group, SIGKILL it after a grace: what it started dies
    with it (a task in a session of its own leads its group)."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        if wait is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait)
            # The leader is gone; its children may not be: SIGKILL what is left.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            return


class _Reader:
    """Passes each line of the task's output on, from a thread of its own (a daemon: a
    grandchild that keeps the pipe open must not hold the deploy)."""

    def __init__(self, stream: IO[bytes], on_line: LineSink) -> None:
        self.stream = stream
        self.on_line = on_line
        self.last_line = ""
        self.thread = threading.Thread(target=self._run, name="task output", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.stream:
            for raw in iter(lambda: self.stream.readline(_LINE_LIMIT), b""):
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line.strip():
                    self.last_line = line
                self.on_line(line)

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
