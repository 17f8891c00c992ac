"""The audit log: decisions chained as they are recorded; any edit or deletion is found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import run_cli
from conveyor.flags.model import Flag
from conveyor.flags.store import FlagLedger
from conveyor.store.records import EventKind
from conveyor.store.schema import audit_log, events
from conveyor.store.store import Store


def record_decisions(store: Store) -> None:
    """A deploy, its end, a flag rollout and a kill: five audited events."""
    deploy = store.ledger.deploys.begin(
        "production",
        release_id="production-shop-aaaaaaaaaaaa",
        repository="shop",
        digest="sha256:" + "a" * 64,
        ports=[8001],
        previous=None,
        actor="ada",
        run_id=None,
    )
    from conveyor.states import DeployState

    store.ledger.deploys.finish(deploy.id, DeployState.SUCCEEDED, None)
    flags = FlagLedger(store.engine)
    flags.define("production", Flag(name="beta", enabled=False), actor="ada")
    flags.rollout("production", "beta", 20, actor="ada")
    flags.kill("production", "beta", actor="oncall", reason="errors")


@pytest.fixture
def store(tmp_path: Path, store_url: str | None) -> Iterator[Store]:
    with Store(tmp_path / "state", store_url) as opened:
        record_decisions(opened)
        yield opened


def audited_ids(store: Store) -> list[int]:
    return [entry.event_id for entry in store.audit_entries()]


def test_decisions_are_chained_and_the_chain_verifies(store: Store) -> None:
    entries = store.audit_entries()

    kinds = [entry.kind for entry in entries]
    assert kinds == [
        EventKind.DEPLOY_STARTED,
        EventKind.DEPLOY_FINISHED,
        EventKind.FLAG_CHANGED,
        EventKind.FLAG_CHANGED,
        EventKind.FLAG_KILLED,
    ]
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert store.audit_verify() == []
    assert store.audit_verify(expected_head=entries[-1].hash) == []


def test_an_edited_event_is_found(store: Store) -> None:
    target = audited_ids(store)[1]
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(events.c.data).where(events.c.id == target)).one()
        data = {**row.data, "reason": "nothing to see"}
        conn.execute(sa.update(events).where(events.c.id == target).values(data=data))

    assert [p.what for p in store.audit_verify()] == [f"event {target} was edited"]


def test_a_deleted_event_is_found(store: Store) -> None:
    target = audited_ids(store)[4]
    with store.engine.begin() as conn:
        conn.execute(sa.delete(events).where(events.c.id == target))

    assert [p.what for p in store.audit_verify()] == [f"event {target} was deleted"]


def test_an_edited_or_deleted_entry_breaks_the_chain(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.update(audit_log).where(audit_log.c.seq == 2).values(actor="mallory"))
    assert store.audit_verify() == []  # the actor is not what the chain commits to...
    with store.engine.begin() as conn:
        conn.execute(sa.update(audit_log).where(audit_log.c.seq == 2).values(hash="f" * 64))
    problems = {p.what for p in store.audit_verify()}
    assert problems == {"the entry was edited", "the chain is broken here"}

    with store.engine.begin() as conn:
        conn.execute(sa.delete(audit_log).where(audit_log.c.seq == 3))
    problems = {p.what for p in store.audit_verify()}
    assert "entry 3 is missing" in problems
    assert any(p.endswith("is not chained") for p in problems)


def test_an_event_written_behind_the_stores_back_is_not_chained(store: Store) -> None:
    row = {
        "ts": 1.0,
        "kind": EventKind.ROLLBACK.value,
        "actor": "mallory",
        "data": {"environment": "production", "to": "x"},
    }
    with store.engine.begin() as conn:
        conn.execute(sa.insert(events).values(row))

    [problem] = store.audit_verify()
    assert problem.what.endswith("is not chained")


def test_a_truncated_tail_is_found_against_the_kept_head(store: Store) -> None:
    kept = store.audit_entries()[-1].hash
    last = store.audit_entries()[-1]
    with store.engine.begin() as conn:
        conn.execute(sa.delete(audit_log).where(audit_log.c.seq == last.seq))
        conn.execute(sa.delete(events).where(events.c.id == last.event_id))

    assert store.audit_verify() == []  # a shorter chain is still a chain...
    assert [p.what for p in store.audit_verify(expected_head=kept)] == [
        f"the head is {store.audit_entries()[-1].hash[:16]}, not {kept[:16]}"
    ]


def test_conveyor_audit_verify_exits_1_with_the_reason(
    tmp_path: Path, store_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if store_url is not None:
        monkeypatch.setenv("CONVEYOR_DATABASE_URL", store_url)
    (tmp_path / "conveyor.yml").write_text("version: 1\njobs:\n  a: {run: 'true'}\n")
    with Store(tmp_path / ".conveyor", store_url) as store:
        record_decisions(store)
        target = audited_ids(store)[0]

    intact = run_cli(["audit", "verify", "-o", "json"], tmp_path)
    assert intact.exit_code == 0, intact.stderr
    assert json.loads(intact.stdout)["entries"] == 5

    with Store(tmp_path / ".conveyor", store_url) as store, store.engine.begin() as conn:
        conn.execute(sa.update(events).where(events.c.id == target).values(actor="mallory"))
    tampered = run_cli(["audit", "verify"], tmp_path)
    assert tampered.exit_code == 1
    assert f"event {target} was edited" in tampered.stdout
