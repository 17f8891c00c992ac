"""The flag ledger: definitions per environment, versions, and the event log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.flags.model import (
    Constraint,
    DefaultStrategy,
    Flag,
    Operator,
    RolloutStrategy,
    Segment,
    UsersStrategy,
)
from conveyor.flags.store import Change, FlagLedger
from conveyor.store.records import EventKind
from conveyor.store.store import Store


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[FlagLedger]:
    with Store(tmp_path / "state") as store:
        yield FlagLedger(store.engine)


def test_every_change_bumps_the_environment_version_and_is_logged(ledger: FlagLedger) -> None:
    first = ledger.set_enabled("staging", "banner", True, actor="ada")
    second = ledger.rollout("staging", "banner", 25, stickiness="tenant", actor="ada")
    other = ledger.set_enabled("staging", "search-v2", False, actor="grace")
    ledger.set_enabled("production", "banner", True)

    assert (first.version, second.version, other.version) == (1, 2, 3)
    assert ledger.snapshot("staging").version == 3
    assert ledger.snapshot("production").version == 1
    assert ledger.snapshot("nowhere").version == 0
    history = ledger.history("staging")
    assert [event.data["change"] for event in history] == ["enabled", "rollout", "disabled"]
    assert [event.actor for event in history] == ["ada", "ada", "grace"]
    assert history[1].data["percentage"] == 25
    assert history[1].data["previous"] == first.flag.model_dump(mode="json")
    assert history[1].data["definition"] == second.flag.model_dump(mode="json")
    assert [event.data["version"] for event in ledger.history("staging", "banner")] == [1, 2]


def test_the_definition_is_read_back_whole(ledger: FlagLedger) -> None:
    flag = Flag.model_validate(
        {
            "name": "banner",
            "description": "a banner",
            "enabled": True,
            "strategies": [
                {"type": "users", "users": ["ada"]},
                {"type": "rollout", "percentage": 10, "stickiness": "tenant"},
            ],
            "variants": [
                {"name": "blue", "weight": 1, "payload": {"type": "string", "value": "b"}}
            ],
        }
    )

    ledger.define("staging", flag, actor="ada")

    assert ledger.flag("staging", "banner").flag == flag
    assert ledger.environments() == ["staging"]


def test_a_kill_turns_the_flag_off_and_is_logged_as_a_rollback(ledger: FlagLedger) -> None:
    ledger.rollout("production", "checkout-v2", 50)

    outcome = ledger.kill("production", "checkout-v2", actor="oncall", reason="errors up")

    assert outcome.killed is True
    assert outcome.record.flag.enabled is False
    assert outcome.record.flag.strategies == (RolloutStrategy(percentage=50),)  # kept for later
    kill = ledger.history("production", "checkout-v2")[-1]
    assert kill.kind == EventKind.FLAG_KILLED
    assert kill.actor == "oncall"
    assert (kill.data["change"], kill.data["rollback"], kill.data["reason"]) == (
        Change.KILLED,
        True,
        "errors up",
    )
    assert kill.data["version"] == outcome.record.version == 2


def test_killing_an_off_flag_changes_and_logs_nothing(ledger: FlagLedger) -> None:
    ledger.set_enabled("production", "checkout-v2", False)

    outcome = ledger.kill("production", "checkout-v2")

    assert outcome.killed is False
    assert outcome.record.version == 1
    assert [event.kind for event in ledger.history("production")] == [EventKind.FLAG_CHANGED]


def test_a_missing_flag_cannot_be_killed_or_read(ledger: FlagLedger) -> None:
    with pytest.raises(NotFoundError):
        ledger.kill("production", "ghost")
    with pytest.raises(NotFoundError, match="no flag 'ghost' in production"):
        ledger.flag("production", "ghost")


def test_a_rollout_keeps_targeting_and_replaces_the_everyone_strategy(ledger: FlagLedger) -> None:
    beta = DefaultStrategy(
        constraints=(Constraint(context_name="plan", operator=Operator.IN, values=("beta",)),)
    )
    listed = UsersStrategy(users=("ada",))
    flag = Flag(name="search-v2", strategies=(listed, beta, DefaultStrategy()))
    ledger.define("staging", flag)

    first = ledger.rollout("staging", "search-v2", 10)
    second = ledger.rollout("staging", "search-v2", 40, stickiness="tenant")

    assert first.flag.enabled is True
    assert first.flag.strategies == (listed, beta, RolloutStrategy(percentage=10))
    assert second.flag.strategies == (
        listed,
        beta,
        RolloutStrategy(percentage=40, stickiness="tenant"),
    )


def test_a_rollout_percentage_outside_0_to_100_is_refused(ledger: FlagLedger) -> None:
    with pytest.raises(ConveyorError, match=r"0\.\.100"):
        ledger.rollout("staging", "banner", 101)
    assert ledger.history("staging") == []


def test_segments_are_versioned_logged_and_required_by_flags(ledger: FlagLedger) -> None:
    uses_beta = Flag(name="banner", enabled=True, strategies=(DefaultStrategy(segments=("beta",)),))
    with pytest.raises(ConveyorError, match="segments staging does not have: beta"):
        ledger.define("staging", uses_beta)

    segment = Segment(
        name="beta",
        constraints=(Constraint(context_name="plan", operator=Operator.IN, values=("beta",)),),
    )
    record = ledger.define_segment("staging", segment, actor="ada")
    ledger.define("staging", uses_beta)

    snapshot = ledger.snapshot("staging")
    assert record.version == 1
    assert snapshot.version == 2
    assert snapshot.segment_definitions() == {"beta": segment}
    first = ledger.history("staging")[0]
    assert (first.data["segment"], first.data["change"]) == ("beta", "defined")


def test_a_kill_is_a_rollback_in_the_environments_deploy_history(tmp_path: Path) -> None:
    with Store(tmp_path / "state") as store:
        ledger = FlagLedger(store.engine)
        ledger.rollout("production", "checkout-v2", 50)
        ledger.kill("production", "checkout-v2", actor="oncall", reason="errors up")

        [entry] = store.ledger.history.entries("production")

    assert (entry.kind, entry.release_id, entry.result) == (
        "flag-kill",
        "flag:checkout-v2",
        "killed",
    )
    assert (entry.actor, entry.reason) == ("oncall", "errors up")
