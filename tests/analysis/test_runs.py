"""Runs of canary errors (a broken session) held out of the rollback tests: what that
changes, and the regressions it must never hide (the first version held out a uniform
latency regression as one long run and promoted it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import takewhile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.analysis.judge import Judge
from conveyor.analysis.model import Counts, Decision, Observation, Verdict
from conveyor.analysis.runs import (
    LONGEST_RUN,
    Run,
    RunFilter,
    poisson_threshold,
)
from conveyor.analysis.simulation import Clustering, Scenario, stream
from conveyor.spec.strategy import Analysis

SESSIONS = Clustering(20, 20, 0.5)  # half the errors: sessions of 20 errors over 20 s
SETTINGS = Analysis(alpha=0.01, max_duration=600)  # the harness's level


def _classify(runs: RunFilter, canary_errors: list[int]) -> list[Run]:
    """Each interval: the canary's 10 requests, the reference's 90 with one error (1 %)."""
    return [runs.classify(c, 10, 1, 90) for c in canary_errors]


def test_poisson_threshold() -> None:
    assert poisson_threshold(0.2, 0.7) == 1  # any event is hot at a low rate
    assert poisson_threshold(3.0, 0.5) == 4  # P(X >= 3) = 0.58, P(X >= 4) = 0.35
    assert poisson_threshold(0.2, 1e-5) == 5
    assert poisson_threshold(400.0, 0.5) in (400, 401)


def test_a_session_is_held_out_and_stays_out() -> None:
    actions = _classify(RunFilter(), [0] * 30 + [1] * 20 + [0])
    session = actions[30:50]
    assert session[0] is Run.COUNT  # a run's first interval always counts
    assert set(session[1:]) == {Run.HOLD}
    assert actions[50] is Run.SETTLE  # improbable at 2x: a session, its errors stay out


def test_a_short_chance_run_is_counted_again() -> None:
    actions = _classify(RunFilter(), [0] * 30 + [1, 1, 1, 0, 1, 0])
    assert actions[30:] == [Run.COUNT, Run.HOLD, Run.HOLD, Run.RELEASE, Run.COUNT, Run.COUNT]


def test_a_run_as_long_as_no_session_is_counted_in_full() -> None:
    actions = _classify(RunFilter(), [0] * 30 + [1] * (LONGEST_RUN + 5))
    assert actions[30 + LONGEST_RUN - 1] is Run.RELEASE  # every held error counts again
    assert set(actions[30 + LONGEST_RUN :]) == {Run.COUNT}


def test_more_errors_than_a_session_makes_are_counted_with_the_run() -> None:
    actions = _classify(RunFilter(), [0] * 30 + [1, 1, 1, 4, 1, 1, 0])
    assert actions[30:] == [Run.COUNT, Run.HOLD, Run.HOLD, Run.RELEASE] + [Run.COUNT] * 3


def _stream(canary: Callable[[int], Counts], seconds: int) -> Iterator[Observation]:
    """100 req/s: the canary and the baseline 10 each, stable 80. The old version errs
    on 1 % of its requests and is slow on 5 %, evenly; the canary as given, per second."""
    for second in range(1, seconds + 1):
        baseline = Counts(10, int(second % 10 == 0), int(second % 2 == 0))
        stable = Counts(80, int(second % 10 < 8), 4)
        yield Observation(float(second), canary(second), baseline, stable)


def _decide(judge: Judge, observations: Iterator[Observation]) -> Decision:
    decision = None
    for obs in observations:
        decision = judge.observe(obs)
        if decision.verdict is not Verdict.CONTINUE:
            return decision
    assert decision is not None
    return decision


def _errors(count: Callable[[int], int]) -> Callable[[int], Counts]:
    return lambda second: Counts(10, count(second), int(second % 2 == 1))


def _broken_session(second: int) -> int:
    """The canary erring like the old version, and a session erring every second from
    the second minute on, for 20 s."""
    return int(second % 10 == 5) + int(120 <= second < 140)


def test_a_broken_session_in_the_canary_does_not_roll_back() -> None:
    counted = _decide(Judge(SETTINGS, runs=False), _stream(_errors(_broken_session), 600))
    assert counted.verdict is Verdict.ROLLBACK  # counted one by one, it is a regression
    decision = _decide(Judge(SETTINGS), _stream(_errors(_broken_session), 600))
    assert decision.verdict is not Verdict.ROLLBACK, decision.reason


def test_a_steady_regression_still_rolls_back() -> None:
    decision = _decide(Judge(SETTINGS), _stream(_errors(lambda s: int(s % 5 == 0)), 600))
    assert decision.verdict is Verdict.ROLLBACK
    assert decision.reason.startswith("errors: canary at 2.00x")


@pytest.mark.parametrize(
    ("name", "canary", "within"),
    [
        # The demo's chapter 8: +200 ms on every request, every canary request slow.
        ("every canary request slow", lambda s: Counts(10, int(s % 10 == 5), 10), 10),
        ("every canary request an error", lambda s: Counts(10, 10, 0), 10),
        # 10x as one endless run: a session that never ends is a regression.
        ("an error every second", lambda s: Counts(10, 1, int(s % 2 == 1)), LONGEST_RUN + 15),
        ("4 errors every second", lambda s: Counts(10, 4, int(s % 2 == 1)), 30),
    ],
)
def test_uniform_and_severe_regressions_roll_back_in_a_short_step(
    name: str, canary: Callable[[int], Counts], within: int
) -> None:
    decision = _decide(Judge(SETTINGS), _stream(canary, 120))
    assert decision.verdict is Verdict.ROLLBACK, f"{name}: {decision.reason}"
    assert decision.elapsed <= within, name
    counted = _decide(Judge(SETTINGS, runs=False), _stream(canary, 120))
    assert decision.elapsed <= counted.elapsed + LONGEST_RUN, name


# The harness's short-step scenarios (bench/judge_harness.py SHORT_STEP_CASES): a 2 min
# canary step, 100 req/s, 1 % errors; each must roll back within it, runs held out or not.
SHORT_STEP = {
    "+200 ms on every canary request": Scenario("slow", 100, 0.01, latency_shift=0.2),
    "10x errors": Scenario("10x", 100, 0.01, error_multiplier=10.0),
    "100% errors": Scenario("100%", 100, 0.01, error_multiplier=100.0),
    "sessions, +200 ms": Scenario("s", 100, 0.01, latency_shift=0.2, clustering=SESSIONS),
    "sessions, 100% errors": Scenario("s", 100, 0.01, error_multiplier=100, clustering=SESSIONS),
}


@pytest.mark.parametrize("name", list(SHORT_STEP))
def test_the_harness_short_step_regressions_roll_back(name: str) -> None:
    scenario = SHORT_STEP[name]
    for seed in range(1, 9):
        observations = takewhile(lambda o: o.elapsed <= 120, stream(scenario, seed))
        decision = _decide(Judge(SETTINGS), observations)
        assert decision.verdict is Verdict.ROLLBACK, f"{name}, seed {seed}: {decision.reason}"


@pytest.mark.parametrize("seed", [38, 42, 49])
def test_simulated_broken_sessions_do_not_roll_back(seed: int) -> None:
    # Streams on which the judge that counts runs rolls back a good canary.
    scenario = Scenario("sessions", 100, 0.01, clustering=SESSIONS)
    verdicts = []
    for runs in (False, True):
        observations = takewhile(lambda o: o.elapsed <= 300, stream(scenario, seed))
        verdicts.append(_decide(Judge(SETTINGS, runs=runs), observations).verdict)
    assert verdicts[0] is Verdict.ROLLBACK
    assert verdicts[1] is not Verdict.ROLLBACK


def test_a_true_2x_regression_still_rolls_back() -> None:
    scenario = Scenario("2x", 100, 0.01, error_multiplier=2.0)
    for seed in range(1, 4):
        observations = takewhile(lambda o: o.elapsed <= 1800, stream(scenario, seed))
        decision = _decide(Judge(Analysis(alpha=0.01, max_duration=1800)), observations)
        assert decision.verdict is Verdict.ROLLBACK, decision.reason


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=150))
def test_holding_runs_out_never_raises_the_rollback_evidence(errors: list[int]) -> None:
    # The guarantee: at every moment the rollback e-value is at most the one that counts
    # every canary error, whose level the docs state.
    counted, held = Judge(SETTINGS, runs=False), Judge(SETTINGS)
    for obs in _stream(_errors(lambda s: errors[s - 1]), len(errors)):
        every = counted.observe(obs).evidence["errors"]
        some = held.observe(obs).evidence["errors"]
        for key in ("e_rollback_pooled", "e_rollback_baseline"):
            assert some[key] <= every[key] * (1 + 1e-9) + 1e-12


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=LONGEST_RUN, max_size=LONGEST_RUN + 20))
def test_a_run_as_long_as_no_session_hides_nothing(errors: list[int]) -> None:
    # Every canary second errs for LONGEST_RUN seconds or more: from then on the rollback
    # evidence is all counted, however the run began.
    counted, held = Judge(SETTINGS, runs=False), Judge(SETTINGS)
    for obs in _stream(_errors(lambda s: errors[s - 1]), len(errors)):
        every = counted.observe(obs).evidence["errors"]
        some = held.observe(obs).evidence["errors"]
        if obs.elapsed >= LONGEST_RUN + 3:  # the first seconds set the reference rate
            assert some["e_rollback_pooled"] == pytest.approx(every["e_rollback_pooled"])
