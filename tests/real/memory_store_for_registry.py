"""A tiny in-memory ImageStore and a builder of small valid OCI images, for the tests.

Images are real: gzip'd tar layers whose diff_ids are in a valid image config, so tools
such as skopeo accept them.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from dataclasses import dataclass, field

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.supply.oci.model import (
    CONFIG,
    EMPTY_JSON,
    EMPTY_JSON_BYTES,
    INDEX,
    LAYER_TAR_GZIP,
    MANIFEST,
    Descriptor,
    Manifest,
    canonical_json,
    digest_of,
    is_digest,
)
from conveyor.supply.oci.store import check_tag

SIGNATURE_TYPE = "application/vnd.example.signature.v1+json"


@dataclass
class MemoryStore:
    """Repositories of blobs, manifests and tags in dicts."""

    blobs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    manifests: dict[str, dict[str, tuple[bytes, str]]] = field(default_factory=dict)
    tag_map: dict[str, dict[str, str]] = field(default_factory=dict)

    def has_blob(self, repository: str, digest: str) -> bool:
        return digest in self.blobs.get(repository, {})

    def put_blob(self, repository: str, data: bytes, digest: str | None = None) -> str:
        actual = digest_of(data)
        if digest is not None and digest != actual:
            raise ConveyorError(f"blob {digest} has the digest {actual}")
        self.blobs.setdefault(repository, {})[actual] = data
        return actual

    def get_blob(self, repository: str, digest: str) -> bytes:
        try:
            return self.blobs[repository][digest]
        except KeyError:
            raise NotFoundError(f"blob {digest} is not in {repository}") from None

    def put_manifest(
        self, repository: str, manifest: bytes, media_type: str, tags: tuple[str, ...] = ()
    ) -> str:
        digest = digest_of(manifest)
        self.manifests.setdefault(repository, {})[digest] = (manifest, media_type)
        for tag in tags:
            self.tag_map.setdefault(repository, {})[check_tag(tag)] = digest
        return digest

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        try:
            return self.manifests[repository][self.resolve(repository, reference)]
        except KeyError:
            raise NotFoundError(f"manifest {reference} is not in {repository}") from None

    def resolve(self, repository: str, reference: str) -> str:
        if is_digest(reference):
            return reference
        try:
            return self.tag_map[repository][reference]
        except KeyError:
            raise NotFoundError(f"tag {reference} is not in {repository}") from None

    def tags(self, repository: str) -> list[str]:
        return sorted(self.tag_map.get(repository, {}))

    def repositories(self) -> list[str]:
        return sorted(self.manifests)

    def referrers(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        found = []
        for manifest, media_type in self.manifests.get(repository, {}).values():
            raw = json.loads(manifest)
            kind = raw.get("artifactType") or raw.get("config", {}).get("mediaType")
            if (raw.get("subject") or {}).get("digest") == digest and artifact_type in (
                None,
                kind,
            ):
                found.append(Descriptor.of(media_type, manifest, artifact_type=kind))
        return found


@dataclass(frozen=True)
class Image:
    """An image's manifest and blobs (config first, then layers)."""

    manifest: bytes
    blobs: dict[str, bytes]

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        return Manifest.from_bytes(self.manifest).layers

    @property
    def size(self) -> int:
        return len(self.manifest) + sum(len(blob) for blob in self.blobs.values())

    def put(self, store: MemoryStore, repository: str, tags: tuple[str, ...] = ()) -> str:
        for data in self.blobs.values():
            store.put_blob(repository, data)
        return store.put_manifest(repository, self.manifest, MANIFEST, tags)


def random_files(seed: int, count: int = 3, size: int = 4096) -> dict[str, bytes]:
    generator = random.Random(seed)
    return {f"file{number}.bin": generator.randbytes(size) for number in range(count)}


def layer_of(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A reproducible gzip'd tar of `files`, and its diff_id (digest of the plain tar)."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    tar = plain.getvalue()
    return gzip.compress(tar, compresslevel=1, mtime=0), digest_of(tar)


def make_image(layer_files: list[dict[str, bytes]]) -> Image:
    """A valid linux/amd64 OCI image with one layer per mapping of files."""
    layers = [layer_of(files) for files in layer_files]
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
        }
    )
    manifest = Manifest(
        config=Descriptor.of(CONFIG, config),
        layers=tuple(Descriptor.of(LAYER_TAR_GZIP, blob) for blob, _ in layers),
    )
    blobs = {digest_of(config): config} | {digest_of(blob): blob for blob, _ in layers}
    return Image(manifest.to_bytes(), blobs)


def make_signature(subject: Image, text: str) -> Image:
    """An artifact manifest whose subject is `subject` (like a cosign signature)."""
    payload = text.encode()
    manifest = Manifest(
        config=Descriptor.of(EMPTY_JSON, EMPTY_JSON_BYTES),
        layers=(Descriptor.of(SIGNATURE_TYPE, payload),),
        subject=Descriptor.of(MANIFEST, subject.manifest),
        artifact_type=SIGNATURE_TYPE,
        annotations={"org.example.signed-by": text},
    )
    blobs = {digest_of(EMPTY_JSON_BYTES): EMPTY_JSON_BYTES, digest_of(payload): payload}
    return Image(manifest.to_bytes(), blobs)


def index_of(data: bytes) -> list[str]:
    """The digests an index lists."""
    raw = json.loads(data)
    assert raw["mediaType"] == INDEX
    return [entry["digest"] for entry in raw["manifests"]]
