"""Every live change in one Server-Sent Events stream: `GET /api/v1/events?topic=...`.

The hub follows the store's event log (the source of truth, written by the server's
workers and by any CLI on the same store) and fans each new event out to the streams
whose topics match it. One poll of the store serves every viewer.

Topics (a stream names one or more with `topic=`; none means all but logs):
    runs                every run.* and job.* event, and run.queued
    run:<id>            those of one run
    releases            deploy, traffic, release, rollback, smoke, replica, feedback events
    environment:<name>  those of one environment
    approvals           approval.*
    flags               flag.*
    webhooks            webhook.delivery and forge.status
    incidents           alert.received and incident.*
    log:<run>:<job>     the job's live log, as it grows (`data`: {"offset", "text"})

An event goes out as `id: <event id>`, `event: <kind>`, `data: <json>`. A reconnecting
browser sends `Last-Event-ID` and gets what it missed from the store first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.store.db import read_transaction
from conveyor.store.events import select as select_events
from conveyor.store.records import EventRecord
from conveyor.store.schema import events as events_table

POLL_SECONDS = 0.1
LOG_POLL_SECONDS = 0.2
HEARTBEAT_SECONDS = 15.0
REPLAY_LIMIT = 1000  # events replayed to a reconnecting stream at most
SUBSCRIBER_BUFFER = 10_000  # a stream further behind than this is closed (it reconnects)
HUB_PART = "events"

_RELEASE_PREFIXES: tuple[str, ...] = ("deploy.", "traffic.", "release.", "rollback", "smoke.")
_RELEASE_PREFIXES += ("replica.", "feedback.")  # feedback: observe/feedback.py


def topics_of(event: EventRecord) -> set[str]:
    """The topics an event of the store belongs to."""
    kind = event.kind
    found: set[str] = set()
    if kind.startswith(("run.", "job.")):
        found.add("runs")
        if event.run_id is not None:
            found.add(f"run:{event.run_id}")
    elif kind.startswith(_RELEASE_PREFIXES):
        found.add("releases")
        environment = event.data.get("environment")
        if isinstance(environment, str):
            found.add(f"environment:{environment}")
    elif kind.startswith("approval."):
        found.add("approvals")
        if event.run_id is not None:
            found.add(f"run:{event.run_id}")
    elif kind.startswith("flag."):
        found.add("flags")
    elif kind in ("webhook.delivery", "forge.status"):
        found.add("webhooks")
    elif kind.startswith(("alert.", "incident.")):
        found.add("incidents")
    return found


@dataclass(frozen=True)
class LiveEvent:
    id: int | None  # the store's event id; None for log chunks
    kind: str
    topics: frozenset[str]
    data: dict[str, Any]

    def encode(self) -> bytes:
        lines = []
        if self.id is not None:
            lines.append(f"id: {self.id}")
        lines.append(f"event: {self.kind}")
        lines.append("data: " + json.dumps(self.data, separators=(",", ":"), default=str))
        return ("\n".join(lines) + "\n\n").encode()


def live_event(event: EventRecord) -> LiveEvent:
    return LiveEvent(
        id=event.id,
        kind=event.kind,
        topics=frozenset(topics_of(event)),
        data={
            "id": event.id,
            "ts": event.ts,
            "kind": event.kind,
            "run_id": event.run_id,
            "job_id": event.job_id,
            "state": event.state,
            "actor": event.actor,
            "data": dict(event.data),
        },
    )


@dataclass(eq=False)
class Subscriber:
    topics: frozenset[str]  # empty: every topic but logs
    queue: asyncio.Queue[LiveEvent | None] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_BUFFER)
    )

    def wants(self, event: LiveEvent) -> bool:
        if not self.topics:
            return not any(t.startswith("log:") for t in event.topics)
        return bool(self.topics & event.topics)


class EventHub:
    """Follows the store's event log and hands each new event to matching subscribers."""

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.subscribers: set[Subscriber] = set()
        self.cursor = 0
        self._logs: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        self.cursor = await run_in_threadpool(self._last_id)

    def _last_id(self) -> int:
        with read_transaction(self.context.store.engine) as conn:
            newest = conn.execute(sa.select(sa.func.max(events_table.c.id))).scalar()
        return int(newest or 0)

    def _read_after(self, after: int, limit: int | None = None) -> list[EventRecord]:
        with read_transaction(self.context.store.engine) as conn:
            return select_events(conn, run_id=None, after_id=after, limit=limit)

    async def follow(self) -> None:
        """Reads the store only while someone listens (`join` moves the cursor first)."""
        while True:
            if self.subscribers:
                fresh = await run_in_threadpool(self._read_after, self.cursor)
                for event in fresh:
                    self.cursor = event.id
                    self.publish(live_event(event))
            await asyncio.sleep(POLL_SECONDS)

    def publish(self, event: LiveEvent) -> None:
        for subscriber in list(self.subscribers):
            if subscriber.wants(event):
                try:
                    subscriber.queue.put_nowait(event)
                except asyncio.QueueFull:  # too slow: close it; the browser reconnects
                    self.subscribers.discard(subscriber)
                    with contextlib.suppress(asyncio.QueueEmpty):
                        subscriber.queue.get_nowait()
                    subscriber.queue.put_nowait(None)

    async def replay(self, after: int, topics: frozenset[str]) -> list[LiveEvent]:
        found = await run_in_threadpool(self._read_after, after, REPLAY_LIMIT)
        probe = Subscriber(topics)
        return [
            e for e in map(live_event, found) if e.id and e.id <= self.cursor and probe.wants(e)
        ]

    async def join(self, topics: Iterable[str]) -> Subscriber:
        """A new stream: when nobody listened, the cursor first moves to the store's newest
        event (what came before is the replay's), then the stream is subscribed."""
        if not self.subscribers:
            self.cursor = await run_in_threadpool(self._last_id)
        return self.subscribe(topics)

    def subscribe(self, topics: Iterable[str]) -> Subscriber:
        subscriber = Subscriber(frozenset(topics))
        self.subscribers.add(subscriber)
        for topic in subscriber.topics:
            if topic.startswith("log:") and topic not in self._logs:
                self._logs[topic] = asyncio.create_task(self._tail_log(topic))
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        wanted = {t for s in self.subscribers for t in s.topics}
        for topic in [t for t in self._logs if t not in wanted]:
            self._logs.pop(topic).cancel()

    async def _tail_log(self, topic: str) -> None:
        """One reader per live log, however many watch it: publishes what was appended."""
        from conveyor.server.logs import LogTail

        tail = LogTail.for_topic(self.context, topic)
        while True:
            chunk = await run_in_threadpool(tail.read_new)
            if chunk is not None:
                offset, text = chunk
                self.publish(
                    LiveEvent(None, "log", frozenset({topic}), {"offset": offset, "text": text})
                )
            if tail.finished:
                self.publish(
                    LiveEvent(None, "log.end", frozenset({topic}), {"offset": tail.offset})
                )
                return
            await asyncio.sleep(LOG_POLL_SECONDS)

    async def stop(self) -> None:
        for task in self._logs.values():
            task.cancel()
        for subscriber in list(self.subscribers):
            subscriber.queue.put_nowait(None)


