"""The audit log: its entries a page at a time, and the chain's verification.

GET /api/v1/audit?limit=&cursor=    entries newest first (as `conveyor audit log -o json`)
GET /api/v1/audit/verify            as `conveyor audit verify -o json`: the chain
                                    recomputed, held to the last signed head, and its
                                    head signed when intact (as the CLI does)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

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
from conveyor.service.audit import entries_page, verify

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], dependencies=reading("audit"))


@router.get("", response_model=ListBody, responses=ERRORS, summary="Audit entries, newest first")
def audit_entries(context: Context, limit: Limit = None, cursor: Cursor = None) -> dict[str, Any]:
    return listed(entries_page(context.store, limit, cursor))


@router.get("/verify", responses=ERRORS, summary="The chain's verification state")
def audit_verify(
    context: Context,
    head: Annotated[str | None, Query(description="A head hash you kept (`audit head`).")] = None,
) -> dict[str, Any]:
    verdict = verify(context.project, context.store, head)
    return {
        "entries": verdict.entries,
        "intact": verdict.intact,
        "problems": to_jsonable(verdict.problems),
        "checked_against": to_jsonable(verdict.checked_against),
        "signed": to_jsonable(verdict.signed),
        "notes": verdict.notes,
    }
