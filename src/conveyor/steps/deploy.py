"""The `deploy` step: the image an upstream `build-image` job built, to an environment.

It goes through the same service as `conveyor deploy` (admission policy, promotion order,
rolling replacement gated on readiness, smoke tests with automatic rollback) and records
the run as the deploy's origin. Never cached: a deploy is a side effect.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from conveyor.engine.executors.base import ExecResult
from conveyor.errors import ConveyorError
from conveyor.steps.base import SimpleStep, StepContext, failed, passed
from conveyor.steps.image_steps import built_image


class DeployParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: str = Field(description="An environment of conveyor.yml, e.g. staging.")
    from_: str | None = Field(default=None, alias="from", description="The build-image job.")


class DeployStep(SimpleStep):
    name: ClassVar[str] = "deploy"
    params_model: ClassVar[type[BaseModel]] = DeployParams
    version: ClassVar[str] = "1"

    def describe(self, params: BaseModel) -> str:
        return f"deploy {params.model_dump_json()}"

    async def run(self, params: BaseModel, ctx: StepContext) -> ExecResult:
        return passed(detail="the deploy happens in finalize: it is a side effect")

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, DeployParams)
        image = built_image(ctx, params.from_)
        started = time.monotonic()
        outcome = await asyncio.to_thread(_deploy, ctx, params.environment, image.name)
        if outcome is not None:
            return failed(outcome, time.monotonic() - started)
        return passed(time.monotonic() - started, f"{image.name} serves {params.environment}")


def _deploy(ctx: StepContext, environment: str, image: str) -> str | None:
    """Deploy; returns why it did not succeed, or None."""
    from conveyor.service import environments
    from conveyor.service.project import Project
    from conveyor.states import DeployState

    project = Project(
        directory=Path(_required(ctx, "CONVEYOR_PROJECT_DIR")),
        spec_path=Path(_required(ctx, "CONVEYOR_SPEC")),
        state_dir=Path(_required(ctx, "CONVEYOR_STATE_DIR")),
        database_url=os.environ.get("CONVEYOR_DATABASE_URL") or None,
    )
    run_id = ctx.env.get("CONVEYOR_RUN_ID")
    with project.open_store() as store:
        outcome = environments.deploy(
            project,
            store,
            environment,
            image,
            actor=ctx.env.get("CONVEYOR_ACTOR") or "conveyor",
            run_id=int(run_id) if run_id else None,
            progress=ctx.say,
        )
    ctx.say(f"{environment}: {outcome.release_id} {outcome.state.value} at {outcome.url}")
    if outcome.state is DeployState.SUCCEEDED:
        return None
    return f"deploy to {environment} {outcome.state.value}: {outcome.reason}"


def _required(ctx: StepContext, name: str) -> str:
    value = ctx.env.get(name)
    if not value:
        raise ConveyorError(f"{ctx.job_id}: {name} is not set")
    return value
