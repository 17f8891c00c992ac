"""Signed audit heads: a chain rewritten whole (every hash recomputed) is still found.

The attack: someone with write access to the database edits an approval, recomputes its
event digest and every entry hash after it, and deletes the signed heads the database
holds. The chain alone verifies; the signed head kept in the state folder does not match.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from approvals.conftest import Gate, Roster, roster  # noqa: F401 (the session's tokens)
from conftest import CliResult, run_cli
from conveyor.approvals.model import Verdict
from conveyor.service.audit import HEADS_FILENAME
from conveyor.store import audit
from conveyor.store.records import EventKind
from conveyor.store.schema import audit_log, audit_signed_heads, events
from conveyor.store.store import Store
from conveyor.supply.keys import generate_keypair

SPEC = "version: 1\njobs:\n  a: {run: 'true'}\n"


@pytest.fixture
def project(tmp_path: Path, roster: Roster) -> Iterator[Path]:  # noqa: F811
    """A project with its key, and a run approved by bob and carol: chained for real."""
    (tmp_path / "conveyor.yml").write_text(SPEC)
    generate_keypair(tmp_path / ".conveyor" / "keys", "conveyor")
    users_file = tmp_path / "users.yml"
    shutil.copy(roster.users_file, users_file)
    with Store(tmp_path / ".conveyor") as store:
        gate = Gate(store, users_file, dict(roster.tokens))
        run_id = gate.run()
        gate.request(run_id, required=2)
        gate.decide("bob", run_id)
        gate.decide("carol", run_id, Verdict.APPROVE)
    yield tmp_path


def verify(project: Path) -> CliResult:
    return run_cli(["audit", "verify"], project)


def rewrite_an_approval(state: Path, approver: str) -> None:
    """What an attacker with the database does: edit an approval's event, then recompute
    that entry's digest and every hash from there on, and drop the database's heads."""
    with Store(state) as store, store.engine.begin() as conn:
        granted = conn.execute(
            sa.select(events).where(events.c.kind == EventKind.APPROVAL_GRANTED.value)
        ).first()
        assert granted is not None
        row = dict(granted._mapping)
        row["actor"] = approver
        row["data"] = {**row["data"], "approver": approver}
        conn.execute(
            sa.update(events)
            .where(events.c.id == row["id"])
            .values(actor=row["actor"], data=row["data"])
        )
        prev = audit.GENESIS
        for entry in conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all():
            digest = entry.event_digest
            if entry.event_id == row["id"]:
                digest = audit.event_digest(row)
            new_hash = audit.chain_hash(prev, entry.seq, digest)
            conn.execute(
                sa.update(audit_log)
                .where(audit_log.c.seq == entry.seq)
                .values(event_digest=digest, prev_hash=prev, hash=new_hash)
            )
            prev = new_hash
        conn.execute(sa.delete(audit_signed_heads))


def test_verify_signs_the_head_in_the_database_and_the_state_folder(project: Path) -> None:
    result = run_cli(["audit", "verify", "-o", "json"], project)

    assert result.exit_code == 0, result.stdout + result.stderr
    verdict = result.json()
    signed = verdict["signed"]
    assert verdict["intact"] and signed["entries"] == verdict["entries"] >= 3
    lines = (project / ".conveyor" / HEADS_FILENAME).read_text().splitlines()
    kept = [json.loads(line) for line in lines]
    assert kept == [signed]
    with Store(project / ".conveyor") as store:
        assert [head.to_json() for head in store.audit_signed_heads()] == [signed]
    again = run_cli(["audit", "verify", "-o", "json"], project)
    assert again.json()["checked_against"] == signed  # nothing new: not signed again
    assert len((project / ".conveyor" / HEADS_FILENAME).read_text().splitlines()) == 1


def test_a_chain_rewritten_whole_is_found_against_the_signed_head(project: Path) -> None:
    first = verify(project)
    assert first.exit_code == 0, first.stdout + first.stderr
    with Store(project / ".conveyor") as store:
        entries = len(store.audit_entries())

    rewrite_an_approval(project / ".conveyor", "mallory")

    with Store(project / ".conveyor") as store:
        assert store.audit_verify() == []  # the chain alone is fooled
    result = verify(project)
    assert result.exit_code == 1
    assert f"the chain was rewritten since the signed head of {entries} entries" in result.stdout
    assert "signed by key" not in result.stdout  # a rewritten chain is never signed


def test_a_head_edited_in_the_state_folder_no_longer_verifies(project: Path) -> None:
    assert verify(project).exit_code == 0
    heads = project / ".conveyor" / HEADS_FILENAME
    head = json.loads(heads.read_text())
    rewrite_an_approval(project / ".conveyor", "mallory")
    with Store(project / ".conveyor") as store:
        head["head"] = store.audit_entries()[head["entries"] - 1].hash
    heads.write_text(json.dumps(head) + "\n")  # the new hash, with the old signature

    result = verify(project)

    assert result.exit_code == 1
    assert "does not verify with the project's key" in result.stdout


def test_deleting_entries_the_signed_head_covers_is_found(project: Path) -> None:
    assert verify(project).exit_code == 0
    with Store(project / ".conveyor") as store, store.engine.begin() as conn:
        last = conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar_one()
        event_id = conn.execute(
            sa.select(audit_log.c.event_id).where(audit_log.c.seq == last)
        ).scalar_one()
        conn.execute(sa.delete(audit_log).where(audit_log.c.seq == last))
        conn.execute(sa.delete(events).where(events.c.id == event_id))

    result = verify(project)

    assert result.exit_code == 1
    assert f"fewer than the {last} of the head" in result.stdout


def test_without_a_key_the_chain_is_verified_but_not_signed(project: Path) -> None:
    shutil.rmtree(project / ".conveyor" / "keys")

    result = verify(project)

    assert result.exit_code == 0, result.stdout
    assert "the head was not signed: no private key" in result.stdout
    assert not (project / ".conveyor" / HEADS_FILENAME).exists()


def test_signed_heads_without_the_key_to_check_them_fail(project: Path) -> None:
    assert verify(project).exit_code == 0
    shutil.rmtree(project / ".conveyor" / "keys")

    result = verify(project)

    assert result.exit_code == 1
    assert "signed heads cannot be checked" in result.stdout


def test_the_public_key_alone_checks_the_heads(project: Path) -> None:
    assert verify(project).exit_code == 0
    (project / ".conveyor" / "keys" / "conveyor.key").unlink()

    assert verify(project).exit_code == 0
    rewrite_an_approval(project / ".conveyor", "mallory")
    assert verify(project).exit_code == 1
