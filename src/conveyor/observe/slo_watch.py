"""The SLO evaluator of the continuous watch: after each sample of an environment, its
SLOs' burn rates, and an alert to the one intake (`alerts.receive`) whenever a
multiwindow alert starts or stops firing.

One alert per environment, SLO and severity (both page rows of the workbook are one page):
its fingerprint hashes those and the alert's name, not the release, so the alert that
rolled a release back is the same alert while the windows still remember the bad
release's errors, not a new one against the release rolled back to.

Each watch process keeps its own state: the samples it folded (read incrementally from
the newest one it has) and which alerts it sent as firing. A process that starts anew
sends what fires again (the intake deduplicates it by fingerprint).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.deploy.sampler import stored_samples
from conveyor.observe import alerts
from conveyor.observe.alerts import Alert, AlertSource, AlertStatus
from conveyor.observe.burn import ALERT_NAME, Firing, Severity, scaled_windows
from conveyor.observe.slo import SloSeries, firing_alerts
from conveyor.service.environments import current_environments
from conveyor.service.project import Project
from conveyor.spec.durations import format_duration
from conveyor.spec.slo import Slo
from conveyor.store.store import Store

_MARGIN = 120.0  # seconds read before the longest window, for the sample it starts from
# Samples older than the second-longest window are thinned to this many over the longest
# one (3 days: one per 4.3 minutes), once a minute: memory stays flat at 1 sample a second.
_KEPT_PER_LONGEST_WINDOW = 1000
_THIN_EVERY = 60.0


@dataclass
class _Watched:
    """One environment's SLO series and the alerts sent as firing (key -> since when)."""

    slos: tuple[Slo, ...]
    series: dict[str, SloSeries]
    firing: dict[tuple[str, Severity], float] = field(default_factory=dict)
    read_to: float | None = None
    thinned_at: float = 0.0


_WATCHED: dict[tuple[Path, str], _Watched] = {}


def consume(project: Project, store: Store, environment: str, now: float) -> None:
    """Evaluate the SLOs of `environment` as of `now`; send what starts or stops firing."""
    spec = current_environments(project).get(environment)
    if spec is None or not spec.slos:
        _WATCHED.pop((project.directory, environment), None)
        return
    watched = _watched(project, environment, tuple(spec.slos))
    _read_new_samples(store, environment, watched, now)
    live = store.ledger.environments.get(environment)
    release = live.live_release if live is not None and live.live_release else ""
    for slo in watched.slos:
        fired = firing_alerts(watched.series[slo.name], now)
        for severity in Severity:
            rows = [firing for firing in fired if firing.severity is severity]
            _transition(
                project,
                store,
                watched,
                environment=environment,
                release=release,
                slo=slo,
                severity=severity,
                rows=rows,
                now=now,
            )


def _transition(
    project: Project,
    store: Store,
    watched: _Watched,
    *,
    environment: str,
    release: str,
    slo: Slo,
    severity: Severity,
    rows: Sequence[Firing],
    now: float,
) -> None:
    key = (slo.name, severity)
    since = watched.firing.get(key)
    if rows and since is None:
        alert = slo_alert(environment, release, slo, severity, rows, starts_at=now)
        alerts.receive(project, store, alert)
        watched.firing[key] = now  # only once the intake took it
    elif not rows and since is not None:
        alert = slo_alert(
            environment, release, slo, severity, rows, starts_at=since, resolved_at=now
        )
        alerts.receive(project, store, alert)
        del watched.firing[key]


def slo_alert(
    environment: str,
    release: str,
    slo: Slo,
    severity: Severity,
    rows: Sequence[Firing],
    *,
    starts_at: float,
    resolved_at: float | None = None,
) -> Alert:
    """The alert of one SLO and severity, firing on `rows` (or resolved)."""
    labels = {
        "alertname": ALERT_NAME,
        "environment": environment,
        "slo": slo.name,
        "severity": severity.value,
    }
    if release:
        labels["release"] = release
    return Alert(
        source=AlertSource.CONVEYOR,
        status=AlertStatus.FIRING if resolved_at is None else AlertStatus.RESOLVED,
        fingerprint=fingerprint(environment, slo.name, severity),
        labels=labels,
        annotations=_annotations(environment, slo, rows),
        starts_at=starts_at,
        ends_at=resolved_at,
    )


def fingerprint(environment: str, slo: str, severity: Severity) -> str:
    """Stable across evaluations, processes and releases (16 hex digits, as Alertmanager's)."""
    text = "\x00".join(("conveyor-slo", ALERT_NAME, environment, slo, severity.value))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _annotations(environment: str, slo: Slo, rows: Sequence[Firing]) -> dict[str, str]:
    if not rows:
        return {"summary": f"{environment}: {slo.name} no longer burns its error budget fast"}
    burning = "; ".join(
        f"{row.long_burn_rate:.1f}x over {format_duration(row.long_window)} and "
        f"{row.short_burn_rate:.1f}x over {format_duration(row.short_window)} "
        f"(above {row.factor:g}x)"
        for row in rows
    )
    return {
        "summary": f"{environment}: {slo.name} burns its error budget: {burning}",
        "objective": f"{slo.objective:g}%",
        "windows": ", ".join(
            f"{format_duration(row.long_window)}/{format_duration(row.short_window)}"
            for row in rows
        ),
        "burn_rates": ", ".join(
            f"{row.long_burn_rate:.3g}/{row.short_burn_rate:.3g}" for row in rows
        ),
    }


def _watched(project: Project, environment: str, slos: tuple[Slo, ...]) -> _Watched:
    key = (project.directory, environment)
    watched = _WATCHED.get(key)
    if watched is None or watched.slos != slos:  # conveyor.yml changed its SLOs: start over
        watched = _Watched(slos, {slo.name: SloSeries(slo) for slo in slos})
        _WATCHED[key] = watched
    return watched


def _read_new_samples(store: Store, environment: str, watched: _Watched, now: float) -> None:
    longest = max(_alert_reach(slo) for slo in watched.slos)
    since = watched.read_to if watched.read_to is not None else now - longest - _MARGIN
    samples = [s for s in stored_samples(store.ledger, environment, since=since) if s.ts <= now]
    thin = now - watched.thinned_at >= _THIN_EVERY
    for series in watched.series.values():
        series.add(samples)
        series.forget_before(now - _alert_reach(series.slo) - _MARGIN)
        if thin:  # only the longest window reads further back than the 6h one
            windows = scaled_windows(series.slo.time_scale)
            series.thin(now - windows[-2] - _MARGIN, windows[-1] / _KEPT_PER_LONGEST_WINDOW)
    if thin:
        watched.thinned_at = now
    newest = max((s.ts for s in samples), default=None)
    if newest is not None:
        watched.read_to = max(newest, watched.read_to or newest)


def _alert_reach(slo: Slo) -> float:
    """The longest alert window: the watch needs no more (the budget is `slo status`'s)."""
    return scaled_windows(slo.time_scale)[-1]
