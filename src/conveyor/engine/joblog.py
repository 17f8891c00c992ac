"""A job's log: masked lines written to a file as they come, and to the live reporter."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

from conveyor.engine.executors.base import Stream
from conveyor.engine.mask import Masker
from conveyor.engine.names import safe_name
from conveyor.engine.report import Reporter

LOG_SEPARATOR = "\t"


class JobLog:
    """Implements LogSink. Masking happens here, before a line goes anywhere."""

    def __init__(self, path: Path, job_id: str, masker: Masker, reporter: Reporter) -> None:
        self.path = path
        self._job_id = job_id
        self._masker = masker
        self._reporter = reporter
        self._started = time.monotonic()
        self._file: TextIO = path.open("a", encoding="utf-8", buffering=1)

    def write(self, stream: Stream, line: str) -> None:
        masked = self._masker.mask(line)
        elapsed = time.monotonic() - self._started
        self._file.write(f"{elapsed:.3f}{LOG_SEPARATOR}{stream.value}{LOG_SEPARATOR}{masked}\n")
        self._reporter.job_log(self._job_id, stream, masked)

    def replay(self, earlier: bytes) -> None:
        """Copy an earlier log (already masked) in, without showing it live again."""
        self._file.write(earlier.decode("utf-8", errors="replace"))

    def close(self) -> None:
        self._file.close()


def parse_log_line(raw: str) -> tuple[float, Stream, str]:
    elapsed, stream, text = raw.rstrip("\n").split(LOG_SEPARATOR, 2)
    return float(elapsed), Stream(stream), text


def log_filename(job_id: str) -> str:
    return safe_name(job_id) + ".log"
