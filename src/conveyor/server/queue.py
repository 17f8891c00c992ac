"""The server's worker pool: claims queued runs from the store and runs each in a process
of its own, forked from the fork server (`run_process.py`), N at a time.

The queue is in the store, so nothing is lost with the server: at start, entries claimed
by a process that is gone (a server killed with SIGKILL) are queued again and their runs
are marked interrupted, as any `conveyor` command marks them; the rerun reuses every job
that had finished through the cache. Stopping the server (Ctrl-C, SIGTERM) cancels the
runs in progress as Ctrl-C cancels `conveyor run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from multiprocessing.process import BaseProcess

from starlette.concurrency import run_in_threadpool

from conveyor.errors import ConveyorError
from conveyor.server.context import ServerContext
from conveyor.service.queued_runs import settle_abandoned
from conveyor.service.runs import project_prefix
from conveyor.store import queue
from conveyor.store.procs import this_process

_log = logging.getLogger(__name__)
QUEUE_PART = "queue"
WORKERS_SETTING = "queue.workers"  # in ServerContext.parts, set by `conveyor server`
DEFAULT_WORKERS = 2
POLL_SECONDS = 0.25  # how soon an entry queued by another process (a webhook) starts
ORPHAN_POLLS = 20  # every 5 s, entries whose process died since are queued again
STOP_SECONDS = 15.0  # how long a stopping server waits for cancelled runs to record it


class WorkerPool:
    def __init__(self, context: ServerContext, workers: int) -> None:
        self.context = context
        self.workers = workers
        self.owner = this_process()
        self.running: dict[int, BaseProcess] = {}  # queue id -> its process
        self.prefix: str | None = None  # the project's folder in its repository
        self._wake = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Something was queued here: look now, not at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        polls = 0
        while True:
            self._wake.clear()
            polls += 1
            try:
                if polls % ORPHAN_POLLS == 0:
                    await run_in_threadpool(resume, self.context, set(self.running))
                await self._fill_slots()
            except Exception:  # a locked or unreachable store: try again at the next poll
                _log.exception("the run queue could not be read")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    async def _fill_slots(self) -> None:
        while len(self.running) < self.workers:
            entry = await run_in_threadpool(queue.claim_next, self.context.store.engine, self.owner)
            if entry is None:
                return
            await self._start(entry.id)

    async def _start(self, queue_id: int) -> None:
        from conveyor.server import run_process

        engine = self.context.store.engine
        try:
            process = await run_in_threadpool(
                run_process.start, self.context.project, queue_id, self.prefix
            )
        except Exception as error:
            _log.exception("queued run %s could not start", queue_id)
            reason = f"not started: its process could not start ({error})"
            await run_in_threadpool(queue.finish, engine, queue_id, queue.QueueState.DONE, reason)
            return
        self.running[queue_id] = process
        watcher = asyncio.create_task(self._watch(queue_id, process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, queue_id: int, process: BaseProcess) -> None:
        await _exited(process)
        process.join()
        self.running.pop(queue_id, None)
        context = self.context
        await run_in_threadpool(
            settle_abandoned, context.store, context.project, queue_id, process.exitcode
        )
        self._wake.set()

    def interrupt(self, queue_id: int) -> bool:
        """SIGINT to the process of a claimed entry (its run is cancelled, or, before it is
        recorded, the entry); False when no process of this server runs it."""
        process = self.running.get(queue_id)
        if process is None or process.pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGINT)
        return True

    async def stop(self) -> None:
        """Cancel the runs in progress and wait for them to record it."""
        for queue_id in list(self.running):
            self.interrupt(queue_id)
        if self._watchers:
            _, late = await asyncio.wait(set(self._watchers), timeout=STOP_SECONDS)
            for process in self.running.values():
                process.kill()
            if late:
                await asyncio.wait(late, timeout=STOP_SECONDS)


async def _exited(process: BaseProcess) -> None:
    """Wait, without a thread, until the process ends (its sentinel becomes readable)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    sentinel = process.sentinel

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(sentinel, ready)
    try:
        await done
    finally:
        loop.remove_reader(sentinel)


def configure_workers(context: ServerContext, workers: int) -> None:
    context.parts[WORKERS_SETTING] = workers


def pool_of(context: ServerContext) -> WorkerPool:
    pool = context.parts[QUEUE_PART]
    assert isinstance(pool, WorkerPool)
    return pool


def resume(context: ServerContext, watched: Collection[int] = ()) -> list[int]:
    """Queue again what a killed server had claimed (but the `watched` entries, which this
    server runs), and mark its runs interrupted; the ids of the entries queued again."""
    store = context.store
    requeued = queue.requeue_orphans(store.engine, watched)
    context.project.recover(store)
    return requeued


@asynccontextmanager
async def lifespan(context: ServerContext) -> AsyncIterator[None]:
    from conveyor.server import run_process

    workers = context.parts.get(WORKERS_SETTING, DEFAULT_WORKERS)
    assert isinstance(workers, int)
    await run_in_threadpool(resume, context)
    pool = WorkerPool(context, workers)
    with contextlib.suppress(ConveyorError):  # no repository: each run says so
        pool.prefix = await run_in_threadpool(project_prefix, context.project)
    context.parts[QUEUE_PART] = pool
    await run_in_threadpool(run_process.start_fork_server)
    task = asyncio.create_task(pool.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.stop()
