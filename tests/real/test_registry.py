"""RegistryStore against a real registry (distribution 2.8) and a few scripted liars."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError, InfrastructureError, NotFoundError
from conveyor.supply.oci.model import INDEX, MANIFEST, digest_of
from conveyor.supply.oci.registry import RegistryStore
from real.conftest import free_port
from real.memory_store_for_registry import (
    SIGNATURE_TYPE,
    Image,
    index_of,
    make_image,
    make_signature,
    random_files,
)

pytestmark = pytest.mark.real


@pytest.fixture
def store(registry: str) -> Iterator[RegistryStore]:
    with RegistryStore(registry, insecure=True, backoff=0.01) as opened:
        yield opened


def push(store: RegistryStore, repository: str, image: Image, tags: tuple[str, ...] = ()) -> str:
    for data in image.blobs.values():
        store.put_blob(repository, data)
    return store.put_manifest(repository, image.manifest, MANIFEST, tags)


def three_layers(seed: int = 1) -> Image:
    return make_image([random_files(seed * 10 + number) for number in range(3)])


def test_a_pushed_image_comes_back_byte_identical(store: RegistryStore) -> None:
    image = three_layers()
    digest = push(store, "shop", image, ("abc123",))
    assert digest == image.digest
    assert store.resolve("shop", "abc123") == digest
    assert store.get_manifest("shop", "abc123") == (image.manifest, MANIFEST)
    assert store.get_manifest("shop", digest) == (image.manifest, MANIFEST)
    for blob_digest, data in image.blobs.items():
        assert store.has_blob("shop", blob_digest)
        assert store.get_blob("shop", blob_digest) == data


def test_absent_blobs_and_manifests_are_reported_clearly(store: RegistryStore) -> None:
    push(store, "shop", three_layers(), ("abc123",))
    absent = digest_of(b"never pushed")
    assert not store.has_blob("shop", absent)
    with pytest.raises(NotFoundError, match=f"blob {absent} of repository 'shop' is unknown"):
        store.get_blob("shop", absent)
    with pytest.raises(NotFoundError, match="manifest def456 of repository 'shop' is unknown"):
        store.get_manifest("shop", "def456")


def test_tags_and_repositories_are_listed(store: RegistryStore) -> None:
    push(store, "shop", three_layers(1), ("abc123", "1.0.0"))
    push(store, "tools/lint", three_layers(2), ("def456",))
    assert store.tags("shop") == ["1.0.0", "abc123"]
    assert store.tags("tools/lint") == ["def456"]
    assert store.repositories() == ["shop", "tools/lint"]


def test_latest_is_refused_and_nothing_is_stored(store: RegistryStore) -> None:
    image = three_layers()
    for data in image.blobs.values():
        store.put_blob("shop", data)
    with pytest.raises(ConveyorError, match="'latest' is refused"):
        store.put_manifest("shop", image.manifest, MANIFEST, ("abc123", "latest"))
    with pytest.raises(NotFoundError):
        store.get_manifest("shop", image.digest)
    with pytest.raises(ConveyorError, match="'latest' is refused"):
        store.resolve("shop", "latest")


def test_a_blob_is_mounted_from_another_repository_when_there(store: RegistryStore) -> None:
    image = three_layers()
    push(store, "shop", image)
    layer = image.layers[0].digest
    assert store.mount_blob("shop-staging", layer, "shop")
    assert store.get_blob("shop-staging", layer) == image.blobs[layer]
    missing = digest_of(b"not in shop")
    assert not store.mount_blob("shop-staging", missing, "shop")
    assert not store.has_blob("shop-staging", missing)


def test_referrers_use_the_tag_schema_fallback_on_distribution_2_8(store: RegistryStore) -> None:
    image = three_layers()
    push(store, "shop", image, ("abc123",))
    first, second = make_signature(image, "alice"), make_signature(image, "bob")
    push(store, "shop", first)
    push(store, "shop", second)
    found = store.referrers("shop", image.digest)
    assert [entry.digest for entry in found] == [first.digest, second.digest]
    assert found[0].artifact_type == SIGNATURE_TYPE
    assert found[0].annotations == {"org.example.signed-by": "alice"}
    assert found[0].size == len(first.manifest)
    assert store.referrers("shop", image.digest, "application/vnd.other") == []
    # The fallback index is a plain tag, which tags() keeps out of the user's way.
    fallback_tag = image.digest.replace(":", "-")
    fallback, media_type = store.get_manifest("shop", fallback_tag)
    assert media_type == INDEX
    assert index_of(fallback) == [first.digest, second.digest]
    assert store.tags("shop") == ["abc123"]


def test_putting_a_referrer_twice_lists_it_once(store: RegistryStore) -> None:
    image = three_layers()
    push(store, "shop", image)
    signature = make_signature(image, "alice")
    push(store, "shop", signature)
    push(store, "shop", signature)
    assert [entry.digest for entry in store.referrers("shop", image.digest)] == [signature.digest]
    assert store.referrers("shop", signature.digest) == []


def test_a_blob_whose_content_does_not_match_its_digest_is_refused(
    store: RegistryStore, registry_root: Path
) -> None:
    image = three_layers()
    push(store, "shop", image)
    layer = image.layers[1].digest
    hexdigest = layer.removeprefix("sha256:")
    data_file = (
        registry_root / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    )
    data_file.write_bytes(data_file.read_bytes()[::-1])  # same size, other bytes
    with pytest.raises(InfrastructureError, match=f"refused blob {layer} of repository 'shop'"):
        store.get_blob("shop", layer)


def test_a_registry_that_is_down_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with (
        RegistryStore(url, insecure=True, retries=2, backoff=0.01) as down,
        pytest.raises(InfrastructureError) as raised,
    ):
        down.has_blob("shop", digest_of(b"x"))
    assert str(raised.value).startswith(f"registry at {url} is unreachable after 3 attempts: ")
    assert "ConnectError" in str(raised.value)
    assert raised.value.hint is not None and "running" in raised.value.hint


def test_plain_http_needs_insecure() -> None:
    with pytest.raises(ConveyorError, match="plain http") as raised:
        RegistryStore("http://127.0.0.1:5000")
    assert raised.value.hint is not None and "insecure=True" in raised.value.hint


def test_skopeo_accepts_what_we_pushed(store: RegistryStore, registry: str) -> None:
    image = three_layers()
    push(store, "shop", image, ("abc123",))
    host = registry.removeprefix("http://")
    done = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{host}/shop:abc123"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    inspected = json.loads(done.stdout)
    assert inspected["Digest"] == image.digest
    assert inspected["Layers"] == [layer.digest for layer in image.layers]
    assert (inspected["Os"], inspected["Architecture"]) == ("linux", "amd64")


# A scripted HTTP server: answers with the replies it was given, in order.


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Script:
    replies: list[Reply]
    seen: list[str] = field(default_factory=list)


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script([])

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            script.seen.append(f"{self.command} {self.path}")
            reply = script.replies.pop(0) if script.replies else Reply(500)
            self.send_response(reply.status)
            for name, value in {"Content-Length": str(len(reply.body)), **reply.headers}.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        do_GET = do_HEAD = do_PUT = do_POST = answer

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_server_errors_are_retried_until_an_answer(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.replies = [Reply(503), Reply(502), Reply(200)]
    with RegistryStore(url, insecure=True, retries=3, backoff=0.01) as flaky:
        assert flaky.has_blob("shop", digest_of(b"x"))
    assert len(script.seen) == 3


def test_a_manifest_not_matching_the_digest_announced_is_refused(
    scripted: tuple[str, Script],
) -> None:
    url, script = scripted
    manifest = three_layers().manifest
    claimed = digest_of(b"some other manifest")
    headers = {"Content-Type": MANIFEST, "Docker-Content-Digest": claimed}
    script.replies = [Reply(200, headers, manifest)]
    with (
        RegistryStore(url, insecure=True) as liar,
        pytest.raises(InfrastructureError, match=f"it should have the digest {claimed}"),
    ):
        liar.get_manifest("shop", "abc123")


def test_access_refused_says_authentication_is_not_supported(
    scripted: tuple[str, Script],
) -> None:
    url, script = scripted
    body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
    script.replies = [Reply(401, {"Content-Type": "application/json"}, body)]
    with RegistryStore(url, insecure=True) as guarded, pytest.raises(ConveyorError) as raised:
        guarded.tags("shop")
    assert "refused access to the tags of repository 'shop' (401 Unauthorized)" in str(raised.value)
    assert raised.value.hint is not None and "authentication is not supported" in raised.value.hint
