"""Images in the project's image store, with their supply-chain evidence.

GET /api/v1/images          as `conveyor image ls -o json` (newest first)
GET /api/v1/images/{ref}    `conveyor image inspect` + tags, SBOM packages, the scan,
                            attestations and the admission verdict; ref is
                            shop@sha256:..., shop:tag or a digest's start
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conveyor.server.api.common import ERRORS, Context, ListBody, everything, reading, to_jsonable
from conveyor.service.image_evidence import image_evidence
from conveyor.service.images import find_image, image_store, inspect_image, list_images

router = APIRouter(prefix="/api/v1/images", tags=["images"], dependencies=reading("images"))


@router.get("", response_model=ListBody, responses=ERRORS, summary="Images, newest first")
def images(context: Context) -> dict[str, Any]:
    return everything(list_images(image_store(context.project)))


@router.get(
    "/{ref:path}",
    responses=ERRORS,
    summary="An image: digest, tags, SBOM packages, scan, attestations, admission verdict",
)
def image(ref: str, context: Context) -> dict[str, Any]:
    store = image_store(context.project)
    found = inspect_image(store, find_image(store, ref))
    repository, digest = found["repository"], found["digest"]
    tags = sorted(tag for tag in store.tags(repository) if store.resolve(repository, tag) == digest)
    evidence = to_jsonable(image_evidence(context.project, repository, digest))
    return {**found, "tags": tags, **{k: v for k, v in evidence.items() if k not in found}}
