"""The scheduler: runs a plan's jobs as soon as their needs succeed, at most N at a time.

One asyncio task per job waits for its needs; a semaphore bounds how many execute at
once. Concurrency groups are cross-run locks held in the store, queued FIFO; waiting for
one does not take a parallelism slot. Cancelling the returned coroutine cancels every
job: executors kill their process groups and jobs are recorded as cancelled.
"""

from __future__ import annotations

import asyncio
import time

from conveyor.engine.plan import Plan, PlannedJob, PlanStatus
from conveyor.engine.runner import JobRunner
from conveyor.states import JobState
from conveyor.store.records import LockState

LOCK_POLL_SECONDS = 0.2


class Scheduler:
    def __init__(self, plan: Plan, runner: JobRunner, parallelism: int) -> None:
        self.plan = plan
        self.runner = runner
        self.slots = asyncio.Semaphore(max(1, parallelism))
        self.states: dict[str, JobState] = {}
        self._done: dict[str, asyncio.Event] = {}

    async def run(self) -> dict[str, JobState]:
        tasks = []
        for job in self.plan.jobs:
            self._done[job.id] = asyncio.Event()
            if job.status is PlanStatus.INCLUDED:
                tasks.append(asyncio.create_task(self._run_job(job), name=job.id))
            else:
                self.states[job.id] = _settled_state(job.status)
                self._done[job.id].set()
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return self.states

    async def _run_job(self, job: PlannedJob) -> None:
        try:
            for need in job.needs:
                await self._done[need].wait()
            failed = [need for need in job.needs if not self.states[need].succeeded]
            if failed:
                reason = f"needs '{failed[0]}', which {self.states[failed[0]].value}"
                self.runner.transition(job.id, JobState.BLOCKED, reason, finished_at=time.time())
                self.states[job.id] = JobState.BLOCKED
                return
            self.states[job.id] = await self._run_locked(job)
        except asyncio.CancelledError:
            self.states.setdefault(job.id, JobState.CANCELLED)
            raise
        finally:
            self._done[job.id].set()

    async def _run_locked(self, job: PlannedJob) -> JobState:
        if job.concurrency_group is None:
            return await self.runner.run(job, self.slots)
        store, run_id = self.runner.ctx.store, self.runner.ctx.run_id
        supersede = bool(job.job.concurrency and job.job.concurrency.supersede)
        ticket = store.lock_enqueue(job.concurrency_group, run_id, job.id, supersede=supersede)
        try:
            if not await self._wait_for_lock(job, ticket.id):
                return JobState.SUPERSEDED
            return await self.runner.run(job, self.slots)
        finally:
            store.lock_release(ticket.id)

    async def _wait_for_lock(self, job: PlannedJob, ticket_id: int) -> bool:
        store = self.runner.ctx.store
        waiting = False
        while True:
            state = store.lock_poll(ticket_id)
            if state is LockState.HOLDING:
                return True
            if state is LockState.SUPERSEDED:
                reason = (
                    f"a newer run took its place in concurrency group '{job.concurrency_group}'"
                )
                self.runner.transition(job.id, JobState.SUPERSEDED, reason, finished_at=time.time())
                return False
            if not waiting:
                reason = f"queued on concurrency group '{job.concurrency_group}'"
                self.runner.transition(job.id, JobState.WAITING, reason)
                waiting = True
            await asyncio.sleep(LOCK_POLL_SECONDS)


def _settled_state(status: PlanStatus) -> JobState:
    return {
        PlanStatus.SKIPPED: JobState.SKIPPED,
        PlanStatus.BLOCKED: JobState.BLOCKED,
        PlanStatus.KEPT: JobState.CACHED,
    }[status]
