"""An environment's events filtered by deploy in the database, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.store import Store
from conveyor.store.records import EventKind


@pytest.fixture
def store(tmp_path: Path, store_url: str | None) -> Iterator[Store]:
    with Store(tmp_path / "state", store_url) as opened:
        yield opened


def test_the_events_of_one_deploy_are_those_its_data_names(store: Store) -> None:
    history = store.ledger.history
    for deploy_id, verdict in [(1, "continue"), (2, "continue"), (1, "promote"), (12, "x")]:
        history.record(EventKind.RELEASE_DECISION, "staging", deploy_id=deploy_id, verdict=verdict)
    history.record(EventKind.RELEASE_DECISION, "production", deploy_id=1, verdict="rollback")
    history.record(EventKind.RELEASE_STEP, "staging", deploy_id=1, step=0)
    history.record(EventKind.REPLICA_EVENT, "staging", event="exit")  # no deploy at all

    decisions = history.events("staging", (EventKind.RELEASE_DECISION,), deploy_id=1)

    assert [e.data["verdict"] for e in decisions] == ["continue", "promote"]
    assert len(history.events("staging", deploy_id=1)) == 3  # every kind, oldest first
    assert len(history.events("staging")) == 6
