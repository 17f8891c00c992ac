"""Service level objectives of an environment (`environments.<name>.slos` in conveyor.yml).

    slos:
      - name: availability      # default: the kind
        kind: availability      # good = answers that are not 5xx, out of all requests
        objective: 99.5         # percent of good requests over the rolling window
        window: 28d             # rolling window (default 28d)
      - name: fast
        kind: latency           # good = requests answered within `threshold`
        threshold: 250ms        # a bound of the router's latency histogram
        objective: 99
        time_scale: 3600        # every window divided by 3600 (demo, tests): 1h -> 1s

`time_scale` compresses time for a demo or a test: the rolling window and every alert
window of the SRE workbook's table are divided by it (docs/monitoring.md).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from conveyor.spec.durations import format_duration
from conveyor.spec.types import Duration

SLO_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
# The bounds (seconds) of the builtin router's latency histogram
# (deploy/routers/proxy.py LATENCY_BUCKETS; a test keeps the two equal): a latency SLO
# counts the requests at or under one of them, so its threshold must be one.
LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The workbook's longest alert window (the ticket's 3 days): a rolling window shorter
# than it would alert on more than the budget's own period.
LONGEST_ALERT_WINDOW = 3 * 86400.0
DEFAULT_WINDOW = 28 * 86400.0


def _slo_name(name: str) -> str:
    if not re.match(SLO_NAME_PATTERN, name):
        raise ValueError(
            f"invalid SLO name {name!r}: use lower-case letters, digits and '-', starting "
            "with a letter (at most 40)"
        )
    return name


class SloKind(StrEnum):
    AVAILABILITY = "availability"  # good: answers that are not 5xx
    LATENCY = "latency"  # good: answers within the threshold


class Slo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, AfterValidator(_slo_name)] = Field(
        default="",  # never kept: `_named_after_kind` names an SLO after its kind
        description="Unique in the environment; default: the kind.",
        json_schema_extra={"pattern": SLO_NAME_PATTERN},
    )
    kind: SloKind = Field(description="availability (non-5xx share) or latency (fast share).")
    objective: float = Field(
        gt=0, lt=100, description="Percent of good requests over the window, e.g. 99.5."
    )
    window: Duration = Field(default=DEFAULT_WINDOW, description="The rolling window.")
    threshold: Duration | None = Field(
        default=None, description="latency only: a request is good when answered within it."
    )
    time_scale: float = Field(
        default=1.0,
        ge=1,
        le=1_000_000,
        description="Divides the window and every alert window (demo, tests): 3600 turns 1h "
        "into 1s.",
    )
    description: str = Field(default="", max_length=1050)

    @model_validator(mode="before")
    @classmethod
    def _named_after_kind(cls, data: object) -> object:
        if isinstance(data, dict) and "name" not in data:
            # A bad kind is its own error: the name it would give is not a second one.
            kind = data.get("kind")
            known = isinstance(kind, str) and kind in set(SloKind)
            return {**data, "name": kind if known else "slo"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Slo:
        if self.kind is SloKind.LATENCY:
            if self.threshold is None:
                raise ValueError("a latency SLO needs a `threshold`, e.g. threshold: 250ms")
            if self.threshold not in LATENCY_BOUNDS:
                bounds = ", ".join(format_duration(bound) for bound in LATENCY_BOUNDS)
                raise ValueError(
                    f"threshold {format_duration(self.threshold)} is not a bound of the "
                    f"router's latency histogram: use one of {bounds}"
                )
        elif self.threshold is not None:
            raise ValueError("`threshold` is for latency SLOs only")
        if self.window < LONGEST_ALERT_WINDOW:
            raise ValueError(
                "the rolling window must be at least 3d (the longest alert window); "
                "shorten time with `time_scale` instead"
            )
        return self

    @property
    def budget(self) -> float:
        """The error budget: the share of requests allowed to be bad (0.005 for 99.5)."""
        return 1.0 - self.objective / 100.0

    @property
    def scaled_window(self) -> float:
        return self.window / self.time_scale


def _unique_names(slos: list[Slo]) -> list[Slo]:
    seen: set[str] = set()
    for slo in slos:
        if slo.name in seen:
            raise ValueError(f"two SLOs are named {slo.name!r}: give each a distinct `name`")
        seen.add(slo.name)
    return slos


Slos = Annotated[list[Slo], AfterValidator(_unique_names)]
