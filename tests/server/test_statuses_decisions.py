"""Which status an event of the store asks for (the pure part of server/statuses.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from conveyor.forge.model import StatusState
from conveyor.forge.settings import forge_settings
from conveyor.forge.statuses import Backoff
from conveyor.server.statuses import StatusSender, wanted_status
from conveyor.service.webhooks import ProjectForge
from conveyor.spec.forge import ForgeConfig
from conveyor.store import events as event_log
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.events import event_row
from conveyor.store.records import EventKind, EventRecord
from conveyor.store.schema import events
from server.conftest import ServerUnderTest

SHA = "a" * 40
TRIGGER = {"kind": "push", "forge": "gitea", "delivery": "d1", "repository": "acme/shop"}


def _forge(tmp_path: Path, kind: str = "forgejo") -> ProjectForge:
    config = ForgeConfig(
        kind=kind, repository="acme/shop", clone_url="https://git.example.org/acme/shop.git"
    )
    return ProjectForge(forge_settings(config, tmp_path, {}), "shop")


def _event(kind: EventKind, state: str | None = None, **data: Any) -> EventRecord:
    return EventRecord(
        id=9, ts=0.0, kind=kind.value, run_id=4, job_id=None, state=state,
        commit_sha=SHA, actor=None, data=data,
    )  # fmt: skip


def _url(path: str) -> str:
    return "https://ci.example.org" + path


@pytest.mark.parametrize(
    ("event", "state", "link"),
    [
        (_event(EventKind.RUN_QUEUED, queue_id=3, branch="main"), StatusState.PENDING, "/queue/3"),
        (_event(EventKind.RUN_CREATED), StatusState.RUNNING, "/runs/4"),
        (_event(EventKind.RUN_STATE, "success"), StatusState.SUCCESS, "/runs/4"),
        (_event(EventKind.RUN_STATE, "failed"), StatusState.FAILURE, "/runs/4"),
        (_event(EventKind.RUN_STATE, "interrupted"), StatusState.ERROR, "/runs/4"),
        (_event(EventKind.RUN_DEQUEUED, "cancelled", queue_id=3), StatusState.ERROR, "/queue/3"),
    ],
)
def test_each_run_event_asks_for_its_status(
    tmp_path: Path, event: EventRecord, state: StatusState, link: str
) -> None:
    wanted = wanted_status(event, TRIGGER, "shop", _forge(tmp_path), _url)
    assert wanted is not None
    status = wanted.status
    assert (status.state, status.target_url, status.context, status.sha) == (
        state,
        "https://ci.example.org" + link,
        "conveyor/shop",
        SHA,
    )
    assert status.repository == "acme/shop"  # the configured name, not the payload's


@pytest.mark.parametrize(
    ("event", "trigger"),
    [
        (_event(EventKind.RUN_CREATED), {}),  # `conveyor run` by hand
        (_event(EventKind.RUN_CREATED), {**TRIGGER, "forge": "github"}),  # not this forge
        (_event(EventKind.RUN_STATE, "running"), TRIGGER),  # not an end
        (_event(EventKind.RUN_DEQUEUED, "claimed", queue_id=3), TRIGGER),
    ],
)
def test_other_events_ask_for_none(
    tmp_path: Path, event: EventRecord, trigger: dict[str, Any]
) -> None:
    assert wanted_status(event, trigger, "shop", _forge(tmp_path), _url) is None


def test_gitea_api_url_comes_from_the_clone_url(tmp_path: Path) -> None:
    assert _forge(tmp_path).settings.api_url == "https://git.example.org/api/v1"
    assert _forge(tmp_path, "github").settings.api_url == "https://api.github.com"


def test_a_restarted_server_resumes_after_the_last_status_sent(served: ServerUnderTest) -> None:
    context = served.context
    engine = context.store.engine

    def resumed() -> int:
        async def start() -> int:
            async with httpx.AsyncClient() as client:
                sender = StatusSender(context, client, Backoff())
                await sender.start()
                return sender.cursor

        return asyncio.run(start())

    with read_transaction(engine) as conn:
        newest = conn.execute(sa.select(sa.func.max(events.c.id))).scalar() or 0
    assert resumed() == newest  # nothing sent yet: from now on
    with write_transaction(engine) as conn:
        row = event_row(EventKind.FORGE_STATUS, 0.0, data={"cursor": 1, "outcome": "sent"})
        event_log.append_one(conn, row)
        event_log.append_one(conn, event_row(EventKind.RUN_QUEUED, 0.0, data={"queue_id": 1}))
    assert resumed() == 1  # what came after the event behind the last status is read again
