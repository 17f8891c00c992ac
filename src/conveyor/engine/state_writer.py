"""Job state changes written off the engine's critical path.

A job's states (running, then success) used to be written to the store by the event
loop itself: two write transactions per job, about a millisecond each, between one job's
end and the next one's start. A writer thread takes them instead, in the order they
happened, several per transaction when they queue up, each stamped with its own time;
the engine goes on at once. `flush` waits until everything queued is written (the run's
end, an abnormal end, a cache hit on this run's own job) and raises what failed.

What a crash can lose is the last few milliseconds of state: the run is marked
interrupted anyway, and its finished jobs are reused from the cache, which is written
synchronously before their state.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from conveyor.errors import InfrastructureError
from conveyor.states import JobState
from conveyor.store.records import JobStateChange
from conveyor.store.store import Store

_STOP = None


class JobStateWriter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: queue.SimpleQueue[JobStateChange | None] = queue.SimpleQueue()
        self._pending = 0
        self._idle = threading.Condition()
        self._failure: Exception | None = None
        self._thread: threading.Thread | None = None

    def put(self, run_id: int, job_id: str, state: JobState, fields: Mapping[str, Any]) -> None:
        change = JobStateChange(run_id, job_id, state, dict(fields), time.time())
        with self._idle:
            self._pending += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._write, name="job-states", daemon=True)
            self._thread.start()
        self._queue.put(change)

    def flush(self) -> None:
        """Wait until every change queued so far is written; raise the first failure."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0)
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._thread is not None:
                self._queue.put(_STOP)
                self._thread.join()
                self._thread = None

    def _write(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while True:  # whatever queued up meanwhile goes in the same transaction
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(_STOP)  # after this batch
                    break
                batch.append(more)
            self._write_batch(batch)
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()

    def _write_batch(self, batch: list[JobStateChange]) -> None:
        try:
            self.store.set_job_states(batch)
        except Exception:
            # One bad change (an illegal transition) must not lose the others: one by one.
            for change in batch:
                try:
                    self.store.set_job_states([change])
                except Exception as error:
                    self._remember(error)

    def _remember(self, error: Exception) -> None:
        with self._idle:
            if self._failure is None:
                self._failure = (
                    error
                    if isinstance(error, InfrastructureError)
                    else InfrastructureError(f"a job state could not be recorded: {error}")
                )
