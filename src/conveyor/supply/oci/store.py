"""The image store Protocol: where images live, by digest, with tags as aliases.

Backends, one module each: `layout.py` (an OCI image layout directory, the embedded
default under `.conveyor/images`) and `registry.py` (a registry speaking the OCI
distribution API). `latest` is refused as a tag everywhere.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from conveyor.errors import ConveyorError
from conveyor.supply.oci.model import Descriptor, Manifest

REFUSED_TAGS = frozenset({"latest"})

# The distribution spec's grammar for repository names and tags.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def check_repository(name: str) -> str:
    if not _REPOSITORY.match(name):
        raise ConveyorError(
            f"invalid image repository name {name!r}",
            hint="lower-case letters, digits and separators (. _ - /), e.g. 'shop'",
        )
    return name


def check_tag_syntax(tag: str) -> str:
    if not _TAG.match(tag):
        raise ConveyorError(f"invalid image tag {tag!r}", hint="letters, digits, . _ - (max 128)")
    return check_tag(tag)


def check_tag(tag: str) -> str:
    if tag in REFUSED_TAGS:
        raise ConveyorError(
            "the tag 'latest' is refused: images are tagged by commit (and version)",
            hint="deploys reference images by digest; tag with the commit sha",
        )
    return tag


class ImageStore(Protocol):
    """All names are repository names such as `shop`; digests are `sha256:<hex>`."""

    def has_blob(self, repository: str, digest: str) -> bool: ...

    def put_blob(self, repository: str, data: bytes, digest: str | None = None) -> str:
        """Store a blob (verifying `digest` when given); returns its digest."""
        ...

    def get_blob(self, repository: str, digest: str) -> bytes:
        """The blob's bytes; refuses (ConveyorError) content whose digest does not match."""
        ...

    def put_manifest(
        self, repository: str, manifest: bytes, media_type: str, tags: tuple[str, ...] = ()
    ) -> str:
        """Store a manifest and point the tags at it; returns the manifest digest."""
        ...

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """A manifest by tag or digest: (bytes, media type), digest verified."""
        ...

    def resolve(self, repository: str, reference: str) -> str:
        """The manifest digest a tag (or digest) refers to."""
        ...

    def tags(self, repository: str) -> list[str]: ...

    def repositories(self) -> list[str]: ...

    def referrers(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """Manifests whose `subject` is `digest` (signatures, SBOMs, scan results)."""
        ...


def image_config(store: ImageStore, repository: str, digest: str) -> dict[str, Any]:
    """The image config document of `repository@digest` (its `config` holds Entrypoint,
    Cmd, Env and Labels): the manifest, then the config blob it names."""
    manifest = Manifest.from_bytes(store.get_manifest(repository, digest)[0])
    config = json.loads(store.get_blob(repository, manifest.config.digest))
    return config if isinstance(config, dict) else {}
