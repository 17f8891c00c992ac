"""Build, scan and sign an image in a pipeline; `conveyor image verify` admits it, and
refuses it once its evidence is tampered with."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from conftest import MakeProject, run_cli
from conveyor.service.demo import CHANGES_DIR, find_sample
from conveyor.states import JobState
from conveyor.supply.keys import generate_keypair
from conveyor.supply.osv.db import VulnDB

SPEC = """\
version: 1
images:
  admission:
    trusted_keys: [.conveyor/keys/conveyor.pub]
    allowed_repositories: ["**"]
    allowed_branches: [main]
    max_db_age: 1h
jobs:
  image:
    uses: build-image
    with:
      repository: app
      app: ["app/**"]
      entrypoint: [python, -m, app]
  scan-image:
    needs: [image]
    uses: scan-image
  sign:
    needs: [scan-image]
    uses: sign
"""


def test_a_signed_image_is_admitted_and_a_tampered_one_refused(
    git_project: MakeProject,
) -> None:
    project = git_project(SPEC, files={"app/__main__.py": "print('hello')\n"})
    state = project.project().state_dir
    generate_keypair(state / "keys", "conveyor")
    with VulnDB(state / "vulndb") as db:
        db.import_path(find_sample() / CHANGES_DIR / "osv")
        db.import_path(_fresh_advisory(project.root.parent))  # max_db_age: 1h holds

    outcome = project.run()

    assert set(outcome.jobs.values()) == {JobState.SUCCESS}
    listed = run_cli(["image", "ls", "-o", "json"], project.root).json()
    digest = listed[0]["digest"]
    admitted = run_cli(["image", "verify", f"app@{digest}"], project.root)
    assert admitted.exit_code == 0, admitted.stdout + admitted.stderr
    assert "admitted" in admitted.stdout
    checks = (
        "signature",
        "provenance",
        "source branch",
        "sbom",
        "scan passed",
        "scan database age",
    )
    for check in checks:
        assert f"✓ {check}" in admitted.stdout

    referrers = len(
        run_cli(["image", "inspect", f"app@{digest}"], project.root).json()["referrers"]
    )
    again = project.run()
    # The build is reused; scanning and signing happen on every run, and say so.
    assert again.jobs == {
        "image": JobState.CACHED,
        "scan-image": JobState.SUCCESS,
        "sign": JobState.SUCCESS,
    }
    with project.store() as store:
        running = {
            e.job_id: e.data.get("detail")
            for e in store.events(run_id=again.run_id)
            if e.state == JobState.RUNNING
        }
    assert running["scan-image"] == (
        "scan-image runs on every run: its answer depends on the database"
    )
    inspected = run_cli(["image", "inspect", f"app@{digest}"], project.root).json()
    assert (
        len(inspected["referrers"]) == referrers == 3
    )  # signing the same evidence twice adds nothing

    _tamper_with_an_envelope(state / "images", digest)
    refused = run_cli(["image", "verify", f"app@{digest}", "-o", "json"], project.root)

    assert refused.exit_code == 1
    verdict = refused.json()
    assert verdict["admitted"] is False
    assert any("tampered" in check["detail"] for check in verdict["checks"])


def _fresh_advisory(folder: Path) -> Path:
    """An advisory modified now, for a package the image does not hold: the sample's
    newest advisory dates from 2024, and the database is as old as its newest one."""
    path = folder / "fresh-advisory.json"
    modified = datetime.now(UTC).isoformat(timespec="seconds")
    affected = [{"package": {"ecosystem": "PyPI", "name": "not-in-the-image"}, "versions": ["1"]}]
    path.write_text(json.dumps({"id": "TEST-FRESH", "modified": modified, "affected": affected}))
    return path


def _tamper_with_an_envelope(layout: Path, image_digest: str) -> None:
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        manifest_path = layout / "blobs" / "sha256" / entry["digest"].split(":")[1]
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("subject", {}).get("digest") == image_digest:
            envelope = layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]
            envelope.chmod(0o644)
            envelope.write_text(envelope.read_text().replace('"payload"', '"payload" ', 1))
            return
    raise AssertionError("the image has no attestation to tamper with")
