"""Alertmanager's webhook payload (version 4) read into `Alert`s, refusing anything else
with one clear reason. The shape (prometheus.io, configuration, `webhook_config`):

    {"version": "4", "groupKey": "...", "truncatedAlerts": 0, "status": "firing",
     "receiver": "conveyor", "groupLabels": {...}, "commonLabels": {...},
     "commonAnnotations": {...}, "externalURL": "http://alertmanager:9093",
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
                 "startsAt": "RFC 3339", "endsAt": "RFC 3339", "generatorURL": "...",
                 "fingerprint": "1a30ba71cca2921f"}]}

A firing alert's `endsAt` is the zero time (0001-01-01T00:00:00Z).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.observe.alerts import Alert, AlertSource, AlertStatus

PAYLOAD_VERSION = "4"
MAX_ALERTS = 1000  # Alertmanager's max_alerts is unlimited by default; a group is far fewer
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")  # nanoseconds: Python reads microseconds
_ZERO_YEAR = 1


class PayloadError(ConveyorError):
    """The body is not an Alertmanager webhook payload of version 4."""


def parse_webhook(body: bytes) -> list[Alert]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise PayloadError(f"the body is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise PayloadError("the body is not a JSON object")
    version = payload.get("version")
    if version != PAYLOAD_VERSION:
        raise PayloadError(
            f"payload version {str(version)[:20]!r} is not supported",
            hint="Alertmanager's webhook_config sends version 4 (Alertmanager 0.x)",
        )
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("`alerts` must be a list")
    if len(alerts) > MAX_ALERTS:
        raise PayloadError(f"more than {MAX_ALERTS} alerts in one delivery")
    return [_alert(item, f"alerts[{number}]") for number, item in enumerate(alerts)]


def _alert(item: Any, where: str) -> Alert:
    if not isinstance(item, dict):
        raise PayloadError(f"{where} is not an object")
    status = item.get("status")
    if status not in (AlertStatus.FIRING.value, AlertStatus.RESOLVED.value):
        raise PayloadError(f"{where}.status must be firing or resolved")
    fingerprint = item.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise PayloadError(f"{where}.fingerprint is missing")
    ends_at = _time(item.get("endsAt"), f"{where}.endsAt", required=False)
    return Alert(
        source=AlertSource.ALERTMANAGER,
        status=AlertStatus(status),
        fingerprint=fingerprint,
        labels=_strings(item.get("labels"), f"{where}.labels"),
        annotations=_strings(item.get("annotations", {}), f"{where}.annotations"),
        starts_at=_time(item.get("startsAt"), f"{where}.startsAt", required=True) or 0.0,
        ends_at=ends_at,
    )


def _strings(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise PayloadError(f"{where} must be an object of strings")
    return value


def _time(value: Any, where: str, *, required: bool) -> float | None:
    """Unix seconds from RFC 3339; None for the zero time (a firing alert's endsAt)."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{where} must be an RFC 3339 time")
    try:
        moment = datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", value.replace("Z", "+00:00")))
    except ValueError:
        raise PayloadError(f"{where} is not an RFC 3339 time: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise PayloadError(f"{where} has no time zone")
    if moment.year == _ZERO_YEAR:
        return None
    return moment.timestamp()
