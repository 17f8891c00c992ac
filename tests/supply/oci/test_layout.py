"""The OCI image layout store: the layout files, tags across repositories, digests checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.supply.oci import model
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.oci.store import ImageStore

SBOM = "application/spdx+json"
SIGNATURE = "application/vnd.dev.cosign.simplesigning.v1+json"


def image(store: LayoutStore, repository: str, content: bytes, tags: tuple[str, ...]) -> str:
    layer = store.put_blob(repository, content)
    config = model.canonical_json({"architecture": "amd64", "os": "linux", "n": content.hex()})
    store.put_blob(repository, config)
    manifest = model.Manifest(
        model.Descriptor.of(model.CONFIG, config),
        (model.Descriptor(model.LAYER_TAR_GZIP, layer, len(content)),),
    )
    return store.put_manifest(repository, manifest.to_bytes(), model.MANIFEST, tags)


def referrer(store: LayoutStore, repository: str, subject: str, artifact_type: str) -> str:
    store.put_blob(repository, model.EMPTY_JSON_BYTES)
    blob = store.put_blob(repository, f"{artifact_type} of {subject}".encode())
    manifest = model.Manifest(
        config=model.Descriptor.of(model.EMPTY_JSON, model.EMPTY_JSON_BYTES),
        layers=(model.Descriptor(artifact_type, blob, 10),),
        annotations={"kind": artifact_type},
        subject=model.Descriptor(model.MANIFEST, subject, 1),
        artifact_type=artifact_type,
    )
    return store.put_manifest(repository, manifest.to_bytes(), model.MANIFEST)


def test_it_is_an_oci_image_layout_with_ref_names_repository_colon_tag(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "images")

    digest = image(store, "shop", b"layer", ("abc123", "1.0"))

    assert json.loads((tmp_path / "images" / "oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"
    }
    index = json.loads((tmp_path / "images" / "index.json").read_text())
    assert index["mediaType"] == model.INDEX and index["schemaVersion"] == 2
    refs = {e["annotations"][model.ANNOTATION_REF_NAME]: e["digest"] for e in index["manifests"]}
    assert refs == {"shop:abc123": digest, "shop:1.0": digest}
    blob = tmp_path / "images" / "blobs" / "sha256" / digest.removeprefix("sha256:")
    assert model.digest_of(blob.read_bytes()) == digest


def test_it_implements_the_image_store_protocol(tmp_path: Path) -> None:
    store: ImageStore = LayoutStore(tmp_path)

    assert store.repositories() == []


def test_blobs_round_trip_and_a_wrong_digest_is_refused(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)

    digest = store.put_blob("shop", b"hello")

    assert store.has_blob("shop", digest)
    assert store.get_blob("shop", digest) == b"hello"
    with pytest.raises(ConveyorError, match="does not match"):
        store.put_blob("shop", b"hello", model.digest_of(b"other"))
    with pytest.raises(NotFoundError):
        store.get_blob("shop", model.digest_of(b"absent"))


def test_tags_resolve_and_move_and_repositories_share_the_layout(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    first = image(store, "shop", b"one", ("abc", "1.0"))
    second = image(store, "shop", b"two", ("def", "1.0"))  # 1.0 moves
    other = image(store, "team/worker", b"one", ("abc",))

    assert store.resolve("shop", "1.0") == second
    assert store.resolve("shop", "abc") == first
    assert store.resolve("shop", first) == first
    assert store.resolve("team/worker", "abc") == other == first
    assert store.tags("shop") == ["1.0", "abc", "def"]
    assert store.repositories() == ["shop", "team/worker"]
    manifest, media_type = store.get_manifest("shop", "def")
    assert (model.digest_of(manifest), media_type) == (second, model.MANIFEST)
    with pytest.raises(NotFoundError, match="shop:nope"):
        store.resolve("shop", "nope")
    with pytest.raises(NotFoundError):
        store.resolve("billing", "abc")


def test_a_tampered_blob_is_refused_naming_it(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    digest = image(store, "shop", b"layer", ("abc",))
    path = tmp_path / "blobs" / "sha256" / digest.removeprefix("sha256:")
    path.write_bytes(path.read_bytes().replace(b'schemaVersion":2', b'schemaVersion":3'))

    with pytest.raises(ConveyorError, match=f"blob {digest} .* tampered"):
        store.get_manifest("shop", "abc")


def test_latest_and_malformed_names_are_refused(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)

    with pytest.raises(ConveyorError, match="latest"):
        image(store, "shop", b"x", ("latest",))
    with pytest.raises(ConveyorError, match="repository name"):
        image(store, "Shop", b"x", ("abc",))
    with pytest.raises(ConveyorError, match="invalid image tag"):
        image(store, "shop", b"x", ("a:b",))
    assert store.tags("shop") == []


def test_referrers_are_found_by_subject_and_filtered_by_artifact_type(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    subject = image(store, "shop", b"app", ("abc",))
    unrelated = image(store, "shop", b"other", ("def",))
    sbom = referrer(store, "shop", subject, SBOM)
    signature = referrer(store, "shop", subject, SIGNATURE)
    referrer(store, "shop", unrelated, SBOM)

    found = store.referrers("shop", subject)

    assert sorted(d.digest for d in found) == sorted([sbom, signature])
    by_type = store.referrers("shop", subject, SBOM)
    assert [(d.digest, d.artifact_type, d.annotations) for d in by_type] == [
        (sbom, SBOM, {"kind": SBOM})
    ]
    assert store.referrers("billing", subject) == []
    assert store.tags("shop") == ["abc", "def"]  # referrers are untagged


def test_referrers_written_by_another_tool_are_found_from_the_manifest(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    subject = image(store, "shop", b"app", ("abc",))
    sbom = referrer(store, "shop", subject, SBOM)
    index_path = tmp_path / "index.json"
    index = json.loads(index_path.read_text())
    for entry in index["manifests"]:  # as skopeo would write them: only a ref.name
        entry["annotations"] = {model.ANNOTATION_REF_NAME: f"shop:{entry['digest'][7:19]}"}
    index_path.write_text(json.dumps(index))

    assert [d.digest for d in store.referrers("shop", subject)] == [sbom]


def test_storing_the_same_untagged_manifest_twice_keeps_one_entry(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    subject = image(store, "shop", b"app", ("abc",))

    referrer(store, "shop", subject, SBOM)
    referrer(store, "shop", subject, SBOM)

    assert len(json.loads((tmp_path / "index.json").read_text())["manifests"]) == 2
