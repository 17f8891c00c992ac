"""Environments, releases, records and the diff between two releases, through the API.

Two real images (built into the project's image store, each with a signed SBOM and scan
attached), each built by a run of its own commit, deployed to staging one after the other
on the in-memory data plane (deploy/fake_plane.py) by the real `conveyor deploy`; a flag
changes between the two deploys."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_cli
from conveyor.flags.store import FlagLedger
from conveyor.store.records import NewRun
from conveyor.store.reports import IMAGE_REPORT
from conveyor.supply.attest import CYCLONEDX_BOM, VULN_SCAN, Statement, Subject, sign_statement
from conveyor.supply.keys import generate_keypair, load_private
from conveyor.supply.oci.build import AppFiles, ImageSpec, build_image
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.referrers import SBOM_ARTIFACT, VULN_SCAN_ARTIFACT, attach
from deploy.apps import REPOSITORY, SERVER, python_base
from deploy.fake_plane import use_fake_plane
from server.conftest import MakeServer, ServerUnderTest

SPEC = """\
version: 1
name: shop
jobs:
  noop: {run: 'true'}
environments:
  staging:
    replicas: 1
    drain: 10ms
    health:
      readiness: {path: /healthz, interval: 100ms}
"""


@dataclass(frozen=True)
class Shipped:
    served: ServerUnderTest
    first: int  # deploy ids
    second: int
    commits: tuple[str, str]


def _image(served: ServerUnderTest, tmp: Path, version: str, colour: str) -> str:
    """A real image whose config differs by one variable; returns its digest."""
    source = tmp / f"src-{version}"
    (source / "lib" / "app").mkdir(parents=True)
    (source / "lib" / "app" / "__main__.py").write_text(
        SERVER.format(version=version, behaviour="ok")
    )
    store = LayoutStore(served.context.project.state_dir / "images")
    spec = ImageSpec(
        app=AppFiles(source),
        base=python_base(store),
        entrypoint=("python", "-m", "app"),
        env={"PYTHONPATH": "/app/lib", "COLOUR": colour},
    )
    return build_image(spec, store, REPOSITORY, (version,)).manifest_digest


def _evidence(
    served: ServerUnderTest, tmp: Path, digest: str, packages: dict[str, str], findings: list[str]
) -> None:
    keys = tmp / "keys"
    if not (keys / "release.key").exists():
        generate_keypair(keys, "release")
    signer = load_private(keys / "release.key")
    subject = (Subject.of_image(REPOSITORY, digest),)
    bom = {
        "bomFormat": "CycloneDX",
        "components": [
            {"type": "library", "name": n, "version": v, "purl": f"pkg:pypi/{n}@{v}"}
            for n, v in packages.items()
        ],
    }
    scan = {
        "scanner": {"name": "conveyor-osv", "version": "1"},
        "database": {"digest": "sha256:" + "0" * 64, "importedAt": "2026-12-01T00:00:00Z"},
        "scannedAt": "2026-12-07T00:00:00Z",
        "passed": True,
        "counts": {"high": len(findings)},
        "findings": findings,
    }
    store = LayoutStore(served.context.project.state_dir / "images")
    for predicate_type, predicate, artifact in (
        (CYCLONEDX_BOM, bom, SBOM_ARTIFACT),
        (VULN_SCAN, scan, VULN_SCAN_ARTIFACT),
    ):
        envelope = sign_statement(Statement(subject, predicate_type, predicate), signer)
        attach(store, REPOSITORY, digest, envelope, artifact)


def _built_by_a_run(served: ServerUnderTest, digest: str) -> str:
    sha = served.project.git("rev-parse", "HEAD").strip()
    store = served.context.store
    run_id = store.create_run(NewRun(pipeline="shop", commit_sha=sha, branch="main"), [])
    blob = store.blobs.put_bytes(json.dumps({"repository": REPOSITORY, "digest": digest}).encode())
    store.add_report(run_id, "image", IMAGE_REPORT, blob, {"digest": digest})
    return sha


def _deploy(served: ServerUnderTest, digest: str) -> int:
    done = run_cli(["deploy", "staging", f"{REPOSITORY}@{digest}"], served.project.root)
    assert done.exit_code == 0, done.stderr
    return served.context.store.ledger.deploys.of_environment("staging")[-1].id


@pytest.fixture
def shipped(make_server: MakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Shipped:
    use_fake_plane(monkeypatch)
    served = make_server(SPEC)
    ledger = FlagLedger(served.context.store.engine)
    ledger.set_enabled("staging", "before", True, actor="dana")
    one = _image(served, tmp_path, "v1", "blue")
    _evidence(served, tmp_path, one, {"flask": "2.0.0", "requests": "2.31.0"}, ["GHSA-a", "GHSA-b"])
    first_sha = _built_by_a_run(served, one)
    first = _deploy(served, one)
    ledger.kill("staging", "before", actor="erin", reason="noisy")
    served.project.commit({"app.txt": "two"}, message="make it green")
    two = _image(served, tmp_path, "v2", "green")
    _evidence(served, tmp_path, two, {"flask": "2.1.0", "urllib3": "2.0.0"}, ["GHSA-b", "GHSA-c"])
    second_sha = _built_by_a_run(served, two)
    second = _deploy(served, two)
    return Shipped(served, first, second, (first_sha, second_sha))


def test_environments_history_and_status(shipped: Shipped) -> None:
    served = shipped.served
    viewer = served.as_user("viewer")
    listed = served.client.get("/api/v1/environments", headers=viewer).json()["items"]
    assert [(e["name"], e["live_release"] is not None) for e in listed] == [("staging", True)]
    status = served.client.get("/api/v1/environments/staging", headers=viewer)
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["live_release"] and body["warm_release"]
    assert {r["weight"] for r in body["releases"] if r["release_id"] == body["live_release"]} == {
        100
    }
    history = served.client.get("/api/v1/environments/staging/history", headers=viewer)
    entries = [(e["kind"], e["deploy_id"]) for e in history.json()["items"]]
    assert entries[0] == ("deploy", shipped.first) and entries[-1] == ("deploy", shipped.second)
    assert ("flag-kill", None) in entries
    release = served.client.get(
        f"/api/v1/environments/staging/releases/{shipped.second}", headers=viewer
    ).json()
    assert release["deploy"]["id"] == shipped.second and release["in_progress"] is False
    assert next(e["kind"] for e in release["timeline"]) == "deploy.started"
    assert served.client.get("/api/v1/environments/nope", headers=viewer).status_code == 404
    missing = served.client.get("/api/v1/environments/staging/releases/99", headers=viewer)
    assert missing.status_code == 404
    assert served.client.get("/api/v1/environments").status_code == 401
    signals = served.client.get(
        "/api/v1/environments/staging/signals", params={"since": 0}, headers=viewer
    )
    assert signals.status_code == 200 and isinstance(signals.json()["items"], list)


def test_a_release_record_as_json_and_markdown(shipped: Shipped) -> None:
    served = shipped.served
    url = f"/api/v1/environments/staging/records/{shipped.second}"
    record = served.client.get(url, headers=served.as_user("viewer")).json()
    assert record["release"]["deploy_id"] == shipped.second
    assert record["run"]["commit"] == shipped.commits[1]
    assert record["quality"]["jobs"] == [] and record["quality"]["previous"]["jobs"] == []
    markdown = served.client.get(
        url, params={"format": "markdown"}, headers=served.as_user("viewer")
    )
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("#")


def test_the_diff_between_two_releases(shipped: Shipped) -> None:
    served = shipped.served
    answer = served.client.get(
        "/api/v1/environments/staging/diff",
        params={"from": shipped.first, "to": shipped.second},
        headers=served.as_user("viewer"),
    )
    assert answer.status_code == 200, answer.text
    diff = answer.json()
    assert [c["subject"] for c in diff["commits"]] == ["make it green"]
    assert diff["commits"][0]["sha"] == shipped.commits[1]
    assert diff["configuration"]["env"]["changed"] == {"COLOUR": {"from": "blue", "to": "green"}}
    assert [(f["flag"], f["kind"], f["actor"]) for f in diff["flags"]] == [
        ("before", "flag.killed", "erin")
    ]
    deps = diff["dependencies"]
    assert deps == {
        "added": {"urllib3": "2.0.0"},
        "removed": {"requests": "2.31.0"},
        "changed": {"flask": {"from": "2.0.0", "to": "2.1.0"}},
    }
    vulns = diff["vulnerabilities"]
    assert (vulns["added"], vulns["removed"], vulns["unchanged"]) == (
        ["GHSA-c"],
        ["GHSA-a"],
        ["GHSA-b"],
    )
    image = served.client.get(
        f"/api/v1/images/{REPOSITORY}@{shipped.served.context.store.ledger.deploys.get(shipped.second).digest}",
        headers=served.as_user("viewer"),
    ).json()
    assert image["tags"] == ["v2"]
    assert next((p["name"], p["version"]) for p in image["packages"]) == ("flask", "2.1.0")
    assert image["scan"]["findings"] == ["GHSA-b", "GHSA-c"]
    assert {a["artifact_type"] for a in image["attestations"]} == {
        SBOM_ARTIFACT,
        VULN_SCAN_ARTIFACT,
    }
    assert image["admission"] is None  # conveyor.yml has no admission policy
    bad = served.client.get(
        "/api/v1/environments/staging/diff",
        params={"from": 1, "to": 99},
        headers=served.as_user("viewer"),
    )
    assert bad.status_code == 404
