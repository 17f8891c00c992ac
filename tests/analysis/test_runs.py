"""Runs of canary errors (a broken session) left out of the rollback tests, and what
that does and does not change."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import takewhile

import pytest

from conveyor.analysis.judge import Judge
from conveyor.analysis.model import Counts, Decision, Observation, Verdict
from conveyor.analysis.runs import LONGEST_RUN, Run, RunFilter, poisson_threshold
from conveyor.analysis.simulation import Clustering, Scenario, stream
from conveyor.spec.strategy import Analysis

SESSIONS = Clustering(20, 20, 0.5)  # half the errors: sessions of 20 errors over 20 s


def _classify(runs: RunFilter, canary_errors: list[int]) -> list[Run]:
    """Each interval: the canary's 10 requests, the reference's 90 with one error (1 %)."""
    return [runs.classify(c, 10, 1, 90) for c in canary_errors]


def test_poisson_threshold() -> None:
    assert poisson_threshold(0.2, 0.7) == 1  # any event is hot at a low rate
    assert poisson_threshold(3.0, 0.5) == 4  # P(X >= 3) = 0.58, P(X >= 4) = 0.35
    assert poisson_threshold(0.2, 1e-5) == 5
    assert poisson_threshold(400.0, 0.5) in (400, 401)


def test_a_session_counts_as_its_first_interval() -> None:
    runs = RunFilter()
    actions = _classify(runs, [0] * 30 + [1] * 20 + [0])
    session = actions[30:50]
    assert session[0] is Run.COUNT
    assert Run.CONFIRM in session  # shown a session: the held intervals stay out
    confirmed = session.index(Run.CONFIRM)
    assert set(session[1:confirmed]) == {Run.HOLD}
    assert set(session[confirmed:]) == {Run.CONFIRM}
    assert actions[50] is Run.COUNT  # after the session: nothing held to release


def test_a_short_chance_run_is_counted_again() -> None:
    runs = RunFilter()
    actions = _classify(runs, [0] * 30 + [1, 1, 1, 0, 1, 0])
    assert actions[30:] == [Run.COUNT, Run.HOLD, Run.HOLD, Run.RELEASE, Run.COUNT, Run.COUNT]


def test_a_run_as_long_as_no_session_is_counted_again() -> None:
    runs = RunFilter()
    actions = _classify(runs, [0] * 30 + [3] * (LONGEST_RUN + 5))
    assert actions[30 + LONGEST_RUN - 1] is Run.CONFIRM
    assert set(actions[30 + LONGEST_RUN :]) == {Run.COUNT}


SETTINGS = Analysis(alpha=0.01, max_duration=600)  # the harness's level


def _stream(canary_errors: Callable[[int], int], seconds: int) -> Iterator[Observation]:
    """100 req/s: the canary and the baseline 10 each, stable 80. The old version errs
    on 1 % of its requests, evenly (the baseline once in 10 s, stable 8 times); the
    canary as given, per second."""
    for second in range(1, seconds + 1):
        baseline = Counts(10, int(second % 10 == 0))
        stable = Counts(80, int(second % 10 < 8))
        yield Observation(float(second), Counts(10, canary_errors(second)), baseline, stable)


def _decide(judge: Judge, observations: Iterator[Observation]) -> Decision:
    decision = None
    for obs in observations:
        decision = judge.observe(obs)
        if decision.verdict is not Verdict.CONTINUE:
            return decision
    assert decision is not None
    return decision


def _like_the_old_version(second: int) -> int:
    return int(second % 10 == 5)


def _broken_session(second: int) -> int:
    """The canary erring like the old version, and a session erring every second from
    the second minute on, for 20 s."""
    return _like_the_old_version(second) + int(120 <= second < 140)


def test_a_broken_session_in_the_canary_does_not_roll_back() -> None:
    counted = _decide(Judge(SETTINGS, runs=False), _stream(_broken_session, 600))
    assert counted.verdict is Verdict.ROLLBACK  # counted one by one, it is a regression
    decision = _decide(Judge(SETTINGS), _stream(_broken_session, 600))
    assert decision.verdict is not Verdict.ROLLBACK, decision.reason


def test_a_steady_regression_still_rolls_back() -> None:
    def doubled(second: int) -> int:
        return int(second % 5 == 0)

    decision = _decide(Judge(SETTINGS), _stream(doubled, 600))
    assert decision.verdict is Verdict.ROLLBACK
    assert decision.reason.startswith("errors: canary at 2.00x")


@pytest.mark.parametrize("seed", [38, 42, 49])
def test_simulated_broken_sessions_do_not_roll_back(seed: int) -> None:
    # Streams on which the judge that counts runs rolls back a good canary.
    scenario = Scenario("sessions", 100, 0.01, clustering=SESSIONS)
    verdicts = []
    for runs in (False, True):
        observations = takewhile(lambda o: o.elapsed <= 300, stream(scenario, seed))
        verdicts.append(_decide(Judge(SETTINGS, runs=runs), observations).verdict)
    assert verdicts == [Verdict.ROLLBACK, verdicts[1]]
    assert verdicts[1] is not Verdict.ROLLBACK


def test_a_true_2x_regression_still_rolls_back() -> None:
    scenario = Scenario("2x", 100, 0.01, error_multiplier=2.0)
    for seed in range(1, 4):
        observations = takewhile(lambda o: o.elapsed <= 1800, stream(scenario, seed))
        decision = _decide(Judge(Analysis(alpha=0.01, max_duration=1800)), observations)
        assert decision.verdict is Verdict.ROLLBACK, decision.reason


def test_leaving_runs_out_never_raises_the_rollback_evidence() -> None:
    # The guarantee: at every moment the rollback e-value is at most the one that counts
    # every canary event, whose level the docs state.
    scenario = Scenario("sessions, 2x", 100, 0.01, error_multiplier=2.0, clustering=SESSIONS)
    counted, filtered = Judge(SETTINGS, runs=False), Judge(SETTINGS)
    left_out = 0
    for obs in stream(scenario, 3):
        every = counted.observe(obs).evidence["errors"]
        some = filtered.observe(obs).evidence["errors"]
        for key in ("e_rollback_pooled", "e_rollback_baseline"):
            assert some[key] <= every[key] * (1 + 1e-9)
        left_out += some[key] < every[key] * (1 - 1e-9)
        if obs.elapsed >= 600:
            break
    assert left_out > 0  # the stream did have runs to leave out
