"""An environment's replica logs, per release (observe/replica_logs.py).

GET /api/v1/environments/{environment}/logs   as `conveyor logs --env ENV -o json`:
    ?release= ?grep= ?since= (10m, or an ISO time) ?level= (that level or above)
    ?limit= ?cursor=; newest first, secrets masked
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from conveyor.observe.replica_logs import LogQuery, decode_cursor, parse_level, parse_since
from conveyor.server.api.common import (
    ERRORS,
    Context,
    Cursor,
    Limit,
    ListBody,
    reading,
    to_jsonable,
)
from conveyor.service.pages import clamp_limit

router = APIRouter(
    prefix="/api/v1/environments", tags=["environments"], dependencies=reading("environments")
)

Text = Annotated[str | None, Query(max_length=500)]


def log_query(
    *,
    release: str | None,
    grep: str | None,
    since: str | None,
    level: str | None,
    limit: int | None,
    cursor: str | None,
) -> LogQuery:
    """The query the API and the UI page read from their parameters (bad ones: a 400)."""
    return LogQuery(
        release=release or None,
        grep=grep or None,
        since=parse_since(since) if since else None,
        level=parse_level(level) if level else None,
        limit=clamp_limit(limit),
        before=decode_cursor(cursor),
    )


@router.get(
    "/{environment}/logs",
    response_model=ListBody,
    responses=ERRORS,
    summary="What the environment's replicas wrote, newest first, filtered, secrets masked",
)
def environment_logs(
    environment: str,
    context: Context,
    *,
    release: Text = None,
    grep: Text = None,
    since: Text = None,
    level: Text = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> dict[str, Any]:
    from conveyor.observe.replica_logs import read_logs

    query = log_query(
        release=release, grep=grep, since=since, level=level, limit=limit, cursor=cursor
    )
    page = read_logs(context.project, context.store, environment, query)
    return {"items": to_jsonable(page.items), "next_cursor": page.next_cursor}
