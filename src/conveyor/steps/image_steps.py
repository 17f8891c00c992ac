"""What the image steps (`scan-image`, `sign`, `push`) share: finding the image that an
upstream `build-image` job recorded, and the project's image store, keys and database."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.engine.step import RAW_DIR, StepContext, job_output_dir
from conveyor.errors import ConveyorError
from conveyor.supply.oci.layout import LayoutStore


@dataclass(frozen=True)
class BuiltImage:
    repository: str
    digest: str
    tags: list[str]
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.repository}@{self.digest}"


def built_image(ctx: StepContext, from_job: str | None) -> BuiltImage:
    """The image.json of `from_job`, or of the only build-image job of the run."""
    records = (
        sorted((ctx.workspace / RAW_DIR).glob("*/image.json"))
        if from_job is None
        else [job_output_dir(ctx.workspace, from_job) / "image.json"]
    )
    found = [path for path in records if path.is_file()]
    if len(found) != 1:
        what = f"job '{from_job}'" if from_job else "a build-image job"
        many = f" ({len(found)} found: name one with `from`)" if len(found) > 1 else ""
        raise ConveyorError(
            f"{ctx.job_id}: no image recorded by {what}{many}",
            hint="add the build-image job to `needs`",
        )
    record = json.loads(found[0].read_text())
    return BuiltImage(record["repository"], record["digest"], list(record["tags"]), record)


def image_store(ctx: StepContext) -> LayoutStore:
    root = ctx.env.get("CONVEYOR_IMAGE_STORE")
    if not root:
        raise ConveyorError(f"{ctx.job_id}: CONVEYOR_IMAGE_STORE is not set")
    return LayoutStore(Path(root))


def project_path(ctx: StepContext, path: Path) -> Path:
    """A path of `images:` settings, relative to the project folder (not the checkout)."""
    base = ctx.env.get("CONVEYOR_PROJECT_DIR") or str(ctx.workspace)
    return path if path.is_absolute() else Path(base) / path


def scan_record_path(ctx: StepContext, job_id: str) -> Path:
    return job_output_dir(ctx.workspace, job_id) / "scan.json"


def packages_cache(ctx: StepContext) -> Path | None:
    """Where the package lists of images are kept, by image digest."""
    root = ctx.env.get("CONVEYOR_IMAGE_STORE")
    return Path(root) / ".conveyor-cache" / "packages" if root else None
