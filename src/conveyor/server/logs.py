"""A job's log as bytes, for the API's ranges, the UI's tail-first view and the live
stream: from the blob store once the job finished, from its live file while it runs.

Logs are stored masked, one record per line: `<elapsed>\\t<stream>\\t<text>\\n`
(engine/joblog.py); ranges are byte offsets into that text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ConveyorError
from conveyor.server.context import ServerContext
from conveyor.service.queries import live_log_path

TAIL_BYTES = 64 * 1024  # what a log page loads first
MAX_RANGE = 1024 * 1024  # the most one request reads


@dataclass(frozen=True)
class LogSlice:
    offset: int  # where `data` starts
    data: bytes
    size: int  # the log's size now
    finished: bool  # the job ended: the log will not grow


def log_source(context: ServerContext, run_id: int, job_id: str) -> tuple[Path | None, bool]:
    """The file holding the log now, and whether the job has finished."""
    store = context.store
    job = store.get_job(run_id, job_id)
    if job.log_blob:
        return store.blobs.path(job.log_blob), True
    live = live_log_path(context.project, run_id, job)
    return (live if live.exists() else None), job.state.finished


def read_range(
    context: ServerContext, run_id: int, job_id: str, offset: int | None, length: int
) -> LogSlice:
    """`length` bytes from `offset`; `offset` None: the last `length` bytes."""
    path, finished = log_source(context, run_id, job_id)
    if path is None:
        return LogSlice(0, b"", 0, finished)
    length = max(0, min(length, MAX_RANGE))
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        start = max(0, size - length) if offset is None else min(max(0, offset), size)
        handle.seek(start)
        data = handle.read(min(length, size - start))
    return LogSlice(start, data, size, finished)


class LogTail:
    """Reads what a job's log gained since the last read (the live stream's one reader)."""

    def __init__(self, context: ServerContext, run_id: int, job_id: str) -> None:
        self.context = context
        self.run_id = run_id
        self.job_id = job_id
        self.offset = self._end_of_whole_lines()
        self.finished = False

    def _end_of_whole_lines(self) -> int:
        """Where a new reader starts: after the last whole line written so far. What came
        before, a viewer reads as a range (the page's tail, `logs` before following): a
        50 MB log is never pushed whole to every viewer that connects."""
        try:
            path, _finished = log_source(self.context, self.run_id, self.job_id)
        except (ConveyorError, OSError):  # an unknown job: `read_new` ends the stream
            return 0
        if path is None:
            return 0
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - MAX_RANGE))
            piece = handle.read()
        return size - len(piece) + piece.rfind(b"\n") + 1

    @classmethod
    def for_topic(cls, context: ServerContext, topic: str) -> LogTail:
        """From `log:<run>:<job>`."""
        _, run, job = topic.split(":", 2)
        return cls(context, int(run), job)

    def read_new(self) -> tuple[int, str] | None:
        """(offset, text) of the whole lines appended since the last read; None if none."""
        try:
            piece = read_range(self.context, self.run_id, self.job_id, self.offset, MAX_RANGE)
        except (ConveyorError, OSError):  # an unknown job, or a log being moved: end quietly
            self.finished = True
            return None
        whole = piece.data[: piece.data.rfind(b"\n") + 1] if not piece.finished else piece.data
        if piece.finished and piece.offset + len(piece.data) >= piece.size:
            self.finished = True
        if not whole:
            return None
        start = self.offset
        self.offset += len(whole)
        return start, whole.decode("utf-8", errors="replace")
