"""Run actions of the REST API: trigger a run, the queue, cancel, rerun the failed jobs.

POST /api/v1/runs                     queue a run of a commit (202, with its queue id)
GET  /api/v1/queue                    queued and running entries
GET  /api/v1/queue/{id}               one entry, whatever its state (its run id once set)
POST /api/v1/queue/{id}/cancel        cancel an entry: queued, or its run
POST /api/v1/runs/{id}/cancel         cancel a running run, like Ctrl-C
POST /api/v1/runs/{id}/rerun-failed   queue a rerun of its failed jobs (202)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.queue import pool_of
from conveyor.service import queued_runs
from conveyor.store import queue

router = APIRouter(prefix="/api/v1", tags=["runs"])

Context = Annotated[ServerContext, Depends(server_context)]
MAX_LIMIT = 200


class TriggerBody(BaseModel):
    commit: str | None = Field(None, description="a sha, branch or tag; default: HEAD")
    branch: str | None = Field(None, description="default: the branch `commit` names")
    jobs: list[str] = Field(default_factory=list, description="run only these (and needs)")
    parallelism: int | None = Field(None, ge=1, description="jobs at once")


@router.post("/runs", status_code=202)
async def trigger_run(
    body: TriggerBody,
    context: Context,
    principal: Annotated[Principal, Depends(require("runs", Action.CREATE))],
) -> JSONResponse:
    request = queued_runs.RunRequest(
        commit=body.commit, branch=body.branch, jobs=tuple(body.jobs), parallelism=body.parallelism
    )
    queue_id = await run_in_threadpool(
        queued_runs.queue_run, context.store, context.project, request, principal.name
    )
    return _queued(context, queue_id)


@router.post("/runs/{run_id}/rerun-failed", status_code=202)
async def rerun_failed(
    run_id: int,
    context: Context,
    principal: Annotated[Principal, Depends(require("runs", Action.UPDATE))],
) -> JSONResponse:
    queue_id = await run_in_threadpool(
        queued_runs.queue_rerun_failed, context.store, context.project, run_id, principal.name
    )
    return _queued(context, queue_id)


def _queued(context: ServerContext, queue_id: int) -> JSONResponse:
    pool_of(context).wake()
    return JSONResponse(
        {"queue_id": queue_id, "state": queue.QueueState.QUEUED.value, "run_id": None},
        status_code=202,
        headers={"Location": f"/api/v1/queue/{queue_id}"},
    )


@router.post("/runs/{run_id}/cancel", status_code=202)
async def cancel_run(
    run_id: int,
    context: Context,
    _principal: Annotated[Principal, Depends(require("runs", Action.UPDATE))],
) -> JSONResponse:
    try:
        await run_in_threadpool(queued_runs.interrupt_run, context.store, run_id)
    except queued_runs.NotRunningError as error:
        return _conflict(error.message)
    return JSONResponse({"run_id": run_id, "state": "cancelling"}, status_code=202)


@router.get("/queue")
async def list_queue(
    context: Context,
    _principal: Annotated[Principal, Depends(require("queue", Action.READ))],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    after = _cursor(cursor)
    entries = await run_in_threadpool(queue.pending, context.store.engine, after, limit + 1)
    page = entries[:limit]
    more = len(entries) > limit
    return {
        "items": [queued_runs.entry_json(e) for e in page],
        "next_cursor": str(page[-1].id) if more and page else None,
    }


def _cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit():
        raise ConveyorError("invalid cursor", hint="pass back the next_cursor of a page")
    return int(cursor)


@router.get("/queue/{queue_id}")
async def get_entry(
    queue_id: int,
    context: Context,
    _principal: Annotated[Principal, Depends(require("queue", Action.READ))],
) -> dict[str, Any]:
    entry = await run_in_threadpool(_entry, context, queue_id)
    return dict(queued_runs.entry_json(entry))


@router.post("/queue/{queue_id}/cancel")
async def cancel_entry(
    queue_id: int,
    context: Context,
    principal: Annotated[Principal, Depends(require("runs", Action.UPDATE))],
) -> JSONResponse:
    entry = await run_in_threadpool(_entry, context, queue_id)
    if entry.state is queue.QueueState.QUEUED and await run_in_threadpool(
        queue.cancel_queued, context.store.engine, queue_id, principal.name
    ):
        return JSONResponse({"queue_id": queue_id, "state": "cancelled"})
    entry = await run_in_threadpool(_entry, context, queue_id)
    if entry.state is queue.QueueState.CLAIMED:
        if entry.run_id is not None:
            try:
                await run_in_threadpool(queued_runs.interrupt_run, context.store, entry.run_id)
            except queued_runs.NotRunningError as error:
                return _conflict(error.message)
        elif not pool_of(context).interrupt(queue_id):
            return _conflict(f"queued run {queue_id} is run by another server process")
        return JSONResponse(
            {"queue_id": queue_id, "state": "cancelling", "run_id": entry.run_id},
            status_code=202,
        )
    return _conflict(f"queued run {queue_id} is already {entry.state.value}")


def _entry(context: ServerContext, queue_id: int) -> queue.QueuedRun:
    entry = queue.get(context.store.engine, queue_id)
    if entry is None:
        raise NotFoundError(f"no queued run {queue_id}")
    return entry


def _conflict(reason: str) -> JSONResponse:
    return JSONResponse({"error": "conflict", "reason": reason, "hint": None}, status_code=409)
