"""Insights: what production teaches.

GET /api/v1/insights/dora?env=&since=    as `conveyor insights dora -o json`: the DORA
                                         metrics of an environment (default: production's)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from conveyor.observe.dora import DEFAULT_SINCE, project_dora
from conveyor.server.api.common import ERRORS, Context, reading, to_jsonable
from conveyor.server.auth import Action, authorize

router = APIRouter(prefix="/api/v1/insights", tags=["insights"], dependencies=reading("insights"))


@router.get("/dora", responses=ERRORS, summary="DORA metrics of an environment, per week")
def dora(
    request: Request,
    context: Context,
    env: Annotated[
        str | None, Query(description="The environment (default: production's).")
    ] = None,
    since: Annotated[str, Query(description="The period back from now, e.g. 90d.")] = DEFAULT_SINCE,
) -> Any:
    report = project_dora(context.project, context.store, env, since)
    authorize(request, "environments", Action.READ, report.environment)
    return to_jsonable(report)
