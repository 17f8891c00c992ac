"""Release notes, as `conveyor release notes ENV [RELEASE] -o json`.

GET /api/v1/environments/{environment}/notes?release=   the release's commits since the
                                                        one it replaced, grouped by type
                                                        (features, fixes, others) with
                                                        their linked ids; ?format=markdown
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

from conveyor.observe.release_notes import release_notes, to_markdown
from conveyor.server.api.common import ERRORS, Context, reading, to_jsonable

router = APIRouter(
    prefix="/api/v1/environments", tags=["environments"], dependencies=reading("environments")
)


@router.get(
    "/{environment}/notes",
    response_model=None,
    responses={**ERRORS, 200: {"content": {"application/json": {}, "text/markdown": {}}}},
    summary="A release's notes (default: the latest successful release)",
)
def notes(
    environment: str,
    context: Context,
    release: Annotated[str | None, Query(max_length=200, description="A release id.")] = None,
    format: Annotated[Literal["json", "markdown"], Query()] = "json",
) -> Response | Any:
    found = release_notes(context.project, context.store, environment, release)
    if format == "markdown":
        return PlainTextResponse(to_markdown(found), media_type="text/markdown; charset=utf-8")
    return to_jsonable(found)
