"""Secrets masked at the storage boundary: nothing the store writes holds one in clear,
not even split over two lines or base64-encoded (issue 12)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.engine.mask import Masker
from conveyor.states import DeployState, JobState
from conveyor.store import EventKind, NewJob, NewRun, Store

SECRET = "tok_8Yp2Qw7Rz4Lk9Xv3Mn6Bc1Df"
SPLIT = f"{SECRET[:12]}\n{SECRET[12:]}"
ENCODED = base64.b64encode(SECRET.encode()).decode()


@pytest.fixture
def store(tmp_path: Path, store_url: str | None) -> Iterator[Store]:
    with Store(tmp_path / "state", store_url) as opened:
        opened.mask_secrets(Masker([SECRET]))
        yield opened


def clear_forms() -> list[bytes]:
    return [SECRET.encode(), SECRET[:12].encode(), SECRET[12:].encode(), ENCODED.encode()]


def files_holding_a_secret(state_dir: Path) -> list[str]:
    """Every file under the state folder (the database, its WAL, blobs) holding the
    secret or a half of it, raw or in base64."""
    return [
        str(path.relative_to(state_dir))
        for path in state_dir.rglob("*")
        if path.is_file() and any(form in path.read_bytes() for form in clear_forms())
    ]


def test_events_details_reports_and_deploy_reasons_are_stored_masked(store: Store) -> None:
    run_id = store.create_run(
        NewRun("ci", commit_sha="abc123", message=f"rotate {SECRET}"), [NewJob("unit", "unit")]
    )
    store.set_job_state(run_id, "unit", JobState.RUNNING)
    store.set_job_state(
        run_id, "unit", JobState.FAILED, detail=f"AssertionError: '{SPLIT}' != ''\n{ENCODED}"
    )
    digest = store.blobs.put_report(f'{{"message": "{SECRET}"}}'.encode())
    store.add_report(run_id, "unit", "tests", digest, {"first_failure": f"got {SPLIT}"})
    deploy = store.ledger.deploys.begin(
        "staging",
        release_id="staging-app-1",
        repository="app",
        digest="sha256:" + "ab" * 32,
        ports=[8001],
        previous=None,
        actor="ada",
        run_id=run_id,
    )
    store.ledger.history.record(EventKind.SMOKE_RESULT, "staging", detail=f"output:\n{SECRET}")
    store.ledger.deploys.set_progress(deploy.id, {"note": SECRET})
    store.ledger.deploys.finish(deploy.id, DeployState.ROLLED_BACK, f"smoke: {SPLIT}")

    assert store.get_job(run_id, "unit").detail == "AssertionError: '***\n***' != ''\n***"
    assert store.get_run(run_id).message == "rotate ***"
    [report] = store.reports(run_id, "tests")
    assert report.summary == {"first_failure": "got ***\n***"}
    assert store.blobs.get_bytes(report.digest) == b'{"message": "***"}'
    assert store.ledger.deploys.get(deploy.id).reason == "smoke: ***\n***"
    assert all(SECRET not in str(event.data) for event in store.events())
    assert store.audit_verify() == []  # the chain hashes what was kept: it still verifies
    store.close()
    assert files_holding_a_secret(store.state_dir) == []


def test_text_report_outputs_are_stored_masked_and_other_outputs_byte_for_byte(
    store: Store, tmp_path: Path
) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(f'<failure message="expected {SECRET}">{ENCODED}</failure>')
    archive = tmp_path / "app.tar"
    archive.write_bytes(b"\x00\xff" + SECRET.encode())

    kept_junit = store.blobs.get_bytes(store.blobs.put_output(junit))
    kept_archive = store.blobs.get_bytes(store.blobs.put_output(archive))

    assert kept_junit == b'<failure message="expected ***">***</failure>'
    assert kept_archive == archive.read_bytes()


def test_a_store_told_no_secrets_writes_text_as_it_is(
    tmp_path: Path, store_url: str | None
) -> None:
    with Store(tmp_path / "plain", store_url) as plain:
        run_id = plain.create_run(NewRun("ci", commit_sha="abc"), [NewJob("unit", "unit")])
        plain.set_job_state(run_id, "unit", JobState.RUNNING, detail=SECRET)

        assert plain.get_job(run_id, "unit").detail == SECRET


def test_a_digest_that_happens_to_contain_a_hex_secrets_first_characters_is_kept(
    tmp_path: Path, store_url: str | None
) -> None:
    secret = "9f86d081884c7d65"  # hex-looking, as many API tokens are
    digest = "sha256:" + "0" * 60 + secret[:4]  # ends with the secret's first characters
    with Store(tmp_path / "hex", store_url) as hex_store:
        hex_store.mask_secrets(Masker([secret]))
        hex_store.ledger.history.record(
            EventKind.SMOKE_RESULT, "staging", digest=digest, detail=f"token {secret[:8]}"
        )
        [event] = hex_store.events()

    assert event.data["digest"] == digest
    assert event.data["detail"] == "token ***"
