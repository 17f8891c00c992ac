"""Flags per environment: each flag on or off, its rollout percentage, the kill switch
(behind a confirmation page, no JavaScript needed) and the history of changes. Changes go
through the same FlagLedger calls as `conveyor flags`, with the user as the actor."""

from __future__ import annotations

from functools import partial
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from conveyor.flags.model import Flag, RolloutStrategy
from conveyor.flags.store import FlagLedger
from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import formatting, templates
from conveyor.service.environments import environment_spec, environments_of

formatting.register()
router = APIRouter(include_in_schema=False)
Context = Annotated[ServerContext, Depends(server_context)]
Reader = Annotated[Principal, Depends(require("flags", Action.READ))]
Writer = Annotated[Principal, Depends(require("flags", Action.UPDATE, object_from="environment"))]
HISTORY_SHOWN = 100


def rollout_percentage(flag: Flag) -> int | None:
    """The share everyone untargeted gets: the untargeted rollout's percentage; None when
    the flag has no such rollout (on for everyone, or targeted only)."""
    for strategy in flag.strategies:
        if isinstance(strategy, RolloutStrategy) and not strategy.targeted:
            return strategy.percentage
    return None


@router.get("/flags", response_class=HTMLResponse)
def flags_page(request: Request, principal: Reader, context: Context) -> HTMLResponse:
    ledger = FlagLedger(context.store.engine)
    # conveyor.yml's environments, as `conveyor flags` takes them.
    counts = {name: len(ledger.snapshot(name).flags) for name in environments_of(context.project)}
    return templates.TemplateResponse(
        request, "flags/index.html", {"principal": principal, "counts": counts}
    )


@router.get("/flags/{environment}", response_class=HTMLResponse)
def environment_flags(
    request: Request, environment: str, principal: Reader, context: Context
) -> HTMLResponse:
    environment_spec(context.project, environment)  # 404 for an unknown one
    ledger = FlagLedger(context.store.engine)
    snapshot = ledger.snapshot(environment)
    history = list(reversed(ledger.history(environment)))[:HISTORY_SHOWN]
    return templates.TemplateResponse(
        request,
        "flags/environment.html",
        {
            "principal": principal,
            "environment": environment,
            "flags": sorted(snapshot.flags.values(), key=lambda r: r.flag.name),
            "version": snapshot.version,
            "history": history,
            "rollout_percentage": rollout_percentage,
        },
    )


@router.post("/flags/{environment}/{name}/enabled")
async def set_enabled(
    environment: str,
    name: str,
    principal: Writer,
    context: Context,
    enabled: Annotated[bool, Form()],
) -> Response:
    def change() -> None:
        environment_spec(context.project, environment)
        ledger = FlagLedger(context.store.engine)
        ledger.flag(environment, name)  # 404: the UI changes flags, never makes them
        ledger.set_enabled(environment, name, enabled, actor=principal.name)

    await run_in_threadpool(change)
    return _back(environment)


@router.post("/flags/{environment}/{name}/rollout")
async def set_rollout(
    environment: str,
    name: str,
    principal: Writer,
    context: Context,
    percentage: Annotated[int, Form(ge=0, le=100)],
) -> Response:
    def change() -> None:
        environment_spec(context.project, environment)
        ledger = FlagLedger(context.store.engine)
        ledger.flag(environment, name)
        ledger.rollout(environment, name, percentage, actor=principal.name)

    await run_in_threadpool(change)
    return _back(environment)


@router.get("/flags/{environment}/{name}/kill", response_class=HTMLResponse)
def confirm_kill(
    request: Request, environment: str, name: str, principal: Writer, context: Context
) -> HTMLResponse:
    return _confirm_page(request, principal, context, environment, name=name)


@router.post("/flags/{environment}/{name}/kill")
async def kill(
    request: Request,
    environment: str,
    *,
    name: str,
    principal: Writer,
    context: Context,
    confirm: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    if confirm != "yes":  # the confirmation is the point: without it, ask again
        again = partial(
            _confirm_page,
            request,
            principal,
            context,
            environment,
            name=name,
            problem="tick “I understand” to kill the flag",
        )
        return await run_in_threadpool(again)

    def change() -> None:
        environment_spec(context.project, environment)
        ledger = FlagLedger(context.store.engine)
        ledger.kill(environment, name, actor=principal.name, reason=reason.strip() or None)

    await run_in_threadpool(change)
    return _back(environment)


def _confirm_page(
    request: Request,
    principal: Principal,
    context: ServerContext,
    environment: str,
    *,
    name: str,
    problem: str | None = None,
) -> HTMLResponse:
    environment_spec(context.project, environment)
    record = FlagLedger(context.store.engine).flag(environment, name)
    return templates.TemplateResponse(
        request,
        "flags/kill.html",
        {"principal": principal, "environment": environment, "record": record, "problem": problem},
        status_code=status.HTTP_400_BAD_REQUEST if problem else status.HTTP_200_OK,
    )


def _back(environment: str) -> RedirectResponse:
    """After a change, the environment's flags (a reload does not repeat the change)."""
    url = "/flags/" + quote(environment, safe="")
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)
