"""An ImageStore over an OCI image layout directory (image-spec v1.1 `image-layout.md`).

    <root>/oci-layout          {"imageLayoutVersion": "1.0.0"}
    <root>/blobs/sha256/<hex>  every blob, manifests included, shared by all repositories
    <root>/index.json          one descriptor per (repository, tag), or per untagged manifest

Several repositories share one layout. A tag is an index entry whose
`org.opencontainers.image.ref.name` is `repository:tag` (e.g. `shop:3f2a...`), so
`skopeo inspect oci:<root>:shop:3f2a...` reads it. Untagged manifests (signatures, SBOMs
and other referrers) are entries with no ref.name. Entries written here also carry
`dev.conveyor.repository` and, for referrers, `dev.conveyor.subject`: that annotation is
the referrers index, so `referrers()` reads index.json and not every manifest. Entries
written by other tools (podman, skopeo) have neither; their repository comes from
ref.name and their subject is read from the manifest itself.

Writes go to a temporary file then `os.replace`; index.json is rewritten under an
exclusive `flock`, so concurrent jobs do not lose each other's tags. Every read verifies
the content's digest.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.supply.oci.model import (
    ANNOTATION_REF_NAME,
    INDEX,
    MANIFEST,
    Descriptor,
    canonical_json,
    digest_of,
    is_digest,
)
from conveyor.supply.oci.store import check_repository, check_tag_syntax

LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = "1.0.0"
INDEX_FILE = "index.json"
LOCK_FILE = ".conveyor-index.lock"
ANNOTATION_REPOSITORY = "dev.conveyor.repository"
ANNOTATION_SUBJECT = "dev.conveyor.subject"


class LayoutStore:
    """Images in one OCI image layout directory; created on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # --- blobs -------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ConveyorError(f"invalid digest {digest!r}", hint="expected sha256:<64 hex>")
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def has_blob(self, repository: str, digest: str) -> bool:
        """Blobs are shared by every repository of the layout."""
        return self.blob_path(digest).is_file()

    def put_blob(self, repository: str, data: bytes, digest: str | None = None) -> str:
        actual = digest_of(data)
        if digest is not None and digest != actual:
            raise ConveyorError(f"blob content does not match its digest {digest} ({actual})")
        self._ensure_layout()
        path = self.blob_path(actual)
        if not path.is_file():
            _write_atomically(path, data)
        return actual

    def get_blob(self, repository: str, digest: str) -> bytes:
        path = self.blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is not in the image store {self.root}") from None
        if digest_of(data) != digest:
            raise ConveyorError(
                f"blob {digest} in {path} is corrupted or tampered with: its content does not "
                "match its digest",
                hint="remove the file and push the image again",
            )
        return data

    # --- manifests and tags ----------------------------------------------------------

    def put_manifest(
        self, repository: str, manifest: bytes, media_type: str, tags: tuple[str, ...] = ()
    ) -> str:
        check_repository(repository)
        for tag in tags:
            check_tag_syntax(tag)
        digest = self.put_blob(repository, manifest)
        entry = _entry_for(repository, manifest, media_type, digest)
        with self._locked_index() as index:
            entries: list[dict[str, Any]] = index["manifests"]
            refs = {_ref_name(repository, tag) for tag in tags}
            kept = [e for e in entries if _ref(e) not in refs and not _same_untagged(e, entry)]
            if tags:
                kept.extend(_with_ref(entry, ref) for ref in sorted(refs))
            elif not any(_same_image(e, entry) for e in kept):
                kept.append(entry)
            index["manifests"] = kept
        return digest

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        entry = self._find(repository, reference)
        return self.get_blob(repository, entry["digest"]), str(entry["mediaType"])

    def resolve(self, repository: str, reference: str) -> str:
        return str(self._find(repository, reference)["digest"])

    def tags(self, repository: str) -> list[str]:
        prefix = f"{repository}:"
        refs = (_ref(e) for e in self._entries())
        return sorted(ref.removeprefix(prefix) for ref in refs if ref and ref.startswith(prefix))

    def repositories(self) -> list[str]:
        names = (_repository_of(e) for e in self._entries())
        return sorted({name for name in names if name})

    def referrers(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        found: dict[str, Descriptor] = {}
        for entry in self._entries():
            if _repository_of(entry) != repository or entry["digest"] in found:
                continue
            if self._subject_of(entry) != digest:
                continue
            descriptor = self._referrer_descriptor(entry)
            if artifact_type is None or descriptor.artifact_type == artifact_type:
                found[descriptor.digest] = descriptor
        return sorted(found.values(), key=lambda d: d.digest)

    # --- internals -------------------------------------------------------------------

    def _find(self, repository: str, reference: str) -> dict[str, Any]:
        for entry in self._entries():
            if _repository_of(entry) != repository:
                continue
            if reference == entry["digest"] or _ref(entry) == _ref_name(repository, reference):
                return entry
        raise NotFoundError(
            f"no image {repository}{'@' if is_digest(reference) else ':'}"
            f"{reference} in the image store {self.root}"
        )

    def _subject_of(self, entry: dict[str, Any]) -> str | None:
        annotations = entry.get("annotations") or {}
        if ANNOTATION_REPOSITORY in annotations:  # written here: the subject is annotated
            return annotations.get(ANNOTATION_SUBJECT)
        if entry.get("mediaType") != MANIFEST:
            return None
        subject = json.loads(self.get_blob("", entry["digest"])).get("subject") or {}
        return subject.get("digest")

    def _referrer_descriptor(self, entry: dict[str, Any]) -> Descriptor:
        raw = json.loads(self.get_blob("", entry["digest"]))
        artifact_type = raw.get("artifactType") or (raw.get("config") or {}).get("mediaType")
        return Descriptor(
            media_type=entry["mediaType"],
            digest=entry["digest"],
            size=int(entry["size"]),
            annotations=dict(raw.get("annotations") or {}),
            artifact_type=artifact_type,
        )

    def _entries(self) -> list[dict[str, Any]]:
        return list(self._read_index()["manifests"])

    def _read_index(self) -> dict[str, Any]:
        try:
            index = json.loads((self.root / INDEX_FILE).read_bytes())
        except FileNotFoundError:
            return _empty_index()
        except ValueError as error:
            raise ConveyorError(f"{self.root / INDEX_FILE} is not valid JSON: {error}") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise ConveyorError(f"{self.root / INDEX_FILE} is not an OCI image index")
        return index

    @contextlib.contextmanager
    def _locked_index(self) -> Iterator[dict[str, Any]]:
        """index.json for read-modify-write, under an exclusive lock."""
        self._ensure_layout()
        with (self.root / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = self._read_index()
            yield index
            # Indented JSON: people read index.json; its digest is nobody's identity.
            _write_atomically(self.root / INDEX_FILE, json.dumps(index, indent=2).encode())

    def _ensure_layout(self) -> None:
        layout = self.root / LAYOUT_FILE
        if layout.is_file():
            return
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (self.root / INDEX_FILE).is_file():
            _write_atomically(self.root / INDEX_FILE, canonical_json(_empty_index()))
        _write_atomically(layout, canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))


def _empty_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}


