"""Prometheus recording and alerting rules for an environment's SLOs, in the manner of
Sloth and Pyrra: a recording rule per window for the error ratio, then one alerting rule
per row of the workbook's table (observe/burn.py), firing when the long AND the short
window burn faster than the row's factor.

They are written against the series `conveyor env metrics` exposes (deploy/exposition.py)
for a Prometheus scraping it: `conveyor_release_requests_total`,
`conveyor_release_responses_total{code="5xx"}` and the histogram
`conveyor_release_request_duration_seconds`, each with `environment` and `release`
labels; the rules sum the releases of an environment, and `rate()` handles counter
resets as Conveyor's own evaluator does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from conveyor.deploy.exposition import PREFIX, le_label
from conveyor.observe.burn import ALERT_NAME, WORKBOOK_ALERTS, scaled_windows
from conveyor.spec.environments import Environment
from conveyor.spec.slo import Slo, SloKind

ERROR_RATIO = "conveyor_slo:error_ratio:rate"  # + the window, e.g. ..._rate5m
BUDGET_REMAINING = "conveyor_slo:error_budget_remaining"
_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def prometheus_duration(seconds: float) -> str:
    """A Prometheus duration, rounded to the millisecond: 3600 -> 1h, 0.0833 -> 83ms."""
    rest = max(round(seconds * 1000), 1)
    text = ""
    for unit, size in _UNITS:
        count, rest = divmod(rest, size)
        if count:
            text += f"{count}{unit}"
    return text


def good_and_total(environment: str, slo: Slo) -> tuple[str, str]:
    """The counters of good and of all requests (summed over releases), without rate."""
    where = f'environment="{environment}"'
    if slo.kind is SloKind.AVAILABILITY:
        return (
            f'{PREFIX}_responses_total{{{where},code!="5xx"}}',
            f"{PREFIX}_requests_total{{{where}}}",
        )
    assert slo.threshold is not None
    return (
        f'{PREFIX}_request_duration_seconds_bucket{{{where},le="{le_label(slo.threshold)}"}}',
        f"{PREFIX}_request_duration_seconds_count{{{where}}}",
    )


def error_ratio_expression(environment: str, slo: Slo, window: str) -> str:
    """The share of bad requests over `window`: 5xx over all requests, or one minus the
    share answered within the threshold."""

    def rate(series: str) -> str:
        return f"sum by (environment) (rate({series}[{window}]))"

    good, total = good_and_total(environment, slo)
    if slo.kind is SloKind.AVAILABILITY:
        bad = f'{PREFIX}_responses_total{{environment="{environment}",code="5xx"}}'
        return f"{rate(bad)} / {rate(total)}"
    return f"1 - {rate(good)} / {rate(total)}"


def slo_rules(environment: str, slo: Slo) -> dict[str, Any]:
    """One rule group: the error ratio over each window, the budget left, the alerts."""
    labels = {"slo": slo.name}
    windows = [*scaled_windows(slo.time_scale), slo.scaled_window]
    recording = [
        {
            "record": ERROR_RATIO + prometheus_duration(window),
            "expr": error_ratio_expression(environment, slo, prometheus_duration(window)),
            "labels": dict(labels),  # a copy each: no YAML anchors in the file
        }
        for window in dict.fromkeys(windows)
    ]
    rolling = _series(ERROR_RATIO + prometheus_duration(slo.scaled_window), environment, slo)
    recording.append(
        {
            "record": BUDGET_REMAINING,
            "expr": f"1 - {rolling} / {_number(slo.budget)}",
            "labels": dict(labels),
        }
    )
    return {
        "name": f"conveyor-slo-{environment}-{slo.name}",
        "rules": [*recording, *(_alert(environment, slo, row) for row in WORKBOOK_ALERTS)],
    }


def _alert(environment: str, slo: Slo, row: Any) -> dict[str, Any]:
    long, short = (
        prometheus_duration(w / slo.time_scale) for w in (row.long_window, row.short_window)
    )
    threshold = f"({_number(row.factor)} * {_number(slo.budget)})"
    condition = " and ".join(
        f"{_series(ERROR_RATIO + window, environment, slo)} > {threshold}"
        for window in (long, short)
    )
    return {
        "alert": ALERT_NAME,
        "expr": condition,
        "labels": {
            "severity": row.severity.value,
            "slo": slo.name,
            "long": long,
            "short": short,
        },
        "annotations": {
            "summary": f"{environment}: {slo.name} burns its error budget faster than "
            f"{_number(row.factor)}x over {long} and {short}",
            "objective": f"{_number(slo.objective)}%",
        },
    }


def _series(name: str, environment: str, slo: Slo) -> str:
    return f'{name}{{environment="{environment}",slo="{slo.name}"}}'


def _number(value: float) -> str:
    return f"{value:.10g}"


def rules_document(environments: Mapping[str, Environment], only: str | None = None) -> str:
    """The rules file (`groups:`) for every SLO of every environment, or of `only`."""
    groups = [
        slo_rules(name, slo)
        for name, environment in environments.items()
        if only is None or name == only
        for slo in environment.slos
    ]
    return yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000)
