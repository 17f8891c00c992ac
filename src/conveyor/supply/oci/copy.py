"""Copy an image and its referrers between any two ImageStores, byte for byte.

Manifests are copied as bytes, so the digest (and every signature over it) is kept.
Blobs the target already has are skipped; between two repositories of one registry
they are mounted rather than uploaded. Referrers (signatures, SBOMs, scan results:
manifests whose `subject` is the image) follow the image, and so do theirs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

from conveyor.errors import InfrastructureError
from conveyor.supply.oci.model import Descriptor, digest_of
from conveyor.supply.oci.store import ImageStore, check_tag


class BlobOutcome(Enum):
    UPLOADED = "uploaded"
    SKIPPED = "skipped"  # the target had it
    MOUNTED = "mounted"  # linked from another repository of the same registry


@dataclass
class CopyReport:
    """What a copy did; `bytes_uploaded` counts blob bytes (manifests are a few KB)."""

    manifest_digest: str
    blobs_uploaded: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_uploaded: int = 0
    manifests_copied: int = 0  # the image, its index children and its referrers

    def count(self, outcome: BlobOutcome, size: int) -> None:
        if outcome is BlobOutcome.UPLOADED:
            self.blobs_uploaded += 1
            self.bytes_uploaded += size
        elif outcome is BlobOutcome.SKIPPED:
            self.blobs_skipped += 1
        else:
            self.blobs_mounted += 1


def copy_image(
    source: ImageStore,
    source_repo: str,
    reference: str,
    target: ImageStore,
    target_repo: str,
    *,
    tags: tuple[str, ...] = (),
) -> CopyReport:
    """Copy the image `reference` (tag or digest) and its referrers; tag it with `tags`."""
    for tag in tags:
        check_tag(tag)
    copier = _Copier(source, source_repo, target, target_repo)
    digest = copier.copy_tree(reference, tags)
    copier.report.manifest_digest = digest
    return copier.report


class _Copier:
    def __init__(
        self, source: ImageStore, source_repo: str, target: ImageStore, target_repo: str
    ) -> None:
        self.source, self.source_repo = source, source_repo
        self.target, self.target_repo = target, target_repo
        self.report = CopyReport(manifest_digest="")
        self.blobs_seen: set[str] = set()
        self.manifests_copied: set[str] = set()

    def copy_tree(self, reference: str, tags: tuple[str, ...] = ()) -> str:
        """A manifest, what it points at, then its referrers (and theirs)."""
        digest = self.copy_manifest(reference, tags)
        for referrer in self.source.referrers(self.source_repo, digest):
            if referrer.digest not in self.manifests_copied:
                self.copy_tree(referrer.digest)
        return digest

    def copy_manifest(self, reference: str, tags: tuple[str, ...]) -> str:
        data, media_type = self.source.get_manifest(self.source_repo, reference)
        digest = digest_of(data)
        if digest in self.manifests_copied and not tags:
            return digest
        raw = json.loads(data)
        for child in raw.get("manifests") or []:  # an index: its images come first
            self.copy_tree(str(child["digest"]))
        for blob in _blobs_of(raw):
            self.copy_blob(blob)
        stored = self.target.put_manifest(self.target_repo, data, media_type, tags)
        if stored != digest:
            raise InfrastructureError(
                f"copying manifest {digest} gave {stored} in repository '{self.target_repo}'",
                hint="the target store rewrote the manifest; it must keep the bytes as sent",
            )
        self.manifests_copied.add(digest)
        self.report.manifests_copied += 1
        return digest

    def copy_blob(self, blob: Descriptor) -> None:
        if blob.digest in self.blobs_seen:
            return
        self.blobs_seen.add(blob.digest)
        self.report.count(self._transfer(blob), blob.size)

    def _transfer(self, blob: Descriptor) -> BlobOutcome:
        if self.target.has_blob(self.target_repo, blob.digest):
            return BlobOutcome.SKIPPED
        if self._mount(blob):
            return BlobOutcome.MOUNTED
        data = self.source.get_blob(self.source_repo, blob.digest)
        self.target.put_blob(self.target_repo, data, blob.digest)
        return BlobOutcome.UPLOADED

    def _mount(self, blob: Descriptor) -> bool:
        target = self.target
        from conveyor.supply.oci.registry import RegistryStore  # httpx: only when mounting

        if not isinstance(target, RegistryStore) or not target.same_registry(self.source):
            return False
        return target.mount_blob(self.target_repo, blob.digest, self.source_repo)


def _blobs_of(raw: dict[str, object]) -> list[Descriptor]:
    """The blobs an image manifest points at: its config, then its layers."""
    config = raw.get("config")
    layers = raw.get("layers")
    found = [Descriptor.from_json(config)] if isinstance(config, dict) else []
    if isinstance(layers, list):
        found.extend(Descriptor.from_json(layer) for layer in layers)
    return found
