"""Insights: a period's summary, as `conveyor insights summary -o json` (a module of its
own beside api/insights.py's DORA route, under the same prefix).

GET /api/v1/insights?since=30d     DORA trends, incidents, regressions caught, flaky
                                   tests, slowest stages, fixable vulnerabilities,
                                   expiring waivers; each actionable item with its id and
                                   whether it was filed as a requirement and addressed
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from conveyor.errors import ConveyorError
from conveyor.observe.insights import summary
from conveyor.server.api.common import ERRORS, Context, reading, to_jsonable
from conveyor.spec.durations import parse_duration

router = APIRouter(prefix="/api/v1/insights", tags=["insights"], dependencies=reading("insights"))


@router.get("", responses=ERRORS, summary="A period's insights and their actionable items")
def insights(
    context: Context,
    since: Annotated[str, Query(max_length=20, description="The period: 30d, 12h, 90m.")] = "30d",
) -> Any:
    try:
        period = parse_duration(since)
    except ValueError as error:
        raise ConveyorError(f"since: {error}", hint="for example ?since=30d") from None
    return to_jsonable(summary(context.project, context.store, period=period))
