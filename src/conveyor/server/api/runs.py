"""Runs, their jobs and the jobs' logs (read side; triggering and cancelling live in
run_actions.py).

    GET /api/v1/runs                         newest first; ?branch ?status ?commit ?pipeline
    GET /api/v1/runs/{id}                    {"run", "jobs"}: as `conveyor status -o json`
    GET /api/v1/runs/{id}/jobs/{job}         one job (by id, or by name when unique)
    GET /api/v1/runs/{id}/jobs/{job}/log     raw bytes of a byte range of its log
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from starlette.status import HTTP_206_PARTIAL_CONTENT, HTTP_416_RANGE_NOT_SATISFIABLE

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
from conveyor.server.logs import MAX_RANGE, LogSlice, read_range
from conveyor.service.queries import resolve_job, run_view
from conveyor.service.run_pages import RunFilter, commit_prefix, run_state, runs_page

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], dependencies=reading("runs"))

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@router.get("", response_model=ListBody, responses=ERRORS, summary="List runs, newest first")
def list_runs(
    context: Context,
    *,
    limit: Limit = None,
    cursor: Cursor = None,
    branch: str | None = None,
    status: Annotated[str | None, Query(description="A run state: success, failed...")] = None,
    commit: Annotated[str | None, Query(description="A commit sha or its start.")] = None,
    pipeline: str | None = None,
) -> dict[str, Any]:
    where = RunFilter(branch, run_state(status), commit_prefix(commit), pipeline)
    return listed(runs_page(context.store, where, limit, cursor))


@router.get("/{run_id}", responses=ERRORS, summary="A run and its jobs (state, timings, cache)")
def get_run(run_id: int, context: Context) -> dict[str, Any]:
    view = run_view(context.store, run_id)
    return {"run": to_jsonable(view.run), "jobs": to_jsonable(view.jobs)}


@router.get("/{run_id}/jobs/{job}", responses=ERRORS, summary="One job of a run")
def get_job(run_id: int, job: str, context: Context) -> dict[str, Any]:
    found: dict[str, Any] = to_jsonable(resolve_job(context.store, run_id, job))
    return found


@router.get(
    "/{run_id}/jobs/{job}/log",
    responses={
        **ERRORS,
        200: {"content": {"text/plain": {}}, "description": "The bytes asked for"},
        206: {"description": "A `Range: bytes=` answer, with Content-Range"},
    },
    summary="A byte range of a job's log (?offset&length, ?tail, or Range)",
)
def get_log(
    run_id: int,
    job: str,
    context: Context,
    *,
    offset: Annotated[int | None, Query(ge=0)] = None,
    length: Annotated[int, Query(ge=0, le=MAX_RANGE)] = MAX_RANGE,
    tail: Annotated[int | None, Query(ge=0, le=MAX_RANGE, description="The last N bytes.")] = None,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    job_id = resolve_job(context.store, run_id, job).job_id
    if range_header:
        return _ranged(context, run_id, job_id, range_header)
    if tail is not None:
        piece = read_range(context, run_id, job_id, None, tail)
    else:
        piece = read_range(context, run_id, job_id, offset or 0, length)
    return _bytes(piece, 200)


def _ranged(context: Context, run_id: int, job_id: str, header: str) -> Response:
    """RFC 9110 single ranges: `bytes=a-b`, `bytes=a-`, `bytes=-n` (the last n)."""
    match = RANGE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        return _unsatisfiable(context, run_id, job_id)
    first, last = match.groups()
    if not first:
        piece = read_range(context, run_id, job_id, None, int(last))
    else:
        start = int(first)
        length = int(last) - start + 1 if last else MAX_RANGE
        if length <= 0:
            return _unsatisfiable(context, run_id, job_id)
        piece = read_range(context, run_id, job_id, start, length)
        if start >= piece.size > 0 or (start > 0 and piece.size == 0):
            return _unsatisfiable(context, run_id, job_id, piece.size)
    response = _bytes(piece, HTTP_206_PARTIAL_CONTENT)
    end = piece.offset + len(piece.data) - 1
    response.headers["Content-Range"] = f"bytes {piece.offset}-{end}/{piece.size}"
    return response


def _unsatisfiable(context: Context, run_id: int, job_id: str, size: int | None = None) -> Response:
    if size is None:
        size = read_range(context, run_id, job_id, None, 0).size
    return Response(
        status_code=HTTP_416_RANGE_NOT_SATISFIABLE, headers={"Content-Range": f"bytes */{size}"}
    )


def _bytes(piece: LogSlice, code: int) -> Response:
    return Response(
        piece.data,
        status_code=code,
        media_type="text/plain; charset=utf-8",
        headers={
            "X-Log-Offset": str(piece.offset),
            "X-Log-Size": str(piece.size),
            "X-Log-Finished": "true" if piece.finished else "false",
            "Accept-Ranges": "bytes",
        },
    )
