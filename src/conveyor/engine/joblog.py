"""A job's log: masked lines written to a file as they come, and to the live reporter."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

from conveyor.engine.executors.base import Stream
from conveyor.engine.mask import Masker, MaskingSink
from conveyor.engine.names import safe_name
from conveyor.engine.report import Reporter
from conveyor.store.private import open_private_append

LOG_SEPARATOR = "\t"


class _FileAndReporter:
    """Where a job's (already masked) lines go: its log file and the live reporter."""

    def __init__(self, path: Path, job_id: str, reporter: Reporter) -> None:
        self.job_id = job_id
        self.reporter = reporter
        self.started = time.monotonic()
        self.file: TextIO = open_private_append(path)  # 0600: a log is its owner's

    def write(self, stream: Stream, line: str) -> None:
        elapsed = time.monotonic() - self.started
        # One record per physical line: a multi-line `run: |` command is echoed whole.
        for piece in line.split("\n"):
            self.file.write(f"{elapsed:.3f}{LOG_SEPARATOR}{stream.value}{LOG_SEPARATOR}{piece}\n")
            self.reporter.job_log(self.job_id, stream, piece)


class JobLog(MaskingSink):
    """A job's LogSink: every line is masked before it reaches the file or the terminal."""

    def __init__(self, path: Path, job_id: str, masker: Masker, reporter: Reporter) -> None:
        self.path = path
        self._out = _FileAndReporter(path, job_id, reporter)
        super().__init__(self._out, masker)

    def replay(self, earlier: bytes) -> None:
        """Copy an earlier log (already masked) in, without showing it live again."""
        self._out.file.write(earlier.decode("utf-8", errors="replace"))

    def close(self) -> None:
        self._out.file.close()


def parse_log_line(raw: str) -> tuple[float, Stream, str]:
    elapsed, stream, text = raw.rstrip("\n").split(LOG_SEPARATOR, 2)
    return float(elapsed), Stream(stream), text


def log_filename(job_id: str) -> str:
    return safe_name(job_id) + ".log"
