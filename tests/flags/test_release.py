"""A flag released step by step and judged: promoted through its steps when the "on" users
fare as well as the others, killed (a rollback) when they get more errors."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from conveyor.analysis.model import Absolute, Counts
from conveyor.analysis.providers.base import Reading
from conveyor.flags.model import Flag, RolloutStrategy
from conveyor.flags.release import FlagRelease, FlagReleaseState
from conveyor.flags.store import FlagLedger
from conveyor.spec.strategy import Analysis, OnInconclusive
from conveyor.store.store import Store

REQUESTS_PER_INTERVAL = 400


class ServiceByFlag:
    """A service whose requests split between the flag's on and off users as the flag's
    rollout percentage says; `on_error_rate` is what the feature does to errors."""

    def __init__(self, ledger: FlagLedger, on_error_rate: float, off_error_rate: float) -> None:
        self.ledger = ledger
        self.rates = {"on": on_error_rate, "off": off_error_rate}
        self.random = random.Random(7)

    name = "scripted"

    def start(self, releases: Sequence[str], latency_threshold: float) -> None:
        assert set(releases) == {"on", "off"}

    def read(self) -> Mapping[str, Reading]:
        flag = self.ledger.flag("production", "checkout-v2").flag
        rollout = flag.strategies[-1] if flag.strategies else None
        rolled_out = isinstance(rollout, RolloutStrategy) and flag.enabled
        percentage = rollout.percentage if isinstance(rollout, RolloutStrategy) else 0
        on = round(REQUESTS_PER_INTERVAL * percentage / 100) if rolled_out else 0
        split = {"on": on, "off": REQUESTS_PER_INTERVAL - on}
        return {
            arm: Reading(Counts(n, self._errors(n, self.rates[arm])), Absolute(), 1.0)
            for arm, n in split.items()
        }

    def _errors(self, requests: int, rate: float) -> int:
        return sum(self.random.random() < rate for _ in range(requests))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[FlagLedger]:
    with Store(tmp_path / "state") as store:
        flags = FlagLedger(store.engine)
        flags.define("production", Flag(name="checkout-v2", enabled=False))
        yield flags


def release(ledger: FlagLedger, on_error_rate: float, **settings: object) -> FlagRelease:
    analysis = Analysis.model_validate(
        {"interval": 1, "min_duration": 5, "max_duration": 600, **settings}
    )
    provider = ServiceByFlag(ledger, on_error_rate, off_error_rate=0.01)
    return FlagRelease(
        ledger, "production", "checkout-v2", [10, 50, 100], analysis, provider,
        actor="release-bot", sleep=lambda _seconds: None,
    )  # fmt: skip


def test_a_harmless_flag_is_promoted_through_every_step(ledger: FlagLedger) -> None:
    outcome = release(ledger, on_error_rate=0.01, negligible_rate=0.05).run()

    assert outcome.state is FlagReleaseState.RELEASED, outcome.reason
    assert outcome.percentage == 100
    assert [d.verdict.value for d in outcome.decisions] == ["promote"] * 2  # 10 %, 50 %
    assert ledger.flag("production", "checkout-v2").flag.enabled


def test_a_flag_that_raises_errors_is_killed_and_the_kill_is_a_rollback(
    ledger: FlagLedger, tmp_path: Path
) -> None:
    outcome = release(ledger, on_error_rate=0.08).run()

    assert outcome.state is FlagReleaseState.KILLED
    assert outcome.reason.startswith("judge: ")
    assert not ledger.flag("production", "checkout-v2").flag.enabled
    with Store(tmp_path / "state") as store:
        [kill] = store.ledger.history.entries("production")
    assert (kill.kind, kill.actor, kill.result) == ("flag-kill", "release-bot", "killed")


def test_inconclusive_with_pause_leaves_the_flag_at_its_step(ledger: FlagLedger) -> None:
    outcome = release(
        ledger,
        on_error_rate=0.01,
        max_duration=6,
        negligible_rate=0.0001,
        inconclusive=OnInconclusive.PAUSE,
    ).run()

    assert outcome.state is FlagReleaseState.PAUSED
    assert outcome.percentage == 10
    assert ledger.flag("production", "checkout-v2").flag.enabled
