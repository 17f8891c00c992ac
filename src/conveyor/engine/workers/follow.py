"""The run's side of one attempt: send it, follow its log and claim to its result.

Needs Redis and Celery (the `workers` extra); imported only when a job uses them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import time
from typing import Any

import redis
import redis.asyncio as aioredis

from conveyor.engine.executors.base import ExecResult, LogSink, Stream
from conveyor.engine.workers.celery_app import make_app
from conveyor.engine.workers.protocol import (
    LINE_FIELD,
    RECORD_TTL_SECONDS,
    TASK_NAME,
    JobResult,
    cancel_key,
    claim_key,
    log_key,
    result_key,
)
from conveyor.engine.workers.sealing import Sealer
from conveyor.engine.workers.settings import WorkerSettings
from conveyor.states import FailureClass

BROKER_ERRORS: tuple[type[Exception], ...] = (redis.RedisError,)
# A delivery whose worker died is sent again this many times in all (exactly once more).
MAX_DELIVERIES = 2
# How long the broker may be unreachable before the job fails.
BROKER_GRACE_SECONDS = 60.0
# Beyond the job's own timeout (which the worker enforces), how long to wait for its result.
ANSWER_MARGIN_SECONDS = 30.0
POLL_MILLISECONDS = 100


class Failed(Exception):
    """The attempt ended without a worker's result: the job fails with `result`."""

    def __init__(self, result: ExecResult) -> None:
        self.result = result


async def follow(
    settings: WorkerSettings,
    sealer: Sealer,
    sink: LogSink,
    *,
    attempt: str,
    queue: str,
    sealed: str,
    timeout: float | None,
    started: float,
) -> JobResult:
    """Send the attempt to `queue` and wait for its result; raises Failed."""
    # A connection of its own per job: the run's event loop closes with the run.
    client = aioredis.Redis.from_url(settings.broker_url)
    follower = _Follower(_app(settings.broker_url), client, sealer, settings, sink)
    try:
        return await follower.follow(attempt, queue, sealed, timeout, started)
    except asyncio.CancelledError:
        await _cancel(client, attempt)
        raise
    finally:
        await client.aclose()


# One Celery client per broker, kept for the process's lifetime.
_APPS: dict[str, Any] = {}


def _app(broker_url: str) -> Any:
    if broker_url not in _APPS:
        app = _APPS[broker_url] = make_app(broker_url)
        atexit.register(app.close)
    return _APPS[broker_url]


class _Follower:
    """Sends the attempt and follows it to its result: log lines, claim, redeliveries."""

    def __init__(
        self,
        app: Any,
        client: aioredis.Redis,
        sealer: Sealer,
        settings: WorkerSettings,
        sink: LogSink,
    ) -> None:
        self.app = app
        self.client = client
        self.sealer = sealer
        self.settings = settings
        self.sink = sink
        self.last_entry = "0-0"

    async def follow(
        self, attempt: str, queue: str, sealed: str, timeout: float | None, started: float
    ) -> JobResult:
        await self._send(sealed, queue)
        deliveries, sent, claimed = 1, time.monotonic(), False
        broker_lost: float | None = None
        answer_by: float | None = None  # counted from the first claim, not the queueing
        while True:
            try:
                await self._read_log(attempt, block=True)
                holds = bool(await self.client.exists(claim_key(attempt)))
                raw = await self.client.get(result_key(attempt))
            except redis.RedisError:
                broker_lost = self._broker_down(broker_lost, attempt)
                await asyncio.sleep(0.5)
                continue
            if raw is not None:
                await self._read_log(attempt, block=False)  # lines written before the result
                return JobResult.from_json(self.sealer.open_json(raw))
            now = time.monotonic()
            if broker_lost is not None:  # back after a restart: the task may be gone with it
                broker_lost = None
                if not holds:
                    self._say("the broker came back; sending the job again")
                    await self._send(sealed, queue)
                    sent, claimed = now, False
                    continue
            if holds:
                claimed = True
                if answer_by is None and timeout is not None:
                    answer_by = now + timeout + ANSWER_MARGIN_SECONDS
            elif not claimed and now - sent > self.settings.pickup_timeout:
                await _cancel(self.client, attempt)
                waited = self.settings.pickup_timeout
                raise Failed(_no_worker(queue, waited, started, lost=deliveries > 1))
            elif claimed:  # the claim lapsed with no result: its worker died
                if deliveries >= MAX_DELIVERIES:
                    await _cancel(self.client, attempt)
                    detail = f"the workers of queue '{queue}' died {deliveries} times running it"
                    raise Failed(_infrastructure(detail, started))
                deliveries += 1
                self._say(
                    "the worker running this job stopped answering (its claim lapsed); "
                    f"sending it again (delivery {deliveries} of {MAX_DELIVERIES})"
                )
                await self._send(sealed, queue)
                sent, claimed = now, False
            if answer_by is not None and now > answer_by:
                await _cancel(self.client, attempt)
                detail = f"no answer from the worker {ANSWER_MARGIN_SECONDS:g}s past the timeout"
                raise Failed(ExecResult(None, FailureClass.TIMEOUT, now - started, detail))

    async def _send(self, sealed: str, queue: str) -> None:
        def send() -> None:
            self.app.send_task(TASK_NAME, args=[sealed], queue=queue)

        try:
            await asyncio.to_thread(send)
        except Exception as error:  # kombu's errors are many; the job fails, clearly
            detail = f"could not send the job to the broker: {error}"
            raise Failed(_infrastructure(detail, 0)) from None

    async def _read_log(self, attempt: str, *, block: bool) -> None:
        while True:
            found: Any = await self.client.xread(
                {log_key(attempt): self.last_entry},
                count=1000,
                block=POLL_MILLISECONDS if block else None,
            )
            if not found:
                return
            for _stream, entries in found:
                for entry_id, fields in entries:
                    self.last_entry = entry_id.decode()
                    sealed = fields.get(LINE_FIELD.encode())
                    if sealed is not None:  # not the end marker
                        stream, line = self.sealer.open_json(sealed)
                        self.sink.write(Stream(stream), line)
            block = False  # drain what is there, then go back to checking the result

    def _broker_down(self, since: float | None, attempt: str) -> float:
        now = time.monotonic()
        if since is None:
            self._say("lost the connection to the broker; waiting for it")
            return now
        if now - since > BROKER_GRACE_SECONDS:
            detail = f"the broker was unreachable for {BROKER_GRACE_SECONDS:g}s"
            raise Failed(_infrastructure(detail, since))
        return since

    def _say(self, line: str) -> None:
        self.sink.write(Stream.SYSTEM, line)


async def _cancel(client: aioredis.Redis, attempt: str) -> None:
    with contextlib.suppress(redis.RedisError):  # the worker's own timeout still ends it
        await client.set(cancel_key(attempt), "1", ex=RECORD_TTL_SECONDS)


def _no_worker(queue: str, waited: float, started: float, *, lost: bool) -> ExecResult:
    after = " after its worker stopped answering" if lost else ""
    detail = (
        f"no worker on queue '{queue}' took the job within {waited:g}s{after} "
        f"(start one: conveyor worker --queues {queue})"
    )
    return ExecResult(None, FailureClass.INFRASTRUCTURE, time.monotonic() - started, detail)


def _infrastructure(detail: str, started: float) -> ExecResult:
    duration = time.monotonic() - started if started else 0.0
    return ExecResult(None, FailureClass.INFRASTRUCTURE, duration, detail)
