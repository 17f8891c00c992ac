"""User feedback per release and flag variant (observe/feedback.py).

GET /api/v1/environments/{environment}/feedback?release=&themes=   as `conveyor feedback
                                                   ENV -o json`: ratings per release and
                                                   variant, rating drops, themes
GET /api/v1/environments/{environment}/feedback/items?release=     the posts, newest first
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from conveyor.observe.feedback import environment_feedback, feedback_page
from conveyor.server.api.common import (
    ERRORS,
    Context,
    Cursor,
    Limit,
    ListBody,
    listed,
    reading,
    to_jsonable,
)

router = APIRouter(
    prefix="/api/v1/environments", tags=["feedback"], dependencies=reading("environments")
)
Release = Annotated[str | None, Query(description="Only this release (and its code's).")]


@router.get(
    "/{environment}/feedback",
    responses=ERRORS,
    summary="Ratings per release and flag variant, rating drops, themes",
)
def feedback(
    environment: str,
    context: Context,
    release: Release = None,
    themes: Annotated[bool, Query(description="Terms over-represented in low ratings.")] = False,
) -> Any:
    report = environment_feedback(
        context.project, context.store, environment, release_id=release, with_themes=themes
    )
    return to_jsonable(report)


@router.get(
    "/{environment}/feedback/items",
    response_model=ListBody,
    responses=ERRORS,
    summary="The feedback posts, newest first",
)
def feedback_items(
    environment: str,
    context: Context,
    release: Release = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> dict[str, Any]:
    page = feedback_page(
        context.project, context.store, environment, release_id=release, limit=limit, cursor=cursor
    )
    return listed(page)
