"""What a verification step (`e2e`, `perf`, `dast`) runs against.

A step names an environment of conveyor.yml (its router's URL and live release come from
the host's records, through the step context's `Environments`) or a plain `url` (a
staging that Conveyor does not run). Before any test, the
target must answer: a refused connection, a timeout or a 5xx on its health path is the
step's failure, with the reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.engine.step import Environments
from conveyor.errors import ConveyorError

ANSWER_TIMEOUT = 5.0  # seconds the target has to answer its health path


class TargetUnavailable(ConveyorError):
    """The target is not deployed, has no live release, or does not answer."""


class TargetParams(BaseModel):
    """The `with:` keys every verification step shares (exactly one of the two)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    environment: str | None = Field(
        default=None, description="An environment of conveyor.yml, e.g. staging."
    )
    url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="A base URL to test instead of an environment Conveyor runs.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> TargetParams:
        if (self.environment is None) == (self.url is None):
            raise ValueError("give exactly one of `environment` and `url`")
        return self


@dataclass(frozen=True)
class Target:
    url: str  # no trailing slash
    environment: str | None = None
    release_id: str | None = None
    digest: str | None = None
    health_path: str = "/"

    def as_json(self) -> dict[str, str | None]:
        """What a verification report says it tested."""
        return {
            "url": self.url,
            "environment": self.environment,
            "release_id": self.release_id,
            "digest": self.digest,
        }

    @property
    def title(self) -> str:
        if self.environment is None:
            return self.url
        return f"{self.environment} ({self.url}, release {self.release_id})"


def resolve_target(params: TargetParams, environments: Environments) -> Target:
    """The URL and live release to test; raises TargetUnavailable with the reason."""
    if params.url is not None:
        return Target(url=params.url.rstrip("/"))
    assert params.environment is not None
    live = environments.live_release(params.environment)
    return Target(
        url=live.url,
        environment=params.environment,
        release_id=live.release_id,
        digest=live.digest,
        health_path=live.health_path,
    )


async def answering_target(params: TargetParams, environments: Environments) -> Target:
    """The target, resolved and checked off the event loop (both block on I/O); raises
    TargetUnavailable (or a ConveyorError for a job outside a pipeline run)."""

    def resolve_and_check() -> Target:
        target = resolve_target(params, environments)
        check_answering(target)
        return target

    return await asyncio.to_thread(resolve_and_check)


def reason_of(error: ConveyorError) -> str:
    """One line for the job's failure: the message, and the hint in brackets."""
    return error.message + (f" ({error.hint})" if error.hint else "")


def check_answering(target: Target, timeout: float = ANSWER_TIMEOUT) -> None:
    """Raise TargetUnavailable unless the target answers its health path without a 5xx."""
    import httpx  # here, not at module level: the step table loads this for every run

    address = target.url + target.health_path
    try:
        response = httpx.get(address, timeout=timeout)
    except httpx.HTTPError as error:
        reason = str(error) or type(error).__name__
        raise TargetUnavailable(
            f"{target.title} is not answering: GET {address}: {reason}"
        ) from None
    if response.status_code >= 500:
        raise TargetUnavailable(
            f"{target.title} is not healthy: GET {address} answered {response.status_code}"
        )
