"""The judge's verdict for outside rollout controllers (Argo Rollouts' `web` metric).

GET  /api/v1/environments/{environment}/judge?release=   {"verdict": "promote" | "hold" |
POST /api/v1/environments/{environment}/judge?release=    "rollback", "reason", "evidence",
                                                          ...}: the latest recorded verdict
                                                          on the release (service/judge_verdict.py)

POST is there for a web metric with `method: POST` (its JSON body may name the release).
Auth: `Authorization: Bearer <token>` of a user who may read environments.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from conveyor.server.api.common import ERRORS, Context, reading, to_jsonable
from conveyor.service.judge_verdict import judge_answer

router = APIRouter(
    prefix="/api/v1/environments", tags=["environments"], dependencies=reading("environments")
)
Release = Annotated[
    str | None, Query(max_length=200, description="The release id; default: the latest deploy.")
]


@router.get("/{environment}/judge", responses=ERRORS, summary="The judge's verdict on a release")
def judge(environment: str, context: Context, release: Release = None) -> Any:
    return to_jsonable(judge_answer(context.project, context.store, environment, release))


@router.post("/{environment}/judge", responses=ERRORS, summary="The same, for a POST web metric")
async def judge_posted(
    environment: str, context: Context, request: Request, release: Release = None
) -> Any:
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    named = _release_in(body)
    answer = await run_in_threadpool(
        judge_answer, context.project, context.store, environment, release or named
    )
    return to_jsonable(answer)


def _release_in(body: bytes) -> str | None:
    """`{"release": "..."}` in a JSON body, if any (anything else is ignored)."""
    import json

    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return None
    value = parsed.get("release") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 200 else None
