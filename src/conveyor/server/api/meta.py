"""/healthz and /api/v1/whoami: liveness, and who the caller is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from conveyor import __version__
from conveyor.server.auth import Principal, current_principal

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/api/v1/whoami", tags=["meta"])
def whoami(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
    return {"name": principal.name, "roles": sorted(principal.roles), "via": principal.via}
