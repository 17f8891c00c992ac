"""A small in-memory ImageStore for the supply-chain tests (same contract as the real ones)."""

from __future__ import annotations

import json

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.supply.oci.model import MANIFEST, Descriptor, Manifest, digest_of, is_digest
from conveyor.supply.oci.store import check_tag


class MemoryStore:
    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.tag_map: dict[tuple[str, str], str] = {}

    def has_blob(self, repository: str, digest: str) -> bool:
        return (repository, digest) in self.blobs

    def put_blob(self, repository: str, data: bytes, digest: str | None = None) -> str:
        actual = digest_of(data)
        if digest is not None and digest != actual:
            raise ConveyorError(f"blob digest mismatch: {digest} != {actual}")
        self.blobs[(repository, actual)] = data
        return actual

    def get_blob(self, repository: str, digest: str) -> bytes:
        try:
            return self.blobs[(repository, digest)]
        except KeyError:
            raise NotFoundError(f"blob {digest} not in {repository}") from None

    def put_manifest(
        self, repository: str, manifest: bytes, media_type: str, tags: tuple[str, ...] = ()
    ) -> str:
        digest = digest_of(manifest)
        self.manifests[(repository, digest)] = (manifest, media_type)
        for tag in tags:
            self.tag_map[(repository, check_tag(tag))] = digest
        return digest

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        digest = self.resolve(repository, reference)
        return self.manifests[(repository, digest)]

    def resolve(self, repository: str, reference: str) -> str:
        digest = reference if is_digest(reference) else self.tag_map.get((repository, reference))
        if digest is None or (repository, digest) not in self.manifests:
            raise NotFoundError(f"no manifest {reference} in {repository}")
        return digest

    def tags(self, repository: str) -> list[str]:
        return sorted(tag for repo, tag in self.tag_map if repo == repository)

    def repositories(self) -> list[str]:
        return sorted({repo for repo, _ in self.manifests})

    def referrers(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        found: list[Descriptor] = []
        for (repo, manifest_digest), (data, media_type) in sorted(self.manifests.items()):
            if repo != repository or media_type != MANIFEST:
                continue
            manifest = Manifest.from_bytes(data)
            if manifest.subject is None or manifest.subject.digest != digest:
                continue
            kind = manifest.artifact_type or manifest.config.media_type
            if artifact_type is None or kind == artifact_type:
                found.append(Descriptor(MANIFEST, manifest_digest, len(data), artifact_type=kind))
        return found


def put_image(store: MemoryStore, repository: str, tag: str = "abc123") -> str:
    """A tiny image (empty config, one layer) stored under `tag`; returns its digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = f"not really a tar, {tag}".encode()  # distinct tags, distinct images
    store.put_blob(repository, config)
    store.put_blob(repository, layer)
    manifest = Manifest(
        config=Descriptor.of("application/vnd.oci.image.config.v1+json", config),
        layers=(Descriptor.of("application/vnd.oci.image.layer.v1.tar+gzip", layer),),
    )
    return store.put_manifest(repository, manifest.to_bytes(), MANIFEST, (tag,))
