"""The `environments:` section of conveyor.yml: where releases run and how they are served.

environments:
  staging:
    runtime: process        # process (default) | podman
    router: builtin         # builtin (default) | haproxy
    port: 8080              # the router's public port; 0 or absent: one picked once, kept
    replicas: 2
    health:
      readiness: {path: /healthz}   # no path: ready once the port accepts a connection
    hooks:
      before_traffic:       # once per release, inside its image, before any traffic
        - command: flask --app notes init-db
          timeout: 2m       # default 5m
    env: {SHOP_DB: /tmp/shop.db}
    secrets: [SHOP_TOKEN]
    smoke:
      - http: /healthz
        status: 200
      - command: ./smoke.sh   # gets CONVEYOR_ENV_URL
  production:
    after: staging          # a digest must have been deployed to staging first
    approval:               # people who did not write the change accept it first
      required: 2           # distinct approvers
      roles: [reviewer]     # any of these roles or groups may approve
      timeout: 24h          # then the request is rejected
      wait_timer: 10m       # and no deploy before this long after the request
    slos:                   # error budgets and burn-rate alerts (docs/monitoring.md)
      - kind: availability  # answers that are not 5xx, out of all requests
        objective: 99.5     # percent, over a rolling 28d window (window: 30d...)
      - kind: latency
        threshold: 250ms    # answered within this (a bound of the router's histogram)
        objective: 99
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from conveyor.spec.business import Business
from conveyor.spec.hooks import Hooks
from conveyor.spec.kubernetes import KubernetesSettings
from conveyor.spec.slo import Slos
from conveyor.spec.strategy import FlagReleases, Strategy
from conveyor.spec.types import Duration, RouterName, RuntimeName

ENVIRONMENT_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# An environment's own value of a secret: CONVEYOR_SECRET_<ENVIRONMENT>_<NAME>.
SCOPED_SECRET_PREFIX = "CONVEYOR_SECRET_"  # noqa: S105 (a name, not a value)


def scoped_secret_variable(environment: str, name: str) -> str:
    """The variable holding `environment`'s own value of secret `name`
    (`production`, `DB_URL` -> `CONVEYOR_SECRET_PRODUCTION_DB_URL`)."""
    return f"{SCOPED_SECRET_PREFIX}{environment.upper().replace('-', '_')}_{name}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Probe(_Strict):
    """A check of one replica: with a `path`, any 2xx or 3xx answer to a GET of it within
    the timeout passes; without one (the default, since most apps have no health page), a
    TCP connection to the replica's port does."""

    path: str | None = Field(
        default=None,
        pattern=r"^/",
        description="Path on the replica to GET; none: a TCP connect to its port.",
    )
    interval: Duration = Field(default=1.0, description="Between checks.")
    timeout: Duration = Field(default=1.0, description="For one check.")
    failure_threshold: int = Field(
        default=3, ge=1, description="Consecutive failures before a live replica is restarted."
    )


class Health(_Strict):
    readiness: Probe = Field(default_factory=Probe, description="Ready to receive traffic.")
    liveness: Probe = Field(default_factory=Probe, description="Still alive; else restarted.")
    ready_timeout: Duration = Field(
        default=60.0, description="How long a new release may take to become ready."
    )


class SmokeCheck(_Strict):
    """One check run after each deploy against the environment's URL (through the router)."""

    name: str | None = Field(default=None, description="Shown in reports; default: the check.")
    http: str | None = Field(default=None, pattern=r"^/", description="A path to GET.")
    method: str = Field(default="GET", pattern=r"^[A-Z]+$")
    status: int = Field(default=200, ge=100, le=599, description="The expected status.")
    body_contains: str | None = Field(default=None, description="Text the body must contain.")
    command: str | None = Field(
        default=None,
        description="A shell command that must exit 0; CONVEYOR_ENV_URL names the environment.",
    )
    timeout: Duration = Field(default=10.0)

    @model_validator(mode="after")
    def _one_kind(self) -> SmokeCheck:
        if (self.http is None) == (self.command is None):
            raise ValueError("a smoke check needs exactly one of `http` or `command`")
        return self

    @property
    def title(self) -> str:
        return self.name or (f"{self.method} {self.http}" if self.http else str(self.command))


class Approval(_Strict):
    """A human gate before a deploy to this environment (docs/approvals.md).

    The commit's author and whoever triggered the run can never approve it; identities
    and roles come from the users file (`conveyor users`), not from the repository.
    """

    required: int = Field(default=1, ge=1, le=20, description="Distinct approvals needed.")
    roles: list[str] = Field(
        default_factory=list, description="Roles whose members may approve (any of)."
    )
    groups: list[str] = Field(
        default_factory=list, description="Groups whose members may approve (any of)."
    )
    timeout: Duration = Field(
        default=24 * 3600.0, description="A request not approved by then is rejected."
    )
    wait_timer: Duration = Field(
        default=0.0, description="No deploy before this long after the request, approved or not."
    )

    @model_validator(mode="after")
    def _someone_may_approve(self) -> Approval:
        if not self.roles and not self.groups:
            raise ValueError("name the `roles` or `groups` whose members may approve")
        if self.wait_timer >= self.timeout:
            raise ValueError("wait_timer must be shorter than timeout")
        return self


