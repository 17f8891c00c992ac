"""Commit statuses back to the forge: pending when a run is queued, running when it
starts, then success, failure or error, each linking to the run's page (a queue entry's
before the run exists), one status context per pipeline (`conveyor/<pipeline>`).

It follows the store's event log as the event hub does (run.queued, run.created,
run.state, run.dequeued) and acts only on runs whose trigger names a forge. Sending
happens in tasks of their own, retried with capped backoff, so a forge that is down
never slows a run; each status sent or given up is a `forge.status` event. Statuses of
one commit and context go out in order, and a newer one supersedes an older one still
retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from conveyor.forge.model import CommitStatus, StatusState
from conveyor.forge.statuses import Backoff, StatusOutcome, post_status
from conveyor.server.context import ServerContext
from conveyor.server.hooks import receiver_of
from conveyor.service.webhooks import ProjectForge, same_forge
from conveyor.states import RunState
from conveyor.store import events as event_log
from conveyor.store import queue
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.records import EventKind, EventRecord
from conveyor.store.schema import events as events_table

LOG = logging.getLogger(__name__)
POLL_SECONDS = 0.2
BATCH = 500
BACKOFF = Backoff()
STATUSES_PART = "statuses"
_FOLLOWED = frozenset(
    {EventKind.RUN_QUEUED, EventKind.RUN_CREATED, EventKind.RUN_STATE, EventKind.RUN_DEQUEUED}
)
_FINISHED = {
    RunState.SUCCESS: (StatusState.SUCCESS, "passed"),
    RunState.FAILED: (StatusState.FAILURE, "failed"),
    RunState.CANCELLED: (StatusState.ERROR, "cancelled"),
    RunState.INTERRUPTED: (StatusState.ERROR, "interrupted"),
}


@dataclass(frozen=True)
class Wanted:
    """A status to send, and what it is about."""

    status: CommitStatus
    cursor: int  # the event that asked for it
    run_id: int | None = None
    queue_id: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.status.sha, self.status.context)


class Superseded(Exception):
    pass


def wanted_status(
    event: EventRecord,
    trigger: Mapping[str, Any],
    pipeline: str,
    forge: ProjectForge,
    url: Callable[[str], str],
) -> Wanted | None:
    """The status an event of a forge-triggered run asks for, if any (pure: the caller
    reads the run's trigger and pipeline)."""
    kind = trigger.get("forge")
    if not isinstance(kind, str) or not same_forge(kind, forge.settings.config.kind):
        return None
    asked = _asked(event)
    if asked is None or not event.commit_sha:
        return None
    state, description, link = asked
    branch = trigger.get("source_branch") or event.data.get("branch")
    status = CommitStatus(
        repository=forge.settings.config.repository,
        sha=event.commit_sha,
        state=state,
        context=forge.settings.status_context(pipeline),
        target_url=url(link),
        description=f"Conveyor: {pipeline} {description}",
        ref=branch if isinstance(branch, str) else None,
    )
    queue_id = event.data.get("queue_id")
    return Wanted(status, event.id, event.run_id, queue_id if isinstance(queue_id, int) else None)


def _asked(event: EventRecord) -> tuple[StatusState, str, str] | None:
    """The state, description and page of the status an event asks for."""
    queue_page = f"/queue/{event.data.get('queue_id')}"
    run_page = f"/runs/{event.run_id}"
    if event.kind == EventKind.RUN_QUEUED:
        return StatusState.PENDING, "queued", queue_page
    if event.kind == EventKind.RUN_CREATED:
        return StatusState.RUNNING, "running", run_page
    if event.kind == EventKind.RUN_STATE and event.state in _FINISHED:
        state, description = _FINISHED[RunState(event.state)]
        return state, description, run_page
    if event.kind == EventKind.RUN_DEQUEUED and event.state == RunState.CANCELLED:
        return StatusState.ERROR, "cancelled before it ran", queue_page
    return None


class StatusSender:
    def __init__(self, context: ServerContext, client: httpx.AsyncClient, backoff: Backoff) -> None:
        self.context = context
        self.client = client
        self.backoff = backoff
        self.cursor = 0
        self._latest: dict[tuple[str, str], Wanted] = {}
        self._senders: dict[tuple[str, str], asyncio.Task[None]] = {}

    # following the event log

    async def start(self) -> None:
        self.cursor = await run_in_threadpool(self._resume_cursor)

    async def follow(self) -> None:
        while True:
            fresh = await run_in_threadpool(self._read_after, self.cursor)
            for event in fresh:
                self.cursor = event.id
                if event.kind in _FOLLOWED:
                    try:
                        await self.consider(event)
                    except Exception:  # one bad event (a broken conveyor.yml) stops nothing
                        LOG.exception("no commit status for event %s", event.id)
            await asyncio.sleep(POLL_SECONDS if len(fresh) < BATCH else 0)

    async def consider(self, event: EventRecord) -> None:
        forge = await run_in_threadpool(receiver_of(self.context).project_forge)
        if forge is None or not forge.settings.config.statuses:
            return
        trigger, pipeline = await run_in_threadpool(self._trigger_of, event, forge)
        wanted = wanted_status(event, trigger, pipeline, forge, self.context.url)
        if wanted is not None:
            self.submit(wanted, forge)

    def _trigger_of(self, event: EventRecord, forge: ProjectForge) -> tuple[Mapping[str, Any], str]:
        if event.kind in (EventKind.RUN_QUEUED, EventKind.RUN_DEQUEUED):
            trigger = event.data.get("trigger") or {}
            if not trigger and isinstance(event.data.get("queue_id"), int):
                entry = queue.get(self.context.store.engine, event.data["queue_id"])
                trigger = dict(entry.trigger) if entry is not None else {}
            return trigger, forge.pipeline
        if event.run_id is None:
            return {}, forge.pipeline
        run = self.context.store.get_run(event.run_id)
        return run.trigger, run.pipeline

    # sending, in order per commit and context

    def submit(self, wanted: Wanted, forge: ProjectForge) -> None:
        key = wanted.key
        self._latest[key] = wanted
        task = self._senders.get(key)
        if task is None or task.done():
            self._senders[key] = asyncio.create_task(self._send_latest(key, forge))

    async def _send_latest(self, key: tuple[str, str], forge: ProjectForge) -> None:
        while key in self._latest:
            wanted = self._latest.pop(key)
            outcome = await self._send(wanted, forge)
            await run_in_threadpool(self._record, wanted, forge, outcome)
        self._senders.pop(key, None)

    async def _send(self, wanted: Wanted, forge: ProjectForge) -> StatusOutcome:
        settings = forge.settings
        if not settings.token or not settings.api_url:
            return StatusOutcome(False, 0, None, "no API token: set CONVEYOR_FORGE_TOKEN")

        async def sleep(seconds: float) -> None:
            await asyncio.sleep(seconds)
            if wanted.key in self._latest:
                raise Superseded

        try:
            return await post_status(
                self.client,
                settings.forge,
                settings.api_url,
                settings.token,
                wanted.status,
                backoff=self.backoff,
                sleep=sleep,
            )
        except Superseded:
            newer = self._latest[wanted.key].status.state.value
            return StatusOutcome(False, 0, None, f"superseded by {newer} while retrying")

    # the store

    def _record(self, wanted: Wanted, forge: ProjectForge, outcome: StatusOutcome) -> None:
        status = wanted.status
        data = {
            "forge": forge.settings.forge.name,
            "repository": status.repository,
            "context": status.context,
            "target_url": status.target_url,
            "description": status.description,
            "outcome": "sent" if outcome.sent else "given_up",
            "attempts": outcome.attempts,
            "http_status": outcome.http_status,
            "reason": outcome.reason,
            "queue_id": wanted.queue_id,
            "cursor": wanted.cursor,
        }
        row = event_log.event_row(
            EventKind.FORGE_STATUS,
            time.time(),
            run_id=wanted.run_id,
            state=status.state.value,
            commit_sha=status.sha,
            data=data,
        )
        with write_transaction(self.context.store.engine) as conn:
            event_log.append_one(conn, row)

    def _read_after(self, after: int) -> list[EventRecord]:
        with read_transaction(self.context.store.engine) as conn:
            return event_log.select(conn, run_id=None, after_id=after, limit=BATCH)

    def _resume_cursor(self) -> int:
        """After the event behind the last status recorded (a restarted server sends what
        it missed), or the newest event when none was ever sent."""
        with read_transaction(self.context.store.engine) as conn:
            last = conn.execute(
                sa.select(events_table.c.data)
                .where(events_table.c.kind == EventKind.FORGE_STATUS.value)
                .order_by(events_table.c.id.desc())
                .limit(1)
            ).scalar()
            newest = conn.execute(sa.select(sa.func.max(events_table.c.id))).scalar()
        cursor = (last or {}).get("cursor")
        return int(cursor) if isinstance(cursor, int) else int(newest or 0)

    async def stop(self) -> None:
        for task in self._senders.values():
            task.cancel()
        for task in list(self._senders.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task


@asynccontextmanager
async def lifespan(context: ServerContext) -> AsyncIterator[None]:
    async with httpx.AsyncClient() as client:
        sender = StatusSender(context, client, BACKOFF)
        await sender.start()
        context.parts[STATUSES_PART] = sender
        task = asyncio.create_task(sender.follow())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sender.stop()
