"""The `push` step: the image and its signed evidence to `images.registry`: a registry
(the OCI distribution API) or, written `oci:<folder>`, an OCI image layout.

Blobs the registry has are skipped (HEAD), so after a one-line change only the changed
layer, the config and the manifests travel. Never cached: a push is a side effect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import FinalizeOnlyStep, StepContext, passed
from conveyor.errors import ConveyorError
from conveyor.steps.image_steps import built_image, image_store, project_path

if TYPE_CHECKING:
    from conveyor.supply.oci.store import ImageStore

OCI_PREFIX = "oci:"


class PushParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    from_: str | None = Field(default=None, alias="from", description="The build-image job.")
    registry: str | None = Field(default=None, description="Overrides images.registry.")


class PushStep(FinalizeOnlyStep):
    name: ClassVar[str] = "push"
    params_model: ClassVar[type[BaseModel]] = PushParams
    version: ClassVar[str] = "1"
    why_in_finalize: ClassVar[str] = "a push is a side effect"

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, PushParams)
        from conveyor.supply.oci.copy import copy_image  # lazily: keeps `conveyor lint` fast

        settings = ctx.evidence.images
        registry = params.registry or settings.registry
        if not registry:
            raise ConveyorError(
                f"{ctx.job_id}: no registry to push to",
                hint="set images.registry in conveyor.yml: a registry such as 127.0.0.1:5000,"
                " or oci:<folder> for an OCI image layout",
            )
        image = built_image(ctx, params.from_)
        started = time.monotonic()
        with _target(ctx, registry, insecure=settings.insecure_registry) as target:
            report = await asyncio.to_thread(
                copy_image,
                image_store(ctx),
                image.repository,
                image.digest,
                target,
                image.repository,
                tags=tuple(image.tags),
            )
        detail = (
            f"pushed {image.repository}@{report.manifest_digest} to {registry}: "
            f"{report.blobs_uploaded} blobs uploaded ({report.bytes_uploaded} bytes), "
            f"{report.blobs_skipped} already there, {report.blobs_mounted} mounted"
        )
        ctx.say(detail)
        return passed(time.monotonic() - started, detail)


@contextmanager
def _target(ctx: StepContext, registry: str, *, insecure: bool) -> Iterator[ImageStore]:
    """A registry by address, or (`oci:<folder>`) an OCI image layout: the same Protocol."""
    from conveyor.supply.oci.layout import LayoutStore

    if registry.startswith(OCI_PREFIX):
        yield LayoutStore(project_path(ctx, Path(registry.removeprefix(OCI_PREFIX))))
        return
    from conveyor.supply.oci.registry import RegistryStore  # httpx: only for a registry

    with RegistryStore(registry, insecure=insecure) as remote:
        yield remote
