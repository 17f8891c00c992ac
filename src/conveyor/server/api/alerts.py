"""Alertmanager's webhook: `POST /api/v1/alerts/alertmanager` (payload version 4).

Alertmanager authenticates with an API token of the users file, sent as
`Authorization: Bearer <token>` (its `http_config.authorization`); the token's user needs
`create` on `alerts` (for each alert's environment). Each alert goes through the one
intake (observe/alerts.py): a rollback inside the bake window, else an incident.

Answers: 200 with each alert's outcome (refused alerts too: Alertmanager must not retry
them), 400 malformed, 401 no or a wrong token, 403 no right, 413 too large. Every
refusal is recorded (auth.denied, or alert.received with outcome refused).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from conveyor.observe.alertmanager import PayloadError, parse_webhook
from conveyor.observe.alerts import (
    Alert,
    AlertReceipt,
    AlertSource,
    receive_alert,
    refuse,
    refuse_delivery,
)
from conveyor.server.api.common import ERRORS, Context
from conveyor.server.auth import Action, Principal, may, require
from conveyor.server.hooks import TooLarge, read_limited
from conveyor.service.jsonable import to_jsonable

MAX_BODY = 1024 * 1024  # a group of 1,000 alerts with their labels is a few hundred KB
RESOURCE = "alerts"

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"], responses=ERRORS)


@router.post("/alertmanager")
async def alertmanager(
    request: Request,
    _principal: Annotated[Principal, Depends(require(RESOURCE, Action.CREATE))],
    context: Context,
) -> JSONResponse:
    """One Alertmanager webhook delivery: every alert's outcome."""
    try:
        body = await read_limited(request, MAX_BODY)
        alerts = parse_webhook(body)
    except TooLarge:
        return await _refused(
            context, 413, "too_large", f"the body is larger than {MAX_BODY} bytes"
        )
    except PayloadError as error:
        return await _refused(context, 400, "invalid", error.message, error.hint)
    receipts = [await run_in_threadpool(_one, request, context, alert) for alert in alerts]
    return JSONResponse({"received": len(receipts), "alerts": to_jsonable(receipts)})


def _one(request: Request, context: Context, alert: Alert) -> AlertReceipt:
    environment = alert.labels.get("environment")
    if environment and not may(request, RESOURCE, Action.CREATE, environment):
        return refuse(context.store, alert, f"the caller may not raise alerts on {environment}")
    return receive_alert(context.project, context.store, alert)


async def _refused(
    context: Context, code: int, error: str, reason: str, hint: str | None = None
) -> JSONResponse:
    await run_in_threadpool(refuse_delivery, context.store, AlertSource.ALERTMANAGER, reason)
    body: dict[str, Any] = {"error": error, "reason": reason, "hint": hint}
    return JSONResponse(body, status_code=code)
