"""The Google SRE workbook's multiwindow, multi-burn-rate alerts ("Alerting on SLOs",
table 5-8), as a pure function of burn rates.

A burn rate is the error ratio over a window divided by the error budget: 1 spends the
budget exactly over the SLO's window, 14.4 spends 2 % of a 30-day budget in one hour.
Each row fires when the burn rate exceeds its factor over BOTH its long window (enough
budget spent to matter) and its short window (still burning now, so the alert resets
soon after the problem stops):

    severity  long  short  burn rate  budget spent
    page      1h    5m     14.4       2 % (of 30 days)
    page      6h    30m    6          5 %
    ticket    3d    6h     1          10 %

An SLO's `time_scale` divides every window (3600 turns 1h into 1s) for demos and tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

ALERT_NAME = "ErrorBudgetBurn"  # Conveyor's own alerts and the exported rules alike
HOUR = 3600.0
MINUTE = 60.0
DAY = 86400.0


class Severity(StrEnum):
    PAGE = "page"  # someone acts now
    TICKET = "ticket"  # someone looks within a day


@dataclass(frozen=True)
class AlertRow:
    """One row of the workbook's table; windows in seconds, before any time scale."""

    severity: Severity
    long_window: float
    short_window: float
    factor: float  # the burn rate both windows must exceed
    budget_spent: float  # the share of a 30-day budget the long window stands for


WORKBOOK_ALERTS: tuple[AlertRow, ...] = (
    AlertRow(Severity.PAGE, 1 * HOUR, 5 * MINUTE, 14.4, 0.02),
    AlertRow(Severity.PAGE, 6 * HOUR, 30 * MINUTE, 6.0, 0.05),
    AlertRow(Severity.TICKET, 3 * DAY, 6 * HOUR, 1.0, 0.10),
)


@dataclass(frozen=True)
class Firing:
    """A row whose two windows both burn faster than its factor."""

    severity: Severity
    long_window: float  # seconds, scaled
    short_window: float
    factor: float
    long_burn_rate: float
    short_burn_rate: float


def scaled_windows(time_scale: float, table: Sequence[AlertRow] = WORKBOOK_ALERTS) -> list[float]:
    """Every window of the table divided by `time_scale`, shortest first, each once."""
    windows = {row.long_window for row in table} | {row.short_window for row in table}
    return sorted(window / time_scale for window in windows)


def evaluate(
    burn_rates: Mapping[float, float | None],
    time_scale: float = 1.0,
    table: Sequence[AlertRow] = WORKBOOK_ALERTS,
) -> list[Firing]:
    """The rows that fire, given the burn rate over each scaled window (seconds -> burn
    rate; None when the window saw no request, which fires nothing)."""
    firing = []
    for row in table:
        long_window, short_window = row.long_window / time_scale, row.short_window / time_scale
        long_rate, short_rate = burn_rates.get(long_window), burn_rates.get(short_window)
        if long_rate is None or short_rate is None:
            continue
        if long_rate > row.factor and short_rate > row.factor:
            firing.append(
                Firing(row.severity, long_window, short_window, row.factor, long_rate, short_rate)
            )
    return firing
