"""Environments and their releases.

GET /api/v1/environments                                  as `conveyor env ls -o json`
GET /api/v1/environments/{environment}                    as `conveyor env status -o json`:
                                                          live and warm releases, weights,
                                                          golden signals (asks the router)
GET /api/v1/environments/{environment}/history            as `conveyor env history -o json`
GET /api/v1/environments/{environment}/releases/{deploy}  one deploy: progress, steps,
                                                          the judge's evidence, decision
GET /api/v1/environments/{environment}/signals?since=     rates between samples (charts)
GET /api/v1/environments/{environment}/records/{deploy}   the release record (json, or
                                                          ?format=markdown)
GET /api/v1/environments/{environment}/diff?from=&to=     what changed between 2 deploys
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

from conveyor.server.api.common import ERRORS, Context, ListBody, everything, reading, to_jsonable
from conveyor.service.environments import environment_status, history, list_environments
from conveyor.service.release_diff import release_diff
from conveyor.service.release_record import release_record, to_markdown
from conveyor.service.release_views import release_detail, signal_points

router = APIRouter(
    prefix="/api/v1/environments", tags=["environments"], dependencies=reading("environments")
)


@router.get("", response_model=ListBody, responses=ERRORS, summary="The environments")
def environments(context: Context) -> dict[str, Any]:
    return everything(list_environments(context.project, context.store))


@router.get("/{environment}", responses=ERRORS, summary="Releases, weights, golden signals")
def environment(environment: str, context: Context) -> Any:
    return to_jsonable(environment_status(context.project, context.store, environment))


@router.get(
    "/{environment}/history",
    response_model=ListBody,
    responses=ERRORS,
    summary="Deploys and rollbacks, oldest first",
)
def environment_history(environment: str, context: Context) -> dict[str, Any]:
    return everything(history(context.project, context.store, environment))


@router.get(
    "/{environment}/releases/{deploy_id}",
    responses=ERRORS,
    summary="One deploy: canary steps, weights, the judge's evidence over time, the decision",
)
def release(environment: str, deploy_id: int, context: Context) -> Any:
    return to_jsonable(release_detail(context.project, context.store, environment, deploy_id))


@router.get(
    "/{environment}/signals",
    response_model=ListBody,
    responses=ERRORS,
    summary="Golden signals over time: each release's rates between stored samples",
)
def signals(
    environment: str,
    context: Context,
    since: Annotated[
        float | None, Query(description="Unix seconds (default: an hour ago).")
    ] = None,
) -> dict[str, Any]:
    points = signal_points(context.project, context.store, environment, since, time.time())
    return everything(points)


@router.get(
    "/{environment}/records/{deploy_id}",
    response_model=None,
    responses={**ERRORS, 200: {"content": {"application/json": {}, "text/markdown": {}}}},
    summary="A deploy's release record (as `conveyor release record`)",
)
def record(
    environment: str,
    deploy_id: int,
    context: Context,
    format: Annotated[Literal["json", "markdown"], Query()] = "json",
) -> Response | dict[str, Any]:
    found = release_record(context.project, context.store, environment, None, deploy_id)
    if format == "markdown":
        return PlainTextResponse(to_markdown(found), media_type="text/markdown; charset=utf-8")
    jsonable: dict[str, Any] = to_jsonable(found)
    return jsonable


@router.get(
    "/{environment}/diff",
    responses=ERRORS,
    summary="Between two deploys: commits, configuration, flags, dependencies, vulnerabilities",
)
def diff(
    environment: str,
    context: Context,
    from_id: Annotated[int, Query(alias="from", description="A deploy id.")],
    to_id: Annotated[int, Query(alias="to", description="A deploy id.")],
) -> Any:
    found = release_diff(context.project, context.store, environment, from_id, to_id)
    return to_jsonable(found)
