"""Environments and releases: every environment's live and warm releases, one
environment's golden signals and history, and a canary's page (its steps, weights, the
judge's evidence over time and the decision), updated live from the event stream."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import charts, formatting, templates
from conveyor.service import environments as service
from conveyor.service.release_record import release_record, to_markdown
from conveyor.service.release_timeline import (
    SERIES_SECONDS,
    DeployTimeline,
    deploy_timeline,
    environment_summary,
    signal_series,
)

formatting.register()
router = APIRouter(include_in_schema=False)
Reader = Annotated[Principal, Depends(require("environments", Action.READ))]
Context = Annotated[ServerContext, Depends(server_context)]
VERDICTS_SHOWN = 50  # rows of a release page's analyses table, newest first


@router.get("/environments", response_class=HTMLResponse)
def environments_page(request: Request, principal: Reader, context: Context) -> HTMLResponse:
    found = environment_summary(context.project, context.store)
    return templates.TemplateResponse(
        request, "environments/list.html", {"principal": principal, "environments": found}
    )


@router.get("/environments/{name}", response_class=HTMLResponse)
def environment_page(
    request: Request, name: str, principal: Reader, context: Context
) -> HTMLResponse:
    store = context.store
    service.environment_spec(context.project, name)  # 404 for an unknown one
    summary = next(s for s in environment_summary(context.project, store) if s.name == name)
    series = signal_series(store, name, since=time.time() - SERIES_SECONDS)
    return templates.TemplateResponse(
        request,
        "environments/environment.html",
        {
            "principal": principal,
            "environment": summary,
            "charts": _signal_charts(series),
            "history": list(reversed(service.history(context.project, store, name))),
            "deploys": list(reversed(store.ledger.deploys.of_environment(name))),
        },
    )


@router.get("/environments/{name}/releases/{deploy_id}", response_class=HTMLResponse)
def release_page(
    request: Request, name: str, deploy_id: int, principal: Reader, context: Context
) -> HTMLResponse:
    service.environment_spec(context.project, name)
    timeline = deploy_timeline(context.store, name, deploy_id)
    deploy = timeline.deploy
    end = deploy.finished_at or time.time()
    series = signal_series(context.store, name, since=deploy.started_at - 60)
    trimmed = {r: [w for w in s if w.end <= end + 60] for r, s in series.items()}
    return templates.TemplateResponse(
        request,
        "environments/release.html",
        {
            "principal": principal,
            "environment": name,
            "timeline": timeline,
            "weights_chart": _weights_chart(timeline),
            "evidence_chart": _evidence_chart(timeline),
            "charts": _signal_charts(trimmed),
            "evidence_rows": evidence_rows,
            "VERDICTS_SHOWN": VERDICTS_SHOWN,
        },
    )


@router.get("/environments/{name}/releases/{deploy_id}/record.md")
def release_record_text(
    name: str, deploy_id: int, _principal: Reader, context: Context
) -> PlainTextResponse:
    """The deploy's release record (`conveyor release record`), as Markdown text."""
    record = release_record(context.project, context.store, name, deploy_id=deploy_id)
    return PlainTextResponse(
        to_markdown(record),
        headers={
            "Content-Disposition": f'inline; filename="release-{name}-{deploy_id}.md"',
            "X-Content-Type-Options": "nosniff",  # text, never sniffed into HTML
        },
    )


# --- charts -----------------------------------------------------------------------------


def _signal_charts(series: Mapping[str, list[Any]]) -> list[Any]:
    def points(attribute: str) -> dict[str, list[tuple[float, float]]]:
        return {
            release: [
                (w.end, float(getattr(w, attribute)))
                for w in windows
                if getattr(w, attribute) is not None
            ]
            for release, windows in series.items()
        }

    return [
        charts.line_chart(
            "Requests per second", points("requests_per_second"), unit=charts.per_second
        ),
        charts.line_chart("Error rate (5xx)", points("rate_5xx"), unit=charts.percent),
        charts.line_chart("Latency p95", points("p95"), unit=charts.seconds),
    ]


def _weights_chart(timeline: DeployTimeline) -> Any:
    releases: dict[str, list[tuple[float, float]]] = {}
    for change in timeline.weights:
        for release in set(releases) | set(change.weights):
            weight = change.weights.get(release, 0)
            releases.setdefault(release, []).append((change.ts, float(weight)))
    return charts.line_chart(
        "Traffic weights (%)", releases, unit=lambda v: f"{v:.0f} %", steps=True
    )


def _evidence_chart(timeline: DeployTimeline) -> Any:
    """log10 of each test's e-values over time: above log10(1/alpha) is evidence."""
    lines: dict[str, list[tuple[float, float]]] = {}
    for verdict in timeline.verdicts:
        for kind, test in verdict.evidence.items():
            if not isinstance(test, Mapping):
                continue
            for key in ("e_rollback", "e_promote"):
                value = _number(test.get(key))
                if value is not None and 0 < value < math.inf:  # "inf" is recorded too
                    lines.setdefault(f"{kind} {key}", []).append((verdict.ts, math.log10(value)))
    return charts.line_chart("Judge's e-values (log10)", lines, unit=lambda v: f"{v:.2g}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):  # infinities are recorded as strings
        try:
            return float(value)
        except ValueError:
            return None
    return None


def evidence_rows(evidence: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The judge's evidence flattened to (dotted key, value) rows for a table."""
    rows: list[tuple[str, str]] = []
    for key, value in evidence.items():
        label = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += evidence_rows(value, label + ".")
        elif isinstance(value, float):
            rows.append((label, f"{value:.4g}"))
        else:
            rows.append((label, str(value)))
    return rows
