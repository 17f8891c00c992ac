"""An ImageStore over the OCI distribution API: a registry, spoken to with httpx.

Blobs: HEAD to skip what the registry has, monolithic upload (POST, then PUT with the
digest) and cross-repository mount. Manifests go up and come back with OCI media types
first (distribution 2.8 answers 404 for an OCI manifest to a Docker-only Accept), and
every byte read is checked against its digest. Referrers: the OCI 1.1 referrers API, or,
where the registry has none (404), the tag schema fallback, in which the tag
`sha256-<hex>` holds an index of the referrers of `sha256:<hex>`; this client keeps that
index up to date when it puts a manifest with a `subject` the registry did not process.

Connection errors, 429 and 5xx are retried with exponential backoff and jitter, bounded
in attempts and in total time; every other failure becomes one clear ConveyorError.
Authentication is out of scope for now.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import httpx

from conveyor.errors import ConveyorError, InfrastructureError, NotFoundError
from conveyor.supply.oci.model import (
    INDEX,
    MANIFEST,
    Descriptor,
    canonical_json,
    digest_of,
    is_digest,
)
from conveyor.supply.oci.store import check_repository, check_tag_syntax

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join((MANIFEST, INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))

_FALLBACK_TAG = re.compile(r"^sha256-[0-9a-f]{64}$")
_AUTH_HINT = (
    "registry authentication is not supported yet: "
    "use a registry that allows anonymous push and pull (such as one on this machine)"
)
_UNREACHABLE_HINT = "check that the registry is running and that its URL is right"

_T = TypeVar("_T")


class _RetryableError(Exception):
    """A failure worth another attempt: no connection, or the registry's 429 or 5xx."""


