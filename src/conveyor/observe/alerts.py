"""One path for every alert, whether Conveyor's own SLO evaluator raised it or a real
Alertmanager delivered it: deduplicated by fingerprint, checked against the environments
and releases the store knows, then a rollback (inside the bake window after a release) or
an incident. Every outcome is recorded as an event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from conveyor.service.project import Project
from conveyor.store.store import Store


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


class AlertOutcome(StrEnum):
    ROLLED_BACK = "rolled-back"  # inside the bake window: back to the warm release
    INCIDENT = "incident"  # outside it: an incident opened (or joined)
    DUPLICATE = "duplicate"  # the same fingerprint already acted on
    RESOLVED = "resolved"  # a resolved notification, recorded
    REFUSED = "refused"  # unknown environment or release, or malformed: recorded, no action


def receive(project: Project, store: Store, alert: Alert) -> AlertOutcome:
    """The one intake (implemented by the alerts part)."""
    raise NotImplementedError