@asynccontextmanager
async def lifespan(context: ServerContext) -> AsyncIterator[None]:
    hub = EventHub(context)
    await hub.start()
    context.parts[HUB_PART] = hub
    task = asyncio.create_task(hub.follow())
    try:
        yield
    finally:
        task.cancel()
        await hub.stop()


def hub_of(context: ServerContext) -> EventHub:
    hub = context.parts[HUB_PART]
    assert isinstance(hub, EventHub)
    return hub


router = APIRouter(tags=["events"])


@router.get("/api/v1/events")
async def events(
    request: Request,
    _principal: Annotated[Principal, Depends(require("project", Action.READ))],
    context: Annotated[ServerContext, Depends(server_context)],
    topic: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI reads the default)
) -> StreamingResponse:
    """The live changes of the named topics, as Server-Sent Events (text/event-stream)."""
    hub = hub_of(context)
    subscriber = await hub.join(topic)
    last = request.headers.get("last-event-id", "")
    missed = await hub.replay(int(last), subscriber.topics) if last.isdigit() else []

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            for event in missed:
                yield event.encode()
            while True:
                try:
                    pending = await asyncio.wait_for(subscriber.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if pending is None:
                    return
                yield pending.encode()
        finally:
            hub.unsubscribe(subscriber)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
