"""The forges' webhooks: `POST /hooks/github`, `/hooks/gitlab`, `/hooks/gitea` and
`/hooks/forgejo`, and the admins' list of deliveries, `GET /api/v1/hooks/deliveries`.

The hooks need no login: each delivery proves itself with its signature, checked by the
service before the payload is read. The body is read here with a limit, counted as it
arrives, so an oversized delivery is refused (413) without being held in memory.

Answers: 202 queued or ignored (with the reason), 200 duplicate (nothing queued), 401
unsigned or wrongly signed, 400 malformed, 413 too large, 502 the commit could not be
fetched (a redelivery may succeed). Every delivery is recorded either way.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.queue import pool_of
from conveyor.service.webhooks import DeliveryResult, WebhookReceiver
from conveyor.store.webhooks import DeliveryOutcome, list_deliveries, outcome_counts

MAX_BODY = 1024 * 1024  # GitHub caps payloads at 25 MB; a push or merge request is KBs
HOOKS_PART = "hooks"
FORGE_PATHS = ("github", "gitlab", "gitea", "forgejo")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

router = APIRouter(tags=["hooks"])


class TooLarge(Exception):
    pass


_MAKING = threading.Lock()  # one receiver (and so one delivery lock) per server


def receiver_of(context: ServerContext) -> WebhookReceiver:
    with _MAKING:
        receiver = context.parts.get(HOOKS_PART)
        if not isinstance(receiver, WebhookReceiver):
            receiver = WebhookReceiver(context.project, context.store)
            context.parts[HOOKS_PART] = receiver
        return receiver


async def read_limited(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, or TooLarge as soon as it (or its declared length) passes `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(result: DeliveryResult) -> JSONResponse:
    body: dict[str, Any] = result.as_json()
    if result.status_code >= 400:
        body = {"error": result.outcome.value, **body}
    return JSONResponse(body, status_code=result.status_code)


async def _deliver(forge: str, request: Request, context: ServerContext) -> JSONResponse:
    receiver = receiver_of(context)
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        body = await read_limited(request)
    except TooLarge:
        reason = f"the body is larger than {MAX_BODY} bytes"
        result = await run_in_threadpool(
            receiver.refuse, forge, headers, DeliveryOutcome.TOO_LARGE, 413, reason
        )
        return _answer(result)
    result = await run_in_threadpool(receiver.receive, forge, headers, body)
    if result.queue_id is not None:
        pool_of(context).wake()  # the workers start it now, not at their next look
    return _answer(result)


def _hook_route(forge: str) -> None:
    async def hook(
        request: Request, context: Annotated[ServerContext, Depends(server_context)]
    ) -> JSONResponse:
        return await _deliver(forge, request, context)

    hook.__name__ = f"hook_{forge}"
    hook.__doc__ = f"A {forge} webhook delivery (push, pull/merge request), verified first."
    router.add_api_route(f"/hooks/{forge}", hook, methods=["POST"], name=f"hook_{forge}")


for _forge in FORGE_PATHS:
    _hook_route(_forge)


@router.get("/api/v1/hooks/deliveries")
async def deliveries(
    _principal: Annotated[Principal, Depends(require("webhooks", Action.ADMIN))],
    context: Annotated[ServerContext, Depends(server_context)],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """Every delivery received, newest first, with how many ended in each outcome."""
    before = int(cursor) if cursor and cursor.isdigit() else None
    engine = context.store.engine
    found = await run_in_threadpool(list_deliveries, engine, limit=limit + 1, before=before)
    page = found[:limit]
    counts = await run_in_threadpool(outcome_counts, engine)
    return {
        "items": [
            {
                "id": d.id,
                "forge": d.forge,
                "delivery": d.delivery_id,
                "received_at": d.received_at,
                "event": d.event,
                "outcome": d.outcome.value,
                "status_code": d.status_code,
                "reason": d.reason,
                "queue_id": d.queue_id,
            }
            for d in page
        ],
        "next_cursor": str(page[-1].id) if len(found) > limit else None,
        "counts": counts,
    }
