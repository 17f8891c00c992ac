"""Images in the project's store: list, inspect, and verify against the admission policy."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.service.project import Project
from conveyor.spec.images import ImagesConfig
from conveyor.supply.oci.debian_base import BaseBuild
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.oci.model import (
    ANNOTATION_CREATED,
    ANNOTATION_REVISION,
    ImageRef,
    Manifest,
    is_digest,
)
from conveyor.supply.policy import AdmissionDecision, Check, CheckName, admit


@dataclass(frozen=True)
class ImageSummary:
    repository: str
    tags: list[str]
    digest: str
    revision: str
    created: str
    size: int


def image_store(project: Project) -> LayoutStore:
    return LayoutStore(project.state_dir / "images")


def images_config(project: Project) -> ImagesConfig:
    from conveyor.spec.loader import load_pipeline
    from conveyor.steps.registry import STEP_PARAMS

    if not project.spec_path.exists():
        return ImagesConfig()
    return load_pipeline(project.spec_path, steps=STEP_PARAMS).pipeline.images


def parse_ref(text: str) -> ImageRef:
    """`shop@sha256:...`, `shop:tag` (a tag resolves to its digest in the store)."""
    if "@" in text:
        name, digest = text.split("@", 1)
        if not is_digest(digest):
            raise ConveyorError(f"{digest!r} is not a sha256 digest", hint="shop@sha256:<64 hex>")
        return ImageRef(name=name, digest=digest)
    name, _, tag = text.partition(":")
    if not tag:
        raise ConveyorError(
            f"name the image with a tag or a digest: {text}:<tag> or {text}@sha256:...",
            hint="`conveyor image ls` lists them",
        )
    return ImageRef(name=name, tag=tag)


def find_image(store: LayoutStore, text: str) -> ImageRef:
    """`parse_ref`, plus what podman also accepts: a bare digest or a unique prefix of one
    (`sha256:1a2b3c`, `1a2b3c`), looked up among the store's images."""
    match = _DIGEST_PREFIX.match(text)
    if match is None:
        return parse_ref(text)
    prefix = "sha256:" + match.group(1)
    found = sorted(
        {
            (repository, digest)
            for repository in store.repositories()
            for tag in store.tags(repository)
            if (digest := store.resolve(repository, tag)).startswith(prefix)
        }
    )
    if not found:
        raise NotFoundError(
            f"no image whose digest starts with {prefix} in the image store",
            hint="`conveyor image ls` lists them",
        )
    if len(found) > 1:
        named = ", ".join(f"{repository}@{digest[:19]}" for repository, digest in found[:5])
        raise ConveyorError(
            f"{prefix} is the start of {len(found)} images' digests: {named}",
            hint="give more of the digest, or name the image: shop@sha256:<64 hex>",
        )
    repository, digest = found[0]
    return ImageRef(name=repository, digest=digest)


# A digest, or the start of one (at least 4 hex digits), with or without `sha256:`.
_DIGEST_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{4,64})$")


def resolve(store: LayoutStore, ref: ImageRef) -> str:
    reference = ref.digest or ref.tag or ""
    try:
        return store.resolve(ref.name, reference)
    except NotFoundError:
        raise
    except ConveyorError as error:
        raise NotFoundError(
            f"no image {ref} in the store: {error.message}", hint="`conveyor image ls` lists them"
        ) from None


def list_images(store: LayoutStore) -> list[ImageSummary]:
    summaries: list[ImageSummary] = []
    for repository in store.repositories():
        by_digest: dict[str, list[str]] = {}
        for tag in store.tags(repository):
            by_digest.setdefault(store.resolve(repository, tag), []).append(tag)
        for digest, tags in by_digest.items():
            manifest = Manifest.from_bytes(store.get_manifest(repository, digest)[0])
            summaries.append(
                ImageSummary(
                    repository=repository,
                    tags=sorted(tags),
                    digest=digest,
                    revision=manifest.annotations.get(ANNOTATION_REVISION, ""),
                    created=manifest.annotations.get(ANNOTATION_CREATED, ""),
                    size=manifest.config.size + sum(layer.size for layer in manifest.layers),
                )
            )
    return sorted(summaries, key=lambda s: s.created, reverse=True)


def inspect_image(store: LayoutStore, ref: ImageRef) -> dict[str, Any]:
    digest = resolve(store, ref)
    raw, media_type = store.get_manifest(ref.name, digest)
    manifest = Manifest.from_bytes(raw)
    config = json.loads(store.get_blob(ref.name, manifest.config.digest))
    referrers = store.referrers(ref.name, digest)
    return {
        "repository": ref.name,
        "digest": digest,
        "media_type": media_type,
        "annotations": manifest.annotations,
        "config": config.get("config", {}),
        "layers": [layer.to_json() for layer in manifest.layers],
        "size": manifest.config.size + sum(layer.size for layer in manifest.layers),
        "referrers": [r.to_json() for r in referrers],
    }


def verify_image(
    project: Project, ref: ImageRef, config: ImagesConfig | None = None
) -> tuple[str, AdmissionDecision]:
    """Run the admission policy of conveyor.yml (`images.admission`, or `config` when the
    caller has it loaded) on an image."""
    config = config or images_config(project)
    if config.admission is None:
        raise ConveyorError(
            "conveyor.yml has no admission policy (images.admission)",
            hint="see docs/images.md: trusted keys, allowed repositories and branches",
        )
    policy = config.admission.relative_to(project.directory)
    store = image_store(project)
    digest = resolve(store, ref)
    try:
        return digest, admit(store, ref.name, digest, policy, datetime.now(UTC))
    except ConveyorError as error:  # a blob of the evidence no longer matches its digest
        refused = Check(CheckName.INTEGRITY, False, f"tampered evidence: {error.message}")
        return digest, AdmissionDecision(admitted=False, checks=[refused])


def python_base(project: Project) -> BaseBuild:
    """Conveyor's Python base image in the project's store, built when absent."""
    from conveyor.supply.oci.build import host_architecture
    from conveyor.supply.oci.debian_base import cache_root_of, ensure_python_base

    store = image_store(project)
    return ensure_python_base(store, cache_root_of(store.root, os.environ), host_architecture())
