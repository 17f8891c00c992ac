"""Feature flags of an environment: read them and their history, turn one on or off, roll
it out, kill it. Each change is the `conveyor flags ...` command's (flags/store.py
FlagLedger), recorded as the same event with the caller as its actor.

    GET  /api/v1/environments/{environment}/flags                 the flags
    GET  /api/v1/environments/{environment}/flags/{name}          definition + history
    PUT  /api/v1/environments/{environment}/flags/{name}          {"enabled": bool}
    POST /api/v1/environments/{environment}/flags/{name}/rollout  {"percentage", "stickiness"?}
    POST /api/v1/environments/{environment}/flags/{name}/kill     {"reason"?}
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from conveyor.flags.store import FlagLedger
from conveyor.server.api.common import ERRORS, Context, ListBody, reading, to_jsonable
from conveyor.server.auth import Action, Principal, require
from conveyor.service.environments import environment_spec

router = APIRouter(prefix="/api/v1/environments/{environment}/flags", tags=["flags"])
Changer = Annotated[Principal, Depends(require("flags", Action.UPDATE, object_from="environment"))]


class FlagsBody(ListBody):
    environment: str
    version: int  # the environment's flags version (each change bumps it)


class EnabledBody(BaseModel):
    enabled: bool


class RolloutBody(BaseModel):
    percentage: int = Field(ge=0, le=100)
    stickiness: str | None = Field(default=None, description="The context field to hash.")


class KillBody(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


def _ledger(context: Context, environment: str) -> FlagLedger:
    environment_spec(context.project, environment)  # 404 unless in conveyor.yml
    return FlagLedger(context.store.engine)


@router.get(
    "",
    response_model=FlagsBody,
    responses=ERRORS,
    dependencies=reading("flags"),
    summary="An environment's flags (items as `conveyor flags ls -o json` flags)",
)
def list_flags(environment: str, context: Context) -> dict[str, Any]:
    snapshot = _ledger(context, environment).snapshot(environment)
    records = [record for _, record in sorted(snapshot.flags.items())]
    return {
        "items": to_jsonable(records),
        "next_cursor": None,
        "environment": environment,
        "version": snapshot.version,
    }


@router.get(
    "/{name}",
    responses=ERRORS,
    dependencies=reading("flags"),
    summary="A flag's definition and its history (oldest first)",
)
def get_flag(environment: str, name: str, context: Context) -> dict[str, Any]:
    ledger = _ledger(context, environment)
    record = ledger.flag(environment, name)
    return {"flag": to_jsonable(record), "history": to_jsonable(ledger.history(environment, name))}


@router.put("/{name}", responses=ERRORS, summary="Turn a flag on or off (a new one: for all)")
def set_flag(
    environment: str, name: str, body: EnabledBody, context: Context, principal: Changer
) -> Any:
    ledger = _ledger(context, environment)
    record = ledger.set_enabled(environment, name, body.enabled, actor=principal.name)
    return to_jsonable(record)


@router.post("/{name}/rollout", responses=ERRORS, summary="Give a flag to N% of contexts")
def rollout_flag(
    environment: str, name: str, body: RolloutBody, context: Context, principal: Changer
) -> Any:
    ledger = _ledger(context, environment)
    record = ledger.rollout(
        environment, name, body.percentage, stickiness=body.stickiness, actor=principal.name
    )
    return to_jsonable(record)


@router.post("/{name}/kill", responses=ERRORS, summary="The kill switch: off, for everyone")
def kill_flag(
    environment: str, name: str, body: KillBody, context: Context, principal: Changer
) -> Any:
    ledger = _ledger(context, environment)
    outcome = ledger.kill(environment, name, actor=principal.name, reason=body.reason)
    return to_jsonable(outcome)
