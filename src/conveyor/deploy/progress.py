"""A progressive release's progress, as recorded on its deploy in the ledger.

The canary writes it at every change (deploy/canary.py); `conveyor release status`,
the release record and the demo's report read it; a controller that resumes the deploy
starts again from it. The store keeps it as JSON and knows nothing of this model:
it is validated here, when read. Every field has a default, so progress recorded by an
older Conveyor (with fewer keys) still loads, and unknown keys are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Phase(StrEnum):
    STARTED = "started"  # the canary (and its baseline) are ready
    PROMOTED = "promoted"  # all traffic on the canary; the bake may follow
    ROLLED_BACK = "rolled back"


class CanaryProgress(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    strategy: str = "canary"
    steps: int | None = None  # how many steps the canary has
    step: int | None = None  # the step under way, from 0
    weight: int = 0  # the canary's share of traffic, in percent
    phase: Phase | None = None
    paused: bool = False
    verdict: str | None = None  # the judge's latest (a Verdict value)
    reason: str | None = None
    baseline_ports: list[int] = Field(default_factory=list)
    command_cursor: int = 0  # the last person's command read (an event id)
    updated: float | None = None  # epoch seconds
    # Once rolled back: what the canary served, and how fast traffic went back.
    canary_requests: int | None = None
    canary_errors: int | None = None
    seconds_with_traffic: float | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    switch_seconds: float | None = None
    # Once the judge promoted a step: what that promotion guarantees, in words (the
    # regressions that would have been caught, at what traffic, over how long).
    guarantee: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The keys set so far, JSON-safe (numbers that are not finite become strings)."""
        plain: dict[str, Any] = _plain(self.model_dump(mode="python", exclude_unset=True))
        return plain


def load_progress(raw: Mapping[str, Any] | None) -> CanaryProgress | None:
    """The progress a deploy recorded; None for a deploy that recorded none (direct,
    rolling)."""
    if not raw:
        return None
    return CanaryProgress.model_validate(dict(raw))


def _plain(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
