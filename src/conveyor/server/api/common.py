"""What the API's resource modules share: the error body, the list body, the answer for
401/403/404 in the OpenAPI document, and JSON made the way `conveyor ... -o json` makes it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import BaseModel

from conveyor.server.auth import Action, require
from conveyor.server.context import ServerContext, server_context
from conveyor.service.jsonable import to_jsonable
from conveyor.service.pages import MAX_LIMIT, Page


class ErrorBody(BaseModel):
    error: str
    reason: str
    hint: str | None = None


class ListBody(BaseModel):
    """Every list: a page of items, and the cursor of the next page (null on the last)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No login"},
    403: {"model": ErrorBody, "description": "No role for this"},
    404: {"model": ErrorBody, "description": "No such thing"},
}

Context = Annotated[ServerContext, Depends(server_context)]
Limit = Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description="Items per page (50).")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]


def reading(resource: str) -> list[Any]:
    """The dependencies of a read-only route of `resource`."""
    return [Depends(require(resource, Action.READ))]


def listed(page: Page[Any]) -> dict[str, Any]:
    return {"items": to_jsonable(page.items), "next_cursor": page.next_cursor}


def everything(items: list[Any]) -> dict[str, Any]:
    """A list short enough to answer whole (environments, flags): one page, no cursor."""
    return {"items": to_jsonable(items), "next_cursor": None}


__all__ = ["ERRORS", "Context", "Cursor", "ErrorBody", "Limit", "ListBody", "to_jsonable"]
