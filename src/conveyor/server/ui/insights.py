"""Insights pages: `/insights`, a period's summary and its actionable items (as `conveyor
insights summary`), and `/insights/dora`, an environment's DORA metrics with their weekly
trends drawn as charts (server-side SVG, server/ui/charts.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from conveyor.errors import ConveyorError
from conveyor.observe.dora import DEFAULT_SINCE, DoraReport, project_dora
from conveyor.observe.dora_figures import describe_duration, describe_percent, describe_spread
from conveyor.observe.insights import summary
from conveyor.server.auth import Action, Principal, authorize, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import charts, formatting, templates
from conveyor.spec.durations import parse_duration

formatting.register()
router = APIRouter(include_in_schema=False)
Reader = Annotated[Principal, Depends(require("insights", Action.READ))]
Context = Annotated[ServerContext, Depends(server_context)]


@router.get("/insights", response_class=HTMLResponse)
def summary_page(
    request: Request,
    principal: Reader,
    context: Context,
    since: Annotated[str, Query(max_length=20)] = "30d",
) -> HTMLResponse:
    try:
        period = parse_duration(since)
    except ValueError as error:
        raise ConveyorError(f"since: {error}", hint="for example ?since=30d") from None
    found = summary(context.project, context.store, period=period)
    return templates.TemplateResponse(
        request,
        "insights/summary.html",
        {"principal": principal, "summary": found, "since": since},
    )


@router.get("/insights/dora", response_class=HTMLResponse)
def dora_page(
    request: Request,
    principal: Reader,
    context: Context,
    env: Annotated[str | None, Query()] = None,
    since: Annotated[str, Query()] = DEFAULT_SINCE,
) -> HTMLResponse:
    report = project_dora(context.project, context.store, env or None, since)
    authorize(request, "environments", Action.READ, report.environment)
    return templates.TemplateResponse(
        request,
        "insights/dora.html",
        {
            "principal": principal,
            "report": report,
            "since": since,
            "charts": trend_charts(report),
            "spread": describe_spread,
            "duration": describe_duration,
            "percent": describe_percent,
            "band": lambda band: band.value if band is not None else "",
        },
    )


def trend_charts(report: DoraReport) -> list[Markup]:
    """Deployments, change failure rate and median lead time per week."""
    weeks = report.weeks

    def series(values: list[tuple[float, float | None]]) -> list[tuple[float, float]]:
        return [(start, value) for start, value in values if value is not None]

    deploys = series([(w.start, float(w.deployments)) for w in weeks])
    failure = series([(w.start, w.change_failure_rate) for w in weeks])
    lead = series(
        [(w.start, w.lead_time_median / 3600 if w.lead_time_median else None) for w in weeks]
    )
    stops = series([(w.start, float(w.canary_stops)) for w in weeks])
    return [
        charts.line_chart(
            "Deployments per week",
            {"deployments": deploys, "stopped by the canary": stops},
            steps=True,
            time_format="%Y-%m-%d",
        ),
        charts.line_chart(
            "Change failure rate per week",
            {"change failure rate": failure},
            unit=charts.percent,
            time_format="%Y-%m-%d",
        ),
        charts.line_chart(
            "Lead time for changes (median, hours)",
            {"lead time": lead},
            unit=lambda v: f"{v:.3g} h",
            time_format="%Y-%m-%d",
        ),
    ]
