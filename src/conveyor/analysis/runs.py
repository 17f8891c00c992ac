"""Runs of canary errors (a broken session): what the rollback tests hold out, and for
how long at most.

A broken session errs on every click for a while: in the canary it is a run of
intervals, one after the other, each with more errors than even a real regression would
put there ("hot"). The canary errors of a run's hot intervals after its first are held
out of the rollback tests while the run lasts. When the run ends:

- short, no more than a RUN_RATIO regression makes by chance: its held errors are
  counted again;
- improbable at RUN_RATIO x the reference's rate: a session. Its held errors stay out.

Two bounds keep a real regression, however large, from being held out (the failure of
the first version of this module, which held out a uniform latency regression as one
long run and promoted it):

- **Duration.** A run that lasts LONGEST_RUN intervals is no session: every error it
  held is counted again at once, and the rest of the run is counted. A regression that
  makes every interval hot is delayed by at most LONGEST_RUN intervals.
- **Severity.** An interval with more than SEVERE_EXCESS canary errors over what the
  reference's rate explains is more than one session makes: the run's held errors are
  counted again, and so is the rest of the run. Where the canary's own errors per
  interval are many, chance alone does that often, and runs are rarely held: one
  session is then a small share of the canary's errors anyway.

Only errors are held out, never slow requests: a latency regression slows every
request, and a session's clicks are not slower by themselves.

Holding canary events out can only lower a rollback e-value: every likelihood ratio of
the rollback mixture (theta > 1) grows with each canary event, and the reference's
events stay counted. So whatever rule picks them, the rollback e-value is at every
moment at most the one that counts them all, and every guarantee of that one holds
(docs/analysis.md, "Runs of canary errors"). The promotion tests count every event.
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
# No session (nor two back to back) lasts this many intervals: the run is counted in full.
LONGEST_RUN = 60
# More errors over what the reference's rate explains, in one interval, than one session
# makes (a client clicks or retries a couple of times a second): counted in full, and the
# run with it.
SEVERE_EXCESS = 3.0


class Run(StrEnum):
    """What to do with this interval's canary events in the rollback tests."""

    COUNT = "count"
    HOLD = "hold"  # held out for now; counted again if the run is not a session
    RELEASE = "release"  # count this interval and every one held in the run
    SETTLE = "settle"  # the run was a session: count this interval, the held stay out


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
        z = math.sqrt(2.0) * _erfc_inverse(2.0 * tail)
        return max(1, math.ceil(mean + z * math.sqrt(mean) + 0.5))
    term = math.exp(-mean)
    below, m = term, 1  # below = P(X <= m - 1)
    while 1.0 - below > tail:
        term *= mean / m
        below += term
        m += 1
    return m


def _erfc_inverse(y: float) -> float:
    low, high = -10.0, 10.0
    for _ in range(60):
        mid = (low + high) / 2.0
        low, high = (mid, high) if math.erfc(mid) > y else (low, mid)
    return low


class RunFilter:
    """Fed every interval's canary and reference errors and requests; says what the
    rollback tests do with the canary's errors."""

    def __init__(self) -> None:
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
        self.counted = False  # the present run is no session: counted to its end

    def classify(self, canary: int, canary_requests: int, reference: int, references: int) -> Run:
        """This interval's canary events: count, hold, release the held, or settle."""
        # The reference's rate so far, a little pessimistic before it has data.
        rate = (self.reference_events + 1.0) / (self.reference_requests + 1.0)
        self.reference_events += reference
        self.reference_requests += references
        explained = rate * canary_requests
        expected = RUN_RATIO * explained
        hot = canary > 0 and canary >= poisson_threshold(expected)
        if not hot:
            return self._end(release=not self.session)
        self.streak += 1
        severe = canary - explained > SEVERE_EXCESS
        if severe or self.streak >= LONGEST_RUN:  # more than a session: count it all
            self.counted, self.session = True, False
            return self._release()
        if self.counted or self.streak <= FIRST_COUNTED:
            return Run.COUNT
        # Is the run's continuation, past its counted start, what a regression makes?
        self.run_events += canary
        self.run_expected += expected
        self.run_log_chance += math.log(poisson_tail(expected, canary))
        if not self.session:
            improbable = self.run_events >= poisson_threshold(self.run_expected, SESSION_TAIL)
            self.session = improbable or self.run_log_chance <= math.log(SESSION_TAIL)
        self.held += 1
        return Run.HOLD

    def _end(self, *, release: bool) -> Run:
        """The run ended: a session's held events stay out, anything else's count."""
        action = self._release() if release else Run.SETTLE if self.held else Run.COUNT
        self.streak, self.run_events, self.run_expected = 0, 0, 0.0
        self.run_log_chance, self.held = 0.0, 0
        self.session = self.counted = False
        return action

    def _release(self) -> Run:
        if self.held:
            self.held = 0
            return Run.RELEASE
        return Run.COUNT