def _entry_for(repository: str, manifest: bytes, media_type: str, digest: str) -> dict[str, Any]:
    try:
        raw = json.loads(manifest)
    except ValueError as error:
        raise ConveyorError(f"a manifest for {repository} is not JSON: {error}") from None
    annotations = {ANNOTATION_REPOSITORY: repository}
    subject = (raw.get("subject") or {}).get("digest") if isinstance(raw, dict) else None
    if subject:
        annotations[ANNOTATION_SUBJECT] = subject
    entry: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(manifest)}
    artifact_type = raw.get("artifactType") if isinstance(raw, dict) else None
    if artifact_type:
        entry["artifactType"] = artifact_type
    entry["annotations"] = annotations
    return entry


def _with_ref(entry: dict[str, Any], ref: str) -> dict[str, Any]:
    return {**entry, "annotations": {**entry["annotations"], ANNOTATION_REF_NAME: ref}}


def _ref_name(repository: str, tag: str) -> str:
    return f"{repository}:{tag}"


def _ref(entry: dict[str, Any]) -> str | None:
    return (entry.get("annotations") or {}).get(ANNOTATION_REF_NAME)


def _repository_of(entry: dict[str, Any]) -> str | None:
    annotations = entry.get("annotations") or {}
    if ANNOTATION_REPOSITORY in annotations:
        return str(annotations[ANNOTATION_REPOSITORY])
    ref = annotations.get(ANNOTATION_REF_NAME)
    return ref.rsplit(":", 1)[0] if ref and ":" in ref else None


def _same_image(entry: dict[str, Any], other: dict[str, Any]) -> bool:
    return entry["digest"] == other["digest"] and _repository_of(entry) == _repository_of(other)


def _same_untagged(entry: dict[str, Any], other: dict[str, Any]) -> bool:
    """An untagged entry made redundant by tagging the same image."""
    return _ref(entry) is None and _same_image(entry, other)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), 0o644)  # mkstemp's 0600 would hide blobs from other users
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
