"""Business metrics per release and flag variant.

GET /api/v1/environments/{environment}/business?sample=   as `conveyor business ENV -o json`:
                                                          each release's and variant's
                                                          counters and ratios with their
                                                          confidence sequences, compared
                                                          with the reference
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from conveyor.observe.business_figures import business_view
from conveyor.server.api.common import ERRORS, Context, reading, to_jsonable

router = APIRouter(
    prefix="/api/v1/environments", tags=["environments"], dependencies=reading("environments")
)


@router.get(
    "/{environment}/business",
    responses=ERRORS,
    summary="Business metrics per release and flag variant, with confidence sequences",
)
def business(
    environment: str,
    context: Context,
    sample: Annotated[
        bool, Query(description="Scrape the running releases first (default), and keep it.")
    ] = True,
) -> Any:
    return to_jsonable(business_view(context.project, context.store, environment, sample=sample))
