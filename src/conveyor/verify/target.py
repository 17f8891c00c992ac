"""What a verification step (`e2e`, `perf`, `dast`) runs against.

A step names an environment of conveyor.yml (its router's URL and live release come from
the store) or a plain `url` (a staging that Conveyor does not run). Before any test, the
target must answer: a refused connection, a timeout or a 5xx on its health path is the
step's failure, with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.errors import ConveyorError
from conveyor.service.project import Project

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


def project_from_env(env: Mapping[str, str]) -> Project:
    """The project a pipeline job belongs to, from the CONVEYOR_* variables of its run."""
    return Project(
        directory=Path(_required(env, "CONVEYOR_PROJECT_DIR")),
        spec_path=Path(_required(env, "CONVEYOR_SPEC")),
        state_dir=Path(_required(env, "CONVEYOR_STATE_DIR")),
        database_url=env.get("CONVEYOR_DATABASE_URL") or None,
    )


def resolve_target(params: TargetParams, env: Mapping[str, str]) -> Target:
    """The URL and live release to test; raises TargetUnavailable with the reason."""
    if params.url is not None:
        return Target(url=params.url.rstrip("/"))
    assert params.environment is not None
    return environment_target(project_from_env(env), params.environment)


def environment_target(project: Project, name: str) -> Target:
    from conveyor.service.environments import environment_spec

    spec = environment_spec(project, name)
    with project.open_store() as store:
        record = store.ledger.environments.get(name)
        if record is None:
            raise TargetUnavailable(
                f"{name} has never been deployed, so there is nothing to test",
                hint=f"a `deploy` job to {name} must come first (`needs:`)",
            )
        if record.live_release is None:
            raise TargetUnavailable(f"{name} has no live release, so there is nothing to test")
        release = store.ledger.releases.get(record.live_release)
    return Target(
        url=f"http://127.0.0.1:{record.port}",
        environment=name,
        release_id=record.live_release,
        digest=release.digest if release else None,
        health_path=spec.health.readiness.path,
    )


async def answering_target(params: TargetParams, env: Mapping[str, str]) -> Target:
    """The target, resolved and checked off the event loop (both block on I/O); raises
    TargetUnavailable (or a ConveyorError for a job outside a pipeline run)."""

    def resolve_and_check() -> Target:
        target = resolve_target(params, env)
        check_answering(target)
        return target

    return await asyncio.to_thread(resolve_and_check)


def reason_of(error: ConveyorError) -> str:
    """One line for the job's failure: the message, and the hint in brackets."""
    return error.message + (f" ({error.hint})" if error.hint else "")


def check_answering(target: Target, timeout: float = ANSWER_TIMEOUT) -> None:
    """Raise TargetUnavailable unless the target answers its health path without a 5xx."""
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


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise ConveyorError(f"{name} is not set: this step runs inside a pipeline run")
    return value
