"""Runs of canary errors: what the rollback tests leave out.

A broken session errs on every click for a while: in the canary it is a run of
intervals, one after the other, each with more errors than even a real regression would
put there ("hot"). Independent errors, even at a regression's rate, rarely make long
runs. So the canary events of a run's hot intervals after its first (FIRST_COUNTED) are
held out of the rollback tests while the run lasts. A run whose continuation (past its
first interval) ends, or lasts LONGEST_HOLD intervals, before it is improbable at
RUN_RATIO x the reference's rate (its events in all, or the product of each interval's
tail probability, under SESSION_TAIL) was chance: its held events are counted again.
One that gets that improbable is a session: its held events
stay out, and so do those of its later hot intervals, until the run has lasted
LONGEST_RUN intervals (no session lasts that long: a large regression makes every
interval hot, and from then on is counted in full).

Leaving canary events out can only lower a rollback e-value: every likelihood ratio of
the rollback mixture (theta > 1) grows with each canary event, and the reference's
events stay counted. So whatever rule picks them, the rollback e-value is at every
moment at most the one that counts them all, and every guarantee of that one holds
(docs/analysis.md, "Clustered events").
"""

from __future__ import annotations

import math
from enum import StrEnum

# A hot interval: more canary events than RUN_RATIO x the reference's rate would put
# there, at a tail probability of at most HOT_TAIL. At low rates: any canary event.
RUN_RATIO = 2.0
HOT_TAIL = 0.7
SESSION_TAIL = 1e-5  # a run with events this improbable at RUN_RATIO x is a session
FIRST_COUNTED = 1  # a run's first hot intervals, always counted
LONGEST_HOLD = 30  # a run not shown a session within this many intervals is counted
LONGEST_RUN = 60  # a run of hot intervals this long is counted again


class Run(StrEnum):
    """What to do with this interval's canary events in the rollback tests."""

    COUNT = "count"
    HOLD = "hold"  # left out for now; counted again if the run turns out short
    RELEASE = "release"  # the run ended short: count this interval and the held ones
    CONFIRM = "confirm"  # the run is a session: the held events and this one's stay out


def poisson_tail(mean: float, count: int) -> float:
    """P(Poisson(mean) >= count)."""
    if mean > 50.0:  # normal approximation, with continuity correction
        return 0.5 * math.erfc((count - 0.5 - mean) / math.sqrt(2.0 * mean))
    term, below = math.exp(-mean), 0.0
    for k in range(count):
        below += term
        term *= mean / (k + 1)
    return max(1.0 - below, 1e-300)


def poisson_threshold(mean: float, tail: float = HOT_TAIL) -> int:
    """The smallest count m >= 1 with P(Poisson(mean) >= m) <= tail."""
    if mean > 50.0:  # normal approximation; the exact sum would be slow and is not needed
        return max(1, math.ceil(mean + _normal_quantile(1.0 - tail) * math.sqrt(mean) + 0.5))
    term = math.exp(-mean)
    below, m = term, 1  # below = P(X <= m - 1)
    while 1.0 - below > tail:
        term *= mean / m
        below += term
        m += 1
    return m


def _normal_quantile(q: float) -> float:
    low, high = -10.0, 10.0
    for _ in range(60):
        mid = (low + high) / 2.0
        low, high = (mid, high) if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < q else (low, mid)
    return low


class RunFilter:
    """Fed every interval's canary and reference events and requests; says what the
    rollback tests do with the canary's events."""

    def __init__(
        self,
        *,
        ratio: float = RUN_RATIO,
        first: int = FIRST_COUNTED,
        longest_hold: int = LONGEST_HOLD,
        longest: int = LONGEST_RUN,
    ) -> None:
        self.ratio, self.first, self.longest = ratio, first, longest
        self.longest_hold = longest_hold
        self.reference_events = 0
        self.reference_requests = 0
        self.streak = 0  # hot intervals in a row, up to the last one
        self.run_events = 0  # the present run's canary events, past its counted start
        self.run_expected = 0.0  # and what RUN_RATIO x the reference's rate explains
        # The chance, at RUN_RATIO x the reference's rate, of as many events in each
        # interval of the run as it had: a run of single errors is improbable by its length.
        self.run_log_chance = 0.0
        self.held = 0  # intervals held in the present run
        self.session = False  # the present run is a session

    def classify(self, canary: int, canary_requests: int, reference: int, references: int) -> Run:
        """This interval's canary events: count, hold, release the held, or confirm."""
        # The reference's rate so far, a little pessimistic before it has data.
        rate = (self.reference_events + 1.0) / (self.reference_requests + 1.0)
        self.reference_events += reference
        self.reference_requests += references
        expected = self.ratio * rate * canary_requests
        hot = canary > 0 and canary >= poisson_threshold(expected)
        if not hot:
            self.streak, self.run_events, self.run_expected = 0, 0, 0.0
            self.run_log_chance = 0.0
            self.session = False
            return self._release()
        self.streak += 1
        if self.streak <= self.first or self.streak > self.longest:
            return Run.COUNT
        # Is the run's continuation, past its counted start, what a regression makes?
        self.run_events += canary
        self.run_expected += expected
        self.run_log_chance += math.log(poisson_tail(expected, canary))
        if self.session:
            return Run.CONFIRM
        improbable = self.run_events >= poisson_threshold(self.run_expected, SESSION_TAIL)
        if improbable or self.run_log_chance <= math.log(SESSION_TAIL):
            self.session, self.held = True, 0
            return Run.CONFIRM
        if self.streak > self.longest_hold:  # long, and no more than a regression
            return self._release()
        self.held += 1
        return Run.HOLD

    def _release(self) -> Run:
        if self.held:
            self.held = 0
            return Run.RELEASE
        return Run.COUNT