class SampleRetention(_Strict):
    """How long the golden-signal samples are kept (`env watch` writes one per second per
    release): all of them for `full`, then the last of every `every` per release (counters
    are cumulative, so rates between kept samples stay exact), none after `keep`."""

    full: Duration = Field(default=6 * 3600.0, description="Every sample is kept this long.")
    every: Duration = Field(
        default=60.0, description="Older samples: one per release per this interval."
    )
    keep: Duration = Field(default=30 * 86400.0, description="No sample is kept longer.")

    @model_validator(mode="after")
    def _windows_nest(self) -> SampleRetention:
        if self.full > self.keep:
            raise ValueError("full must not be longer than keep")
        if self.every < 1 or self.every != int(self.every):
            raise ValueError("every must be a whole number of seconds")
        return self


class AlertSettings(_Strict):
    """What an alert on this environment does (docs/monitoring.md, "Alerts"): inside the
    bake window after a release went live it rolls back to the warm release; later, or
    with `rollback: false`, it opens an incident."""

    bake: Duration = Field(
        default=3600.0, description="How long after a release an alert rolls it back."
    )
    rollback: bool = Field(
        default=True, description="Roll back automatically inside the bake window."
    )


class Environment(_Strict):
    runtime: RuntimeName = Field(default="process", description="A registered runtime.")
    router: RouterName = Field(default="builtin", description="A registered router.")
    port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="The router's public port on 127.0.0.1; 0: one picked at the first deploy "
        "and kept.",
    )
    replicas: int = Field(default=1, ge=1, le=64)
    health: Health = Field(default_factory=Health)
    env: dict[str, str] = Field(default_factory=dict, description="Set in every replica.")
    secrets: list[str] = Field(
        default_factory=list,
        description="Secret names passed to replicas: CONVEYOR_SECRET_<ENV>_<NAME> or "
        ".conveyor/secrets/<env>.env first, then NAME or .conveyor/secrets.env.",
    )
    after: str | None = Field(
        default=None,
        description="Promotion order: a digest must have been deployed successfully to this "
        "environment first.",
    )
    approval: Approval | None = Field(
        default=None, description="Approvals needed before a deploy here (none: no human gate)."
    )
    smoke: list[SmokeCheck] = Field(
        default_factory=list, description="Checks after each deploy; a failure rolls back."
    )
    strategy: Strategy | None = Field(
        default=None,
        description="canary, blue_green, rolling or ab; none: shift replica by replica.",
    )
    flags: FlagReleases | None = Field(
        default=None, description="How `conveyor flags release` judges a flag's rollout."
    )
    hooks: Hooks = Field(
        default_factory=Hooks,
        description="Commands run once per release inside its image: before it gets traffic "
        "(migrations), and once it carries all of it (docs/environments.md).",
    )
    drain: Duration = Field(
        default=5.0,
        description="How long a release taken out of traffic keeps serving requests in flight.",
    )
    samples: SampleRetention = Field(
        default_factory=SampleRetention,
        description="Retention of the golden-signal samples (docs/environments.md).",
    )
    slos: Slos = Field(
        default_factory=list,
        description="Availability and latency objectives, with burn-rate alerts "
        "(docs/monitoring.md).",
    )
    feedback_origins: list[Annotated[str, Field(pattern=r"^https?://[^/\s]+$")]] = Field(
        default_factory=list,
        description="Origins besides the environment's own whose pages may post user "
        "feedback to the router (docs/monitoring.md).",
    )
    alerts: AlertSettings = Field(
        default_factory=AlertSettings,
        description="What an alert on this environment does (docs/monitoring.md).",
    )
    business: Business | None = Field(
        default=None,
        description="Business counters, ratios and guardrails per release and flag variant "
        "(docs/monitoring.md).",
    )
    kubernetes: KubernetesSettings = Field(
        default_factory=KubernetesSettings,
        description="With runtime: kubernetes: namespace, Gateway, registry, judge URL "
        "(docs/kubernetes.md).",
    )

    @field_validator("env")
    @classmethod
    def _env_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_KEY.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        for key in value:
            if not _ENV_KEY.match(key):
                raise ValueError(f"{key!r} is not a valid secret name")
        return value


EnvironmentName = Annotated[str, Field(pattern=ENVIRONMENT_NAME_PATTERN)]
