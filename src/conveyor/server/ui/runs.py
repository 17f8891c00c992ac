"""The runs pages: `/runs` (the list, filtered, paged by id) and `/runs/{id}` (one run:
its header, the job graph as SVG, the jobs with timings, cache hits and why a job ran)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import format as _format  # noqa: F401 (registers the filters)
from conveyor.server.ui import templates
from conveyor.server.ui.graph import layout
from conveyor.service.queries import run_view
from conveyor.service.run_list import DEFAULT_LIMIT, RunFilters, pipelines, run_page
from conveyor.states import RunState
from conveyor.store.records import JobRecord

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require("runs", Action.READ))]
Context = Annotated[ServerContext, Depends(server_context)]


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    principal: Reader,
    context: Context,
    *,
    branch: str = "",
    status: str = "",
    commit: str = "",
    pipeline: str = "",
    before: Annotated[int | None, Query()] = None,
    after: Annotated[int | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = DEFAULT_LIMIT,
) -> HTMLResponse:
    filters = RunFilters.parse(branch, status, commit, pipeline)
    page = run_page(context.store, filters, before=before, after=after, limit=limit)
    kept = {"branch": branch, "status": status, "commit": commit, "pipeline": pipeline}
    kept = {key: value for key, value in kept.items() if value}
    if limit != DEFAULT_LIMIT:
        kept["limit"] = str(limit)

    def link(**cursor: int) -> str:
        return "/runs?" + urlencode({**kept, **{k: str(v) for k, v in cursor.items()}})

    return templates.TemplateResponse(
        request,
        "runs/list.html",
        {
            "principal": principal,
            "page": page,
            "filters": {"branch": branch, "status": status, "commit": commit, "pipeline": pipeline},
            "statuses": [state.value for state in RunState],
            "pipelines": pipelines(context.store),
            "older": link(before=page.older) if page.older is not None else None,
            "newer": link(after=page.newer) if page.newer is not None else None,
        },
    )


def job_href(job: JobRecord) -> str:
    return f"/runs/{job.run_id}/jobs/{quote(job.job_id, safe='')}/log"


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page_view(
    request: Request, principal: Reader, context: Context, run_id: int
) -> HTMLResponse:
    view = run_view(context.store, run_id)
    return templates.TemplateResponse(
        request,
        "runs/run.html",
        {
            "principal": principal,
            "run": view.run,
            "jobs": view.jobs,
            "graph": layout(view.jobs, job_href),
            "job_href": job_href,
            "cached": sum(1 for job in view.jobs if job.state.value == "cached"),
        },
    )
