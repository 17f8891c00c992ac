"""The `deploy` step: the image an upstream `build-image` job built, to an environment.

It goes through the host's `Environments` (engine/step.py), which for a pipeline run is
the same service as `conveyor deploy` (admission policy, promotion order, rolling
replacement gated on readiness, smoke tests with automatic rollback), recording the run
as the deploy's origin. Never cached: a deploy is a side effect. To an environment
with `approval:` it first asks for approval and waits (docs/approvals.md).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import FinalizeOnlyStep, StepContext, failed, passed
from conveyor.steps.image_steps import BuiltImage, built_image


class DeployParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: str = Field(description="An environment of conveyor.yml, e.g. staging.")
    from_: str | None = Field(default=None, alias="from", description="The build-image job.")


class DeployStep(FinalizeOnlyStep):
    name: ClassVar[str] = "deploy"
    params_model: ClassVar[type[BaseModel]] = DeployParams
    version: ClassVar[str] = "1"
    why_in_finalize: ClassVar[str] = "a deploy is a side effect"

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, DeployParams)
        image = built_image(ctx, params.from_)
        started = time.monotonic()
        refused = await _approved(ctx, params.environment, image)
        if refused is not None:
            return failed(refused, time.monotonic() - started)
        outcome = await asyncio.to_thread(_deploy, ctx, params.environment, image.name)
        if outcome is not None:
            return failed(outcome, time.monotonic() - started)
        return passed(time.monotonic() - started, f"{image.name} serves {params.environment}")


async def _approved(ctx: StepContext, environment: str, image: BuiltImage) -> str | None:
    """Wait for the environment's approval gate, if it has one; returns why the deploy may
    not go, or None. A cancelled job stops the wait at its next poll."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(
            ctx.environments.await_approval,
            environment,
            repository=image.repository,
            digest=image.digest,
            say=ctx.say,
            stop=stop,
        )
    finally:
        stop.set()


def _deploy(ctx: StepContext, environment: str, image: str) -> str | None:
    """Deploy; returns why it did not succeed, or None."""
    # Smoke commands find the job's tools on its PATH.
    return ctx.environments.deploy(
        environment, image, say=ctx.say, command_path=ctx.env.get("PATH")
    )
