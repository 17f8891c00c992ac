"""The images pages: the store's images, and one image's tags, SBOM packages, scan,
attestations and the admission verdict."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from conveyor.service.images import image_store
from conveyor.service.project import Project
from conveyor.supply.attest import (
    BuildFacts,
    ScanSummary,
    provenance_statement,
    sbom_statement,
    scan_statement,
    sign_statement,
)
from conveyor.supply.keys import generate_keypair, load_private
from conveyor.supply.oci.model import MANIFEST, Descriptor, Manifest
from conveyor.supply.referrers import PROVENANCE_ARTIFACT, SBOM_ARTIFACT, VULN_SCAN_ARTIFACT, attach
from server.conftest import MakeServer

SPEC = """\
version: 1
name: shop
images:
  admission:
    trusted_keys: [keys]
    allowed_repositories: ["https://git.example.org/acme/*"]
    allowed_branches: [main]
    max_db_age: 24h
jobs:
  build:
    run: echo built
"""
DB = "sha256:" + "ef" * 32


def _image(project: Project) -> str:
    """A tiny image in the project's store with a signed provenance, SBOM and scan."""
    store = image_store(project)
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = b"not really a tar"
    store.put_blob("shop", config)
    store.put_blob("shop", layer)
    manifest = Manifest(
        config=Descriptor.of("application/vnd.oci.image.config.v1+json", config),
        layers=(Descriptor.of("application/vnd.oci.image.layer.v1.tar+gzip", layer),),
    )
    digest = store.put_manifest("shop", manifest.to_bytes(), MANIFEST, ("v1.2",))
    signer = load_private(generate_keypair(project.directory / "keys", "release").private_path)
    now = datetime.now(UTC)
    facts = BuildFacts(
        repository="https://git.example.org/acme/shop",
        branch="main",
        commit="0123456789abcdef0123456789abcdef01234567",
        pipeline="shop",
        job="build",
        run_id="1",
        started_on=now - timedelta(minutes=5),
        finished_on=now - timedelta(minutes=4),
        vuln_db_digest=DB,
    )
    bom = {
        "bomFormat": "CycloneDX",
        "components": [
            {"name": "flask", "version": "3.0.0", "purl": "pkg:pypi/flask@3.0.0"},
            {"name": "<img src=x onerror=alert(1)>", "version": "1", "purl": "pkg:pypi/x@1"},
        ],
    }
    scan = ScanSummary(
        scanner="conveyor-osv",
        scanner_version="1",
        db_digest=DB,
        db_imported_at=now - timedelta(hours=1),
        db_newest_advisory=now - timedelta(hours=2),
        scanned_at=now - timedelta(minutes=3),
        passed=True,
        counts={"low": 1},
        finding_ids=("PYSEC-2024-1",),
    )
    for statement, kind in (
        (provenance_statement("shop", digest, facts), PROVENANCE_ARTIFACT),
        (sbom_statement("shop", digest, json.dumps(bom).encode()), SBOM_ARTIFACT),
        (scan_statement("shop", digest, scan), VULN_SCAN_ARTIFACT),
    ):
        attach(store, "shop", digest, sign_statement(statement, signer), kind)
    return digest


def test_the_images_pages_show_evidence_and_the_verdict(make_server: MakeServer) -> None:
    served = make_server(SPEC)
    project = served.context.project
    digest = _image(project)
    assert image_store(project).tags("shop") == ["v1.2"]
    viewer = served.as_user("viewer")

    listed = served.client.get("/images", headers=viewer)
    assert listed.status_code == 200
    assert digest[:19] in listed.text and "v1.2" in listed.text

    page = served.client.get(f"/images/{quote('shop@' + digest, safe='')}", headers=viewer)
    assert page.status_code == 200, page.text
    text = page.text
    assert digest in text
    admission = text.split('id="admission"')[1].split("</section>")[0]
    assert "admitted" in admission and "signature" in admission
    packages = text.split('id="packages"')[1].split("</section>")[0]
    assert "flask" in packages and "pkg:pypi/flask@3.0.0" in packages
    assert "<img src=x" not in text and "&lt;img src=x" in packages
    scan = text.split('id="scan"')[1].split("</section>")[0]
    assert "passed" in scan and "low: 1" in scan and "PYSEC-2024-1" in scan
    attestations = text.split('id="attestations"')[1].split("</section>")[0]
    assert attestations.count("<tr><td>application/vnd.conveyor.") == 3
    assert "https://slsa.dev/provenance/v1" in attestations
    assert "0123456789abcdef" in text  # built from


def test_the_images_pages_need_a_login(make_server: MakeServer) -> None:
    served = make_server(SPEC)
    assert served.client.get("/images").status_code == 401
    assert served.client.get("/images", headers=served.as_user("viewer")).status_code == 200
