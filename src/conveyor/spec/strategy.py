"""An environment's release strategy: how a new version takes over from the stable one.

    environments:
      production:
        strategy:
          canary:
            steps:
              - weight: 10
              - analysis: {}          # until the judge promotes, or rolls back
              - weight: 50
              - pause: 30s
            analysis: {alpha: 0.01, max_duration: 15m}
            bake: 5m

Without a `strategy` a deploy shifts traffic replica by replica as each becomes ready and
runs the smoke tests (the `direct` behaviour of docs/environments.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.spec.types import Duration, ProviderName

DEFAULT_HIDDEN_RATE = 0.01  # a canary erring on 1 % of its requests would have been caught


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OnInconclusive(StrEnum):
    PAUSE = "pause"  # wait for `conveyor release promote` or `abort`
    PROMOTE = "promote"
    ROLLBACK = "rollback"


class Guardrails(_Strict):
    """Absolute limits on the canary: one breach rolls back at once."""

    error_rate: float | None = Field(
        default=0.05, ge=0, le=1, description="Largest fraction of 5xx answers."
    )
    min_requests: int = Field(
        default=20, ge=1, description="Requests before the error-rate guardrail applies."
    )
    p99: Duration | None = Field(default=None, description="Largest p99 latency.")
    cpu_percent: float | None = Field(default=None, gt=0, description="Of one core.")
    memory_bytes: int | None = Field(default=None, gt=0)


class Reference(StrEnum):
    POOLED = "pooled"
    BASELINE = "baseline"


class PromoteWhen(_Strict):
    """The promotion rule: the largest regression the canary could still be hiding, read
    off its confidence bounds at level `beta`, must be tolerable. A kind of event passes
    when its rate ratio to the old version is bounded below the ratio, or its own rate
    below the rate (a canary that barely errs at all, where no ratio can be known yet)."""

    max_hidden_error_ratio: float = Field(
        default=2.0,
        gt=1,
        le=20,
        description="Promote once an error rate this many times the old version's would "
        "have been caught with probability 1 - beta.",
    )
    max_hidden_slow_ratio: float = Field(
        default=2.0,
        gt=1,
        le=20,
        description="The same for requests over the latency threshold (a latency shift).",
    )
    max_hidden_error_rate: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="... or once a canary erring on this fraction of its requests would "
        "have been caught; default: `negligible_rate` if set, else 0.01.",
    )
    max_hidden_slow_rate: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="The same for requests over the latency threshold; default as above.",
    )


class PrometheusQueries(_Strict):
    """PromQL templates; `{release}` and `{environment}` are filled in, `{window}` is the
    sampling interval (e.g. `5s`). Each must return one number: a count over the window."""

    url: str = Field(description="e.g. http://127.0.0.1:9090")
    requests: str
    errors: str
    slow: str | None = Field(default=None, description="Requests over the latency threshold.")


class Analysis(_Strict):
    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="The false-rollback budget: the chance a canary as good as the stable "
        "version is rolled back.",
    )
    beta: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="The chance a canary with the smallest harmful effect is promoted.",
    )
    min_effect: float = Field(
        default=1.5,
        gt=1,
        description="The harm detector's focus: canary errors (or slow requests) this many "
        "times the stable rate are the effects it is quickest to catch.",
    )
    latency_threshold: Duration | None = Field(
        default=None,
        description="A request slower than this is a slow event (rounded up to a bucket of "
        "the router's latency histogram); default: 250ms.",
    )
    negligible_rate: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="The default of `promote_when`'s absolute rates (before them, the rate a "
        "canary with no events anywhere had to be shown below).",
    )
    promote_when: PromoteWhen = Field(
        default_factory=PromoteWhen,
        description="The largest regression a promoted canary may still be hiding.",
    )
    reference: Reference = Field(
        default=Reference.POOLED,
        description="pooled: baseline + stable, the baseline guarding against bias (fast); "
        "baseline: the baseline alone (slower, robust to warm-up effects).",
    )
    guardrails: Guardrails = Field(default_factory=Guardrails)
    interval: Duration = Field(default=1.0, description="How often the judge decides.")
    min_duration: Duration = Field(default=30.0, description="No promotion before this.")
    max_duration: Duration = Field(default=900.0, description="Then `inconclusive` applies.")
    inconclusive: OnInconclusive = Field(default=OnInconclusive.PAUSE)
    provider: ProviderName = Field(
        default="router",
        description="A registered metrics provider; router: the environment's router's own "
        "golden signals.",
    )
    prometheus: PrometheusQueries | None = None
    log_errors: bool = Field(
        default=False,
        description="Also judge error-level lines in the replicas' logs (at most one per "
        "request), canary against the old version like 5xx answers: a release that answers "
        "200 while it logs exceptions is rolled back. Needs provider: router.",
    )

    def hidden_rates(self) -> tuple[float, float]:
        """The absolute tolerances of errors and slow requests."""
        rule, fallback = self.promote_when, self.negligible_rate or DEFAULT_HIDDEN_RATE
        return (rule.max_hidden_error_rate or fallback, rule.max_hidden_slow_rate or fallback)

    def problem(self) -> str | None:
        """What is inconsistent once a step's settings are laid over the canary's."""
        if self.provider == "prometheus" and self.prometheus is None:
            return "provider prometheus needs a `prometheus:` section"
        if self.min_duration > self.max_duration:
            return "min_duration is longer than max_duration"
        if self.log_errors and self.provider != "router":
            return "log_errors reads the replicas' logs: it needs provider: router"
        return None


def merged(defaults: Analysis, step: Analysis) -> Analysis:
    """A step's analysis: the canary's settings with what the step sets on top."""
    return defaults.model_copy(update={name: getattr(step, name) for name in step.model_fields_set})


class CanaryStep(_Strict):
    """Exactly one of: set the canary's share, pause, or analyse until the judge decides."""

    weight: int | None = Field(default=None, ge=0, le=100, description="The canary's share.")
    pause: Duration | Literal["until-promoted"] | None = Field(
        default=None, description="A time, or until `conveyor release promote`."
    )
    analysis: Analysis | None = Field(
        default=None, description="Judge until promote or rollback (settings override)."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> CanaryStep:
        chosen = [x for x in (self.weight, self.pause, self.analysis) if x is not None]
        if len(chosen) != 1:
            raise ValueError("a canary step is exactly one of `weight`, `pause` or `analysis`")
        return self


class Canary(_Strict):
    steps: list[CanaryStep] = Field(
        default_factory=lambda: [
            CanaryStep(weight=10),
            CanaryStep(analysis=Analysis()),
            CanaryStep(weight=50),
            CanaryStep(analysis=Analysis(min_duration=10.0)),
        ],
        min_length=1,
    )
    baseline: bool = Field(
        default=True,
        description="Start the stable version beside the canary with the same replicas and "
        "share, and compare the two under the same conditions.",
    )
    analysis: Analysis = Field(
        default_factory=Analysis, description="Defaults for the steps' analyses and the bake."
    )
    bake: Duration = Field(
        default=0.0,
        description="After full promotion the previous release stays warm this long while "
        "the guardrails keep watching; a breach rolls back.",
    )

    @model_validator(mode="after")
    def _consistent_analyses(self) -> Canary:
        problem = self.analysis.problem()
        if problem:
            raise ValueError(f"analysis: {problem}")
        for index, step in enumerate(self.steps):
            found = merged(self.analysis, step.analysis).problem() if step.analysis else None
            if found:
                raise ValueError(f"steps[{index}].analysis: {found}")
        return self


class BlueGreen(_Strict):
    analysis: Analysis | None = Field(
        default=None,
        description="Guardrails (and the judge) after the switch and through the bake.",
    )
    preview_duration: Duration = Field(
        default=0.0,
        description="How long the preview is reachable only by pinning before the switch.",
    )
    bake: Duration = Field(default=60.0, description="The old release stays warm this long.")

    @model_validator(mode="after")
    def _consistent_analysis(self) -> BlueGreen:
        problem = self.analysis.problem() if self.analysis else None
        if problem:
            raise ValueError(f"analysis: {problem}")
        return self


class Rolling(_Strict):
    max_surge: int = Field(default=1, ge=0, description="Extra replicas serving at once.")
    max_unavailable: int = Field(default=0, ge=0, description="Replicas out of service at once.")
    min_ready: Duration = Field(
        default=1.0, description="Pause after each replica added or removed, to watch it."
    )

    @model_validator(mode="after")
    def _progress(self) -> Rolling:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError("max_surge and max_unavailable cannot both be 0")
        return self


class ABTest(_Strict):
    header: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]+$", description="Requests with this header ..."
    )
    cookie: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]+$", description="... or this cookie ..."
    )
    value: str = Field(
        pattern=r"^[A-Za-z0-9._-]+$", description="... set to this value go to the new version."
    )
    analysis: Analysis | None = Field(
        default=None, description="Guardrails and the judge while the test runs."
    )

    @model_validator(mode="after")
    def _a_match(self) -> ABTest:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("an A/B test matches exactly one of `header` or `cookie`")
        return self