class RegistryStore:
    """Images in a registry at `base_url` (`http://127.0.0.1:5000`, or `host:port`)."""

    def __init__(
        self,
        base_url: str,
        *,
        insecure: bool = False,
        retries: int = 4,
        backoff: float = 0.25,
        max_retry_seconds: float = 30.0,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = _normalise_url(base_url, insecure)
        self._retries = retries
        self._backoff = backoff
        self._max_retry_seconds = max_retry_seconds
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            verify=not insecure,
            follow_redirects=True,  # registries may redirect blob reads to their storage
            headers={"User-Agent": "conveyor"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RegistryStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def same_registry(self, other: object) -> bool:
        """True when `other` talks to this registry too, so blobs can be mounted across."""
        return isinstance(other, RegistryStore) and other.base_url == self.base_url

    # Blobs

    def has_blob(self, repository: str, digest: str) -> bool:
        path = _blob_path(repository, digest)
        response = self._request("HEAD", path, what=_blob(repository, digest), expect=(200, 404))
        return response.status_code == 200

    def put_blob(self, repository: str, data: bytes, digest: str | None = None) -> str:
        actual = digest_of(data)
        if digest is not None and digest != actual:
            raise ConveyorError(
                f"the blob to store as {digest} has the digest {actual}",
                hint="its content changed after its descriptor was made; rebuild the image",
            )
        check_repository(repository)
        self._retrying(lambda: self._upload(repository, data, actual))
        return actual

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Link a blob of `from_repository` into `repository` without uploading it.

        False when the registry would not (it opened an upload session instead, 202):
        that session is cancelled and the caller uploads the blob.
        """
        check_repository(from_repository)
        response = self._request(
            "POST",
            f"{_repository_path(repository)}/blobs/uploads/",
            params={"mount": _checked_digest(digest), "from": from_repository},
            what=f"a mount of {_blob(from_repository, digest)}",
            expect=(201, 202),
        )
        if response.status_code == 201:
            return True
        self._cancel_upload(response)
        return False

    def get_blob(self, repository: str, digest: str) -> bytes:
        response = self._request(
            "GET", _blob_path(repository, digest), what=_blob(repository, digest)
        )
        self._verify(response.content, digest, _blob(repository, digest))
        return response.content

    # Manifests and tags

    def put_manifest(
        self, repository: str, manifest: bytes, media_type: str, tags: tuple[str, ...] = ()
    ) -> str:
        for tag in tags:
            check_tag_syntax(tag)
        digest = digest_of(manifest)
        responses = [
            self._put_manifest_at(repository, manifest, media_type, reference)
            for reference in (tags or (digest,))
        ]
        subject = json.loads(manifest).get("subject")
        if subject and "OCI-Subject" not in responses[0].headers:  # the registry ignored it
            referrer = _referrer_descriptor(manifest, media_type)
            self._add_fallback_referrer(repository, str(subject["digest"]), referrer)
        return digest

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        response = self._request(
            "GET",
            _manifest_path(repository, reference),
            what=_manifest(repository, reference),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        data = response.content
        claimed: str | None = response.headers.get("Docker-Content-Digest")
        for expected in (reference if is_digest(reference) else None, claimed):
            if expected is not None:
                self._verify(data, expected, _manifest(repository, reference))
        return data, _media_type_of(data, response.headers.get("Content-Type"))

    def resolve(self, repository: str, reference: str) -> str:
        response = self._request(
            "HEAD",
            _manifest_path(repository, reference),
            what=_manifest(repository, reference),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        claimed: str = response.headers.get("Docker-Content-Digest", "")
        if is_digest(reference) or is_digest(claimed):
            return reference if is_digest(reference) else claimed
        return digest_of(self.get_manifest(repository, reference)[0])  # no digest header

    def tags(self, repository: str) -> list[str]:
        """The repository's tags, without the referrers fallback tags (`sha256-<hex>`)."""
        path = f"{_repository_path(repository)}/tags/list"
        found = self._paginated(path, "tags", f"the tags of repository '{repository}'")
        return sorted(tag for tag in found if not _FALLBACK_TAG.match(tag))

    def repositories(self) -> list[str]:
        return sorted(self._paginated("/v2/_catalog", "repositories", "the catalog"))

    # Referrers

    def referrers(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        found = self._referrers_api(repository, digest)
        if found is None:
            found = self._fallback_referrers(repository, digest)
        return [item for item in found if artifact_type in (None, item.artifact_type)]

    def _referrers_api(self, repository: str, digest: str) -> list[Descriptor] | None:
        """The referrers the OCI 1.1 API lists; None when the registry has no such API."""
        response = self._request(
            "GET",
            f"{_repository_path(repository)}/referrers/{_checked_digest(digest)}",
            what=f"the referrers of {digest} in repository '{repository}'",
            expect=(200, 404),
            headers={"Accept": INDEX},
        )
        if response.status_code == 404:  # a registry with the API never answers 404
            return None
        return _index_entries(response.content)

    def _fallback_referrers(self, repository: str, digest: str) -> list[Descriptor]:
        try:
            data, _ = self.get_manifest(repository, _fallback_tag(digest))
        except NotFoundError:
            return []
        return _index_entries(data)

    def _add_fallback_referrer(self, repository: str, subject: str, referrer: Descriptor) -> None:
        # Read-modify-write: two pushes racing on one subject can lose an entry.
        entries = self._fallback_referrers(repository, subject)
        if any(entry.digest == referrer.digest for entry in entries):
            return
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [entry.to_json() for entry in (*entries, referrer)],
        }
        self._put_manifest_at(repository, canonical_json(index), INDEX, _fallback_tag(subject))

    # HTTP

    def _verify(self, data: bytes, expected: str, what: str) -> None:
        actual = digest_of(data)
        if actual != expected:
            raise InfrastructureError(
                f"refused {what} from the registry at {self.base_url}: "
                f"it should have the digest {expected}, its content has {actual}",
                hint="the registry's storage is corrupt or something in between changed the "
                "content; push the image again",
            )

    def _put_manifest_at(
        self, repository: str, manifest: bytes, media_type: str, reference: str
    ) -> httpx.Response:
        response = self._request(
            "PUT",
            _manifest_path(repository, reference),
            what=_manifest(repository, reference),
            expect=(201,),
            content=manifest,
            headers={"Content-Type": media_type},
        )
        stored = response.headers.get("Docker-Content-Digest")
        if stored is not None and stored != digest_of(manifest):
            raise InfrastructureError(
                f"the registry at {self.base_url} stored {_manifest(repository, reference)} "
                f"as {stored}, not as the digest of the bytes sent ({digest_of(manifest)})",
                hint="the registry rewrote the manifest; use a registry that keeps it as sent",
            )
        return response

    def _upload(self, repository: str, data: bytes, digest: str) -> None:
        """One monolithic upload; retried as a whole, since a failed session is spent."""
        opened = self._send(
            "POST",
            f"{_repository_path(repository)}/blobs/uploads/",
            what=f"an upload to repository '{repository}'",
            expect=(202,),
        )
        location = httpx.URL(_location(opened)).copy_merge_params({"digest": digest})
        self._send(
            "PUT",
            location,
            what=_blob(repository, digest),
            expect=(201,),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def _cancel_upload(self, opened: httpx.Response) -> None:
        # Best effort: an abandoned session only costs the registry until it expires.
        with contextlib.suppress(ConveyorError, _RetryableError):
            self._send("DELETE", _location(opened), what="an upload", expect=(204, 404))

    def _paginated(self, path: str, key: str, what: str) -> list[str]:
        items: list[str] = []
        url: str | None = path
        while url:
            response = self._request("GET", url, what=what)
            items.extend(response.json().get(key) or [])
            url = response.links.get("next", {}).get("url")
        return items

    def _request(
        self, method: str, url: str, *, what: str, expect: tuple[int, ...] = (200,), **extra: Any
    ) -> httpx.Response:
        return self._retrying(lambda: self._send(method, url, what=what, expect=expect, **extra))

    def _send(
        self, method: str, url: str | httpx.URL, *, what: str, expect: tuple[int, ...], **extra: Any
    ) -> httpx.Response:
        """One attempt: a response with an expected status, or an error."""
        try:
            response = self._client.request(method, url, **extra)
        except httpx.TransportError as error:
            raise _RetryableError(f"{type(error).__name__}: {error}") from error
        status = response.status_code
        if status in expect:
            return response
        if status == 429 or status >= 500:
            raise _RetryableError(f"{status} {response.reason_phrase} for {what}")
        raise self._refusal(response, what)

    def _retrying(self, action: Callable[[], _T]) -> _T:
        """`action`, again after retryable failures, with growing jittered pauses."""
        deadline = time.monotonic() + self._max_retry_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                return action()
            except _RetryableError as failure:
                step = self._backoff * 2 ** (attempt - 1)
                pause = step / 2 + random.uniform(0, step / 2)  # "equal jitter"
                if attempt > self._retries or time.monotonic() + pause > deadline:
                    raise InfrastructureError(
                        f"registry at {self.base_url} is unreachable after {attempt} "
                        f"attempts: {failure}",
                        hint=_UNREACHABLE_HINT,
                    ) from failure
                time.sleep(pause)

    def _refusal(self, response: httpx.Response, what: str) -> ConveyorError:
        status = f"{response.status_code} {response.reason_phrase}"
        detail = _error_detail(response)
        where = f"the registry at {self.base_url}"
        if response.status_code in (401, 403):
            return ConveyorError(f"{where} refused access to {what} ({status})", hint=_AUTH_HINT)
        if response.status_code == 404:
            return NotFoundError(f"{what} is unknown to {where}{detail}")
        return ConveyorError(f"{where} refused {what}: {status}{detail}")


def _normalise_url(text: str, insecure: bool) -> str:
    url = text.rstrip("/")
    if "://" not in url:
        url = ("http://" if insecure else "https://") + url
    scheme = httpx.URL(url).scheme
    if scheme not in ("http", "https"):
        raise ConveyorError(f"registry URL {text!r} is neither http nor https")
    if scheme == "http" and not insecure:
        raise ConveyorError(
            f"registry URL {text!r} is plain http",
            hint="use https, or pass insecure=True for a registry on this machine (127.0.0.1)",
        )
    return url


def _checked_digest(digest: str) -> str:
    if not is_digest(digest):
        raise ConveyorError(f"{digest!r} is not a digest", hint="digests are sha256:<64 hex>")
    return digest


def _repository_path(repository: str) -> str:
    return f"/v2/{check_repository(repository)}"


def _blob_path(repository: str, digest: str) -> str:
    return f"{_repository_path(repository)}/blobs/{_checked_digest(digest)}"


def _manifest_path(repository: str, reference: str) -> str:
    checked = reference if is_digest(reference) else check_tag_syntax(reference)
    return f"{_repository_path(repository)}/manifests/{checked}"


def _blob(repository: str, digest: str) -> str:
    return f"blob {digest} of repository '{repository}'"


def _manifest(repository: str, reference: str) -> str:
    return f"manifest {reference} of repository '{repository}'"


def _fallback_tag(digest: str) -> str:
    return _checked_digest(digest).replace(":", "-", 1)


def _location(response: httpx.Response) -> str:
    location: str | None = response.headers.get("Location")
    if not location:
        raise ConveyorError(f"the registry opened an upload without a Location ({response.url})")
    return location


def _referrer_descriptor(manifest: bytes, media_type: str) -> Descriptor:
    """The descriptor of a referrer in an index: its artifact type and annotations."""
    raw = json.loads(manifest)
    artifact_type = raw.get("artifactType") or (raw.get("config") or {}).get("mediaType")
    return Descriptor.of(
        media_type,
        manifest,
        annotations=dict(raw.get("annotations") or {}),
        artifact_type=artifact_type,
    )


def _index_entries(data: bytes) -> list[Descriptor]:
    return [Descriptor.from_json(entry) for entry in json.loads(data).get("manifests") or []]


def _media_type_of(data: bytes, content_type: str | None) -> str:
    declared = json.loads(data).get("mediaType")
    if declared:
        return str(declared)
    return (content_type or MANIFEST).split(";")[0].strip()


def _error_detail(response: httpx.Response) -> str:
    """The registry's error codes and messages, as ` (CODE: message; ...)`."""
    try:
        errors = response.json().get("errors") or []
        text = "; ".join(f"{error.get('code')}: {error.get('message')}" for error in errors)
    except (ValueError, AttributeError):
        text = response.text.strip()[:200]
    return f" ({text})" if text else ""
