"""`conveyor image verify|inspect` take a bare digest, or a unique start of one, as podman
does: `image verify sha256:<digest>` said "no image ... in the image store"."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from conveyor.supply.keys import generate_keypair
from conveyor.supply.oci import model
from conveyor.supply.oci.layout import LayoutStore

SPEC = """\
version: 1
images:
  admission:
    trusted_keys: [.conveyor/keys/conveyor.pub]
    allowed_repositories: ["**"]
jobs:
  a: {run: 'true'}
"""


def put_image(store: LayoutStore, repository: str, content: bytes, tag: str) -> str:
    layer = store.put_blob(repository, content)
    config = model.canonical_json({"architecture": "amd64", "os": "linux", "n": content.hex()})
    store.put_blob(repository, config)
    manifest = model.Manifest(
        model.Descriptor.of(model.CONFIG, config),
        (model.Descriptor(model.LAYER_TAR_GZIP, layer, len(content)),),
    )
    return store.put_manifest(repository, manifest.to_bytes(), model.MANIFEST, (tag,))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "conveyor.yml").write_text(SPEC)
    generate_keypair(tmp_path / ".conveyor" / "keys", "conveyor")
    return tmp_path


def images(project: Path) -> LayoutStore:
    return LayoutStore(project / ".conveyor" / "images")


def test_a_bare_digest_or_a_unique_start_of_one_names_the_image(project: Path) -> None:
    digest = put_image(images(project), "app", b"one", "v1")
    put_image(images(project), "other", b"two", "v1")

    for text in (digest, digest[:19], digest.removeprefix("sha256:")[:8]):
        inspected = run_cli(["image", "inspect", text], project)
        assert inspected.exit_code == 0, inspected.stderr
        assert (inspected.json()["repository"], inspected.json()["digest"]) == ("app", digest)

    verified = run_cli(["image", "verify", digest], project)
    assert "in the image store" not in verified.stderr
    assert f"{digest}: refused" in verified.stdout  # found, and judged: it is unsigned
    assert verified.exit_code == 1


def test_an_unknown_or_ambiguous_digest_is_a_clear_error(project: Path) -> None:
    digest = put_image(images(project), "app", b"same", "v1")
    put_image(images(project), "mirror", b"same", "v1")  # the same image in two repositories

    ambiguous = run_cli(["image", "verify", digest], project)
    unknown = run_cli(["image", "verify", "sha256:" + "0" * 64], project)

    assert ambiguous.exit_code == 2
    assert "is the start of 2 images' digests: app@sha256:" in ambiguous.stderr
    assert unknown.exit_code == 4  # not found
    assert "no image whose digest starts with sha256:0000" in unknown.stderr
