"""One path for every alert, whether Conveyor's own SLO evaluator raised it or a real
Alertmanager delivered it: deduplicated by fingerprint, checked against the environments
and releases the store knows, then a rollback (inside the bake window after a release) or
an incident. Every outcome is recorded as an event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class AlertSource(StrEnum):
    CONVEYOR = "conveyor"  # the built-in SLO evaluator (observe/slo.py)
    ALERTMANAGER = "alertmanager"  # a webhook delivery (payload version 4)


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Alert:
    """One alert, in Alertmanager's terms: `labels` identify it (`environment` is required,
    `release` optional, `alertname`, `severity`, `slo`...), `fingerprint` deduplicates it."""

    source: AlertSource
    status: AlertStatus
    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: float = 0.0  # unix seconds
    ends_at: float | None = None
