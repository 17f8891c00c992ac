"""copy_image between a local store and a real registry, and within the registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor.errors import ConveyorError
from conveyor.supply.oci.copy import copy_image
from conveyor.supply.oci.model import MANIFEST, Manifest
from conveyor.supply.oci.registry import RegistryStore
from real.memory_store_for_registry import (
    Image,
    MemoryStore,
    make_image,
    make_signature,
    random_files,
)

pytestmark = pytest.mark.real

LAYER_SEEDS = (1, 2, 3)


@pytest.fixture
def remote(registry: str) -> Iterator[RegistryStore]:
    with RegistryStore(registry, insecure=True, backoff=0.01) as opened:
        yield opened


def image_of(seeds: tuple[int, ...]) -> Image:
    return make_image([random_files(seed) for seed in seeds])


def local_with(image: Image, *referrers: Image) -> MemoryStore:
    local = MemoryStore()
    image.put(local, "shop", tags=("abc123",))
    for referrer in referrers:
        referrer.put(local, "shop")
    return local


def test_a_push_copies_every_blob_and_keeps_the_digest(remote: RegistryStore) -> None:
    image = image_of(LAYER_SEEDS)
    report = copy_image(local_with(image), "shop", "abc123", remote, "shop", tags=("abc123",))
    assert report.manifest_digest == image.digest
    assert (report.blobs_uploaded, report.blobs_skipped, report.blobs_mounted) == (4, 0, 0)
    assert report.bytes_uploaded == sum(len(blob) for blob in image.blobs.values())
    assert remote.get_manifest("shop", "abc123") == (image.manifest, MANIFEST)


def test_a_second_push_uploads_nothing(remote: RegistryStore) -> None:
    image = image_of(LAYER_SEEDS)
    local = local_with(image)
    copy_image(local, "shop", "abc123", remote, "shop", tags=("abc123",))
    again = copy_image(local, "shop", "abc123", remote, "shop", tags=("abc123",))
    assert (again.blobs_uploaded, again.blobs_skipped, again.bytes_uploaded) == (0, 4, 0)
    assert again.manifest_digest == image.digest


def test_after_one_layer_changes_only_it_and_the_config_are_uploaded(
    remote: RegistryStore,
) -> None:
    before, after = image_of(LAYER_SEEDS), image_of((1, 2, 99))
    copy_image(local_with(before), "shop", "abc123", remote, "shop", tags=("abc123",))
    report = copy_image(local_with(after), "shop", "abc123", remote, "shop", tags=("def456",))
    changed_layer = after.layers[2].digest
    config = after.blobs[Manifest.from_bytes(after.manifest).config.digest]
    assert (report.blobs_uploaded, report.blobs_skipped) == (2, 2)
    assert report.bytes_uploaded == len(after.blobs[changed_layer]) + len(config)
    assert report.manifest_digest == after.digest != before.digest
    assert remote.tags("shop") == ["abc123", "def456"]


def test_within_one_registry_blobs_are_mounted(remote: RegistryStore, registry: str) -> None:
    image = image_of(LAYER_SEEDS)
    copy_image(local_with(image), "shop", "abc123", remote, "shop", tags=("abc123",))
    with RegistryStore(registry, insecure=True) as same_registry:
        report = copy_image(same_registry, "shop", "abc123", remote, "prod/shop", tags=("abc123",))
    assert (report.blobs_mounted, report.blobs_uploaded, report.bytes_uploaded) == (4, 0, 0)
    assert remote.get_manifest("prod/shop", "abc123") == (image.manifest, MANIFEST)
    for digest, data in image.blobs.items():
        assert remote.get_blob("prod/shop", digest) == data


def test_referrers_follow_the_image_both_ways(remote: RegistryStore) -> None:
    image = image_of(LAYER_SEEDS)
    signature = make_signature(image, "alice")
    report = copy_image(
        local_with(image, signature), "shop", "abc123", remote, "shop", tags=("c1",)
    )
    assert report.manifests_copied == 2
    assert [entry.digest for entry in remote.referrers("shop", image.digest)] == [signature.digest]
    assert (
        remote.get_blob("shop", signature.layers[0].digest)
        == signature.blobs[signature.layers[0].digest]
    )
    # Pulled back into an empty local store: the image, its tag and its signature.
    pulled = MemoryStore()
    copy_image(remote, "shop", "c1", pulled, "shop", tags=("c1",))
    assert pulled.get_manifest("shop", "c1") == (image.manifest, MANIFEST)
    assert pulled.get_manifest("shop", signature.digest)[0] == signature.manifest
    assert [entry.digest for entry in pulled.referrers("shop", image.digest)] == [signature.digest]


def test_latest_is_refused_before_anything_is_copied(remote: RegistryStore) -> None:
    local = local_with(image_of(LAYER_SEEDS))
    with pytest.raises(ConveyorError, match="'latest' is refused"):
        copy_image(local, "shop", "abc123", remote, "shop", tags=("latest",))
    assert remote.repositories() == []
