"""The judge's opt-in `log_errors` kind: a canary that answers 200 while it logs errors
is rolled back; a clean one is promoted; without the setting the judge ignores logs."""

from __future__ import annotations

from conveyor.analysis.judge import Judge
from conveyor.analysis.model import Counts, Decision, Observation, Verdict
from conveyor.deploy.model import ReleaseSignals, SignalSample
from conveyor.deploy.signals import counter_increase, window_rates
from conveyor.spec.strategy import Analysis


def judged(settings: Analysis, canary_log_errors: int, seconds: int = 120) -> Decision:
    """One observation a second: 100 requests per arm, no 5xx, the canary logging
    `canary_log_errors` error lines a second, the old version one every ten seconds."""
    judge = Judge(settings)
    decision = None
    for second in range(1, seconds + 1):
        old = 1 if second % 10 == 0 else 0
        decision = judge.observe(
            Observation(
                elapsed=float(second),
                canary=Counts(requests=100, log_errors=canary_log_errors),
                baseline=Counts(requests=100, log_errors=old),
                stable=Counts(requests=300, log_errors=old),
            )
        )
        if decision.verdict is not Verdict.CONTINUE:
            return decision
    assert decision is not None
    return decision


SETTINGS = Analysis(log_errors=True, min_duration=5.0, negligible_rate=0.02)


def test_a_canary_logging_errors_while_answering_200_is_rolled_back() -> None:
    decision = judged(SETTINGS, canary_log_errors=10)
    assert decision.verdict is Verdict.ROLLBACK
    assert decision.reason.startswith("error log lines:")
    assert decision.evidence["counts"]["canary"]["log_errors"] > 0
    assert "log_errors" in decision.evidence


def test_a_clean_canary_is_promoted_with_log_errors_judged() -> None:
    decision = judged(SETTINGS, canary_log_errors=0)
    assert decision.verdict is Verdict.PROMOTE
    assert "error log lines" in decision.reason


def test_without_the_setting_the_judge_ignores_the_logs() -> None:
    decision = judged(Analysis(min_duration=5.0, negligible_rate=0.02), canary_log_errors=10)
    assert decision.verdict is Verdict.PROMOTE
    assert "log_errors" not in decision.evidence["counts"]["canary"]


def test_more_error_lines_than_requests_count_once_per_request() -> None:
    flood = judged(SETTINGS, canary_log_errors=10_000)
    assert flood.verdict is Verdict.ROLLBACK  # judged, not crashed by a rate over 1


def test_log_errors_need_the_router_provider() -> None:
    assert Analysis(log_errors=True, provider="prometheus").problem() is not None
    assert SETTINGS.problem() is None


def sample(ts: float, requests: int, log_errors: int) -> SignalSample:
    signals = ReleaseSignals("r1", requests, 0, 0, 0, log_errors=log_errors)
    return SignalSample("staging", "r1", ts, signals, None, 100)


def test_the_signal_rates_carry_log_errors_per_second_and_per_request() -> None:
    rates = window_rates(sample(0.0, 100, 5), sample(10.0, 300, 25))
    assert (rates.log_errors, rates.log_errors_per_second, rates.log_error_share) == (20, 2.0, 0.1)
    quiet = window_rates(sample(0.0, 100, 5), sample(10.0, 100, 5))
    assert quiet.log_error_share is None


def test_the_log_error_counter_restarts_on_its_own_not_with_the_router() -> None:
    before = ReleaseSignals("r1", 100, 0, 0, 0, log_errors=40)
    # A new reader counted from zero (the server restarted); the router did not.
    after = ReleaseSignals("r1", 150, 0, 0, 0, log_errors=3)
    gained = counter_increase(before, after)
    assert (gained.requests, gained.log_errors) == (50, 3)
