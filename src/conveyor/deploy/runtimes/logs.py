"""Replica logs rotated by size: `replica-<i>.log`, then `.1` (newest) to `.<keep>`.

A replica's stdout and stderr reach its supervisor through a pipe; a pump thread copies
them into a `RotatingLog`, which moves the file aside before a write would take it past
`max_bytes` and drops the oldest generation. So a replica that logs forever uses at most
about (keep + 1) x max_bytes of disk. The pump keeps the last bytes it saw: a crashed
replica's last words, whatever file they landed in.

Each line gets the time the pump read it as a prefix, `2026-12-07T05:30:00.123Z ` (UTC,
milliseconds), once per chunk with one `bytes.replace` (no per-line Python): the lines of a
chunk share their stamp. Readers (`deploy/log_lines.py`) take it as the line's time, so
plain lines can be filtered by time and replicas' lines merged in order.

The limits come from the environment of the process that starts a release (the CLI):
CONVEYOR_REPLICA_LOG_MAX_BYTES (default 10 MiB) and CONVEYOR_REPLICA_LOG_KEEP (default 3
older files); the supervisor reads them from release.json.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from conveyor.errors import ConveyorError

MAX_BYTES_ENV = "CONVEYOR_REPLICA_LOG_MAX_BYTES"
KEEP_ENV = "CONVEYOR_REPLICA_LOG_KEEP"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP = 3
TAIL_BYTES = 4096
_CHUNK = 65536


@dataclass(frozen=True)
class LogLimits:
    max_bytes: int = DEFAULT_MAX_BYTES  # a file is moved aside before it grows past this
    keep: int = DEFAULT_KEEP  # older files kept beside the current one

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LogLimits:
        return cls(
            max_bytes=_positive(env, MAX_BYTES_ENV, DEFAULT_MAX_BYTES, minimum=1024),
            keep=_positive(env, KEEP_ENV, DEFAULT_KEEP, minimum=0),
        )


def _positive(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < minimum:
        raise ConveyorError(
            f"{name} must be a whole number >= {minimum}, not {text!r}",
            hint=f"unset it for the default ({default})",
        )
    return int(text)


class RotatingLog:
    """An append-only file that moves itself aside at `limits.max_bytes`."""

    def __init__(self, path: Path, limits: LogLimits) -> None:
        self.path = path
        self.limits = limits
        self._file: BinaryIO = path.open("ab")
        self._size = self._file.tell()
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._file.closed:
                return  # a grandchild still writing after its replica's supervisor stopped
            # A stamped chunk may outgrow a file: it is split, at a line end if it has one.
            limit = self.limits.max_bytes
            while len(data) > limit:
                cut = data.rfind(b"\n", 0, limit) + 1 or limit
                self._write(data[:cut])
                data = data[cut:]
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self._size and self._size + len(data) > self.limits.max_bytes:
            self._rotate()
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def generations(self) -> list[Path]:
        """The current file, then the older ones that exist, newest first."""
        older = (self._older(n) for n in range(1, self.limits.keep + 1))
        return [self.path, *(path for path in older if path.exists())]

    def _rotate(self) -> None:
        self._file.close()
        if self.limits.keep == 0:
            self.path.unlink(missing_ok=True)
        else:
            self._older(self.limits.keep).unlink(missing_ok=True)
            for n in range(self.limits.keep - 1, 0, -1):
                if self._older(n).exists():
                    os.replace(self._older(n), self._older(n + 1))
            os.replace(self.path, self._older(1))
        self._file = self.path.open("ab")
        self._size = 0

    def _older(self, generation: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{generation}")


STAMP_LENGTH = 25  # "2026-12-07T05:30:00.123Z "


def stamp(now: float) -> bytes:
    """The prefix of every line read at `now` (epoch seconds)."""
    whole = int(now)
    millis = int((now - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)).encode() + b".%03dZ " % millis


class Stamper:
    """Prefixes each line of a byte stream with the time it was read."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.at_line_start = True

    def __call__(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        prefix = stamp(self.clock())
        body = chunk[:-1].replace(b"\n", b"\n" + prefix) + chunk[-1:]
        stamped = prefix + body if self.at_line_start else body
        self.at_line_start = chunk.endswith(b"\n")
        return stamped


class Pump:
    """Copies a replica's output pipe into its log on a thread, keeping the last bytes."""

    def __init__(self, source: IO[bytes], log: RotatingLog) -> None:
        self.source = source
        self.log = log
        self.tail = b""
        self.stamper = Stamper()
        self.thread = threading.Thread(target=self._run, name=f"pump {log.path.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        descriptor = self.source.fileno()
        while chunk := os.read(descriptor, _CHUNK):
            self.log.write(self.stamper(chunk))
            self.tail = (self.tail + chunk)[-TAIL_BYTES:]
        self.source.close()

    def join(self, timeout: float) -> None:
        """Until the pipe ends; a detached grandchild may hold it open, so not forever."""
        self.thread.join(timeout)

    def last_line(self) -> str:
        """The last non-empty line the replica wrote (its last words, after a crash)."""
        lines = [line.strip() for line in self.tail.decode(errors="replace").splitlines()]
        lines = [line for line in lines if line]
        return lines[-1] if lines else ""