class Strategy(_Strict):
    canary: Canary | None = None
    blue_green: BlueGreen | None = None
    rolling: Rolling | None = None
    ab: ABTest | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Strategy:
        chosen = [x for x in (self.canary, self.blue_green, self.rolling, self.ab) if x]
        if len(chosen) != 1:
            raise ValueError("a strategy is exactly one of canary, blue_green, rolling or ab")
        return self

    def as_canary(self) -> Canary:
        """Blue-green is a canary with no baseline and one step: a preview reachable only
        by pinning its version for `preview_duration` (pinned traffic is never judged: a
        client chooses to pin), then all traffic at once,
        then the bake with the old release warm."""
        if self.canary is not None:
            return self.canary
        if self.ab is not None:
            # A/B: matching requests go to the new version until a person promotes it (or
            # aborts); everyone else stays on the stable one.
            analysis = self.ab.analysis or Analysis()
            return Canary(
                steps=[CanaryStep(pause="until-promoted")], baseline=False, analysis=analysis
            )
        assert self.blue_green is not None
        green = self.blue_green
        analysis = green.analysis or Analysis()
        steps = [CanaryStep(pause=green.preview_duration)] if green.preview_duration else []
        steps.append(CanaryStep(weight=100))
        return Canary(steps=steps, baseline=False, analysis=analysis, bake=green.bake)


class FlagReleases(_Strict):
    """How `conveyor flags release` rolls a flag out: percentages, each judged (on users
    against off users) before the next; a rollback is the flag's kill switch."""

    steps: list[int] = Field(default_factory=lambda: [10, 50, 100], min_length=1)
    stickiness: str | None = Field(default=None, description="The context field to bucket on.")
    analysis: Analysis = Field(
        description="provider: prometheus, with templates whose {release} is `on` or `off`."
    )

    @model_validator(mode="after")
    def _judgeable(self) -> FlagReleases:
        if any(not 0 < step <= 100 for step in self.steps) or self.steps != sorted(self.steps):
            raise ValueError("steps are rising percentages within 1..100")
        if self.analysis.provider != "prometheus":
            raise ValueError(
                "a flag's users share one release, so the router cannot tell them apart: "
                "use provider: prometheus with the service's metrics per flag state"
            )
        problem = self.analysis.problem()
        if problem:
            raise ValueError(f"analysis: {problem}")
        return self
