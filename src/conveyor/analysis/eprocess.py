"""Anytime-valid tests of where events land: the canary or the reference traffic.

Each interval the canary served `n_c` requests with `c` events (errors, or slow requests)
and the reference `n_r` requests with `r` events. Given that an event happened, it lands
in the canary with probability `p = n_c / (n_c + n_r)` when both run at the same rate, and
with `theta p / (theta p + 1 - p)` when the canary's rate is `theta` times the reference's
(`theta` is also the odds ratio of that probability). The interval's events contribute

    log LR(theta) = c log(theta) - (c + r) log(1 + p (theta - 1))

to the log-likelihood ratio of `theta` against `theta = 1`. One running sum per `theta`
of a log-spaced grid is all the state; the tests are mixtures of the grid's likelihood
ratios, each a nonnegative (super)martingale under its null, so by Ville's inequality it
crosses `1/level` with probability at most `level`, whenever one looks.

Counting requests as Bernoulli trials (not Poisson) makes the canary's share of a fixed
number of events hypergeometric rather than binomial; it is less spread (Hoeffding 1963,
sampling without replacement), and every likelihood ratio here is convex in `c`, so the
e-values stay valid.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

TOP_EFFECT = 20.0  # the grid spans theta in [1/20, 20]
GRID_RATIO = 1.1  # neighbouring grid points differ by about 10 %
LOWEST_REGRESSION = 1.05  # rollback mixtures put no weight below this effect
FOCUS = (0.9, 2.7)  # the focused prior's core, in multiples of min_effect
FOCUS_WEIGHT = 0.9
LOWEST_IMPROVEMENT = 0.25  # promotion mixtures put no weight below this effect
UNITY_WEIGHT = 0.5  # promotion mixtures put this much weight on "no change at all"
SHARE_CACHE = 4096  # traffic splits whose terms are kept (~2 KB each)


class Prior(StrEnum):
    """How a rollback mixture weighs the effects it tests against."""

    FOCUSED = "focused"  # 90 % log-uniform on [0.9, 2.7] x min_effect, 10 % on the rest
    LOG_UNIFORM = "log-uniform"  # equal weight per doubling of the effect, [1.05, 21]
    UNIFORM_ODDS = "uniform-odds"  # equal weight per unit of the odds ratio (theta)


def log_sum_exp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum([math.exp(v - top) for v in values]))


class Grid:
    """The effects `theta` tracked: evenly log-spaced over about [1/20, 20], with 1 and
    `min_effect` on it exactly (the spacing, about 10 %, is a root of `min_effect`)."""

    def __init__(self, min_effect: float, *, top: float = TOP_EFFECT, ratio: float = GRID_RATIO):
        per_min_effect = max(1, round(math.log(min_effect) / math.log(ratio)))
        step = math.log(min_effect) / per_min_effect
        steps = max(math.ceil(math.log(top) / step), per_min_effect)
        self.log_thetas: tuple[float, ...] = tuple(i * step for i in range(-steps, steps + 1))
        thetas = [math.exp(x) for x in self.log_thetas]
        self.unity, self.min_effect = steps, steps + per_min_effect
        thetas[self.unity], thetas[self.min_effect] = 1.0, min_effect
        self.thetas: tuple[float, ...] = tuple(thetas)
        # Intervals repeat their traffic split often; each split's terms are computed once.
        self._share_terms: dict[tuple[int, int], tuple[float, ...]] = {}

    def share_terms(self, canary_requests: int, reference_requests: int) -> tuple[float, ...]:
        """log(1 + p (theta - 1)) per theta, for the interval's canary share p."""
        key = (canary_requests, reference_requests)
        terms = self._share_terms.get(key)
        if terms is None:
            p = canary_requests / (canary_requests + reference_requests)
            terms = tuple(math.log1p(p * (t - 1.0)) for t in self.thetas)
            if len(self._share_terms) >= SHARE_CACHE:
                self._share_terms.clear()
            self._share_terms[key] = terms
        return terms


@functools.lru_cache(maxsize=16)
def grid_for(min_effect: float) -> Grid:
    """Grids are shared: judges of the same min_effect reuse each other's share terms."""
    return Grid(min_effect)


class Attribution:
    """Running log-likelihood ratios (against theta = 1) of where the events landed."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.log_lr = [0.0] * len(grid.thetas)
        self._raw = [0.0] * len(grid.thetas)  # untempered, intervals without a weight
        self._fixed = [0.0] * len(grid.thetas)  # intervals tempered by their own weight
        self.cluster_size = 1.0
        self.version = 0  # bumped on every change, for callers caching what they derive
        self.canary_events = 0
        self.canary_requests = 0
        self.reference_events = 0
        self.reference_requests = 0

    def update(
        self,
        canary_events: int,
        canary_requests: int,
        reference_events: int,
        reference_requests: int,
        weight: float | None = None,
    ) -> None:
        """Add an interval's events. Its likelihood ratio is tempered by the current
        cluster size (`temper`), or by its own `weight` when given (a spike: the whole
        interval may be one cluster). See `Dispersion`."""
        self.canary_events += canary_events
        self.canary_requests += canary_requests
        self.reference_events += reference_events
        self.reference_requests += reference_requests
        events = canary_events + reference_events
        # With no events, or all traffic on one side, the interval says nothing about theta.
        if events == 0 or canary_requests == 0 or reference_requests == 0:
            return
        terms = self.grid.share_terms(canary_requests, reference_requests)
        scale = 1.0 if weight is None else weight
        canary, everyone = scale * canary_events, scale * events
        increments = [
            canary * log_theta - everyone * term
            for log_theta, term in zip(self.grid.log_thetas, terms, strict=True)
        ]
        if weight is None:
            self._raw = [total + x for total, x in zip(self._raw, increments, strict=True)]
        else:
            self._fixed = [total + x for total, x in zip(self._fixed, increments, strict=True)]
        self._refresh()

    def temper(self, cluster_size: float) -> None:
        """Temper every interval without a weight of its own, past ones included, by
        this cluster size (the caller's current estimate)."""
        if cluster_size != self.cluster_size:
            self.cluster_size = cluster_size
            self._refresh()

    def _refresh(self) -> None:
        self.log_lr = self.tempered((self._raw, self._fixed))  # no copies: it only reads
        self.version += 1

    def snapshot(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The state so far, to be tempered later as the cluster size then is."""
        return tuple(self._raw), tuple(self._fixed)

    def tempered(self, state: tuple[Sequence[float], Sequence[float]]) -> list[float]:
        """The log-likelihood ratios of a snapshot at the current cluster size."""
        inverse = 1.0 / self.cluster_size
        return [r * inverse + f for r, f in zip(state[0], state[1], strict=True)]

    @property
    def events(self) -> int:
        return self.canary_events + self.reference_events

    @property
    def canary_share(self) -> float:
        """The canary's share of all requests so far (0.5 before there are any)."""
        total = self.canary_requests + self.reference_requests
        return self.canary_requests / total if total else 0.5

    def rate_ratio(self) -> float | None:
        """The canary's event rate over the reference's, None while undefined."""
        if self.canary_requests == 0 or self.reference_requests == 0 or self.reference_events == 0:
            return None
        canary = self.canary_events / self.canary_requests
        return canary / (self.reference_events / self.reference_requests)


@dataclass(frozen=True)
class Mixture:
    """An e-process: prior-weighted likelihood ratios of some thetas over a null theta."""

    indices: tuple[int, ...]
    log_weights: tuple[float, ...]
    null: int

    def log_e(self, attribution: Attribution) -> float:
        return self.log_e_of(attribution.log_lr)

    def log_e_of(self, lr: Sequence[float]) -> float:
        terms = [w + lr[i] for i, w in zip(self.indices, self.log_weights, strict=True)]
        return log_sum_exp(terms) - lr[self.null]

    def log_weight_of(self, index: int) -> float:
        return self.log_weights[self.indices.index(index)]


def _normalised(indices: Sequence[int], weights: Sequence[float]) -> Mixture:
    total = math.fsum(weights)
    return Mixture(tuple(indices), tuple(math.log(w / total) for w in weights), null=-1)


def regression_mixture(grid: Grid, prior: Prior = Prior.FOCUSED) -> Mixture:
    """Against H0: theta <= 1 (the canary no worse); large when the canary is worse."""
    chosen = [i for i, t in enumerate(grid.thetas) if t >= LOWEST_REGRESSION]
    thetas = [grid.thetas[i] for i in chosen]
    if prior is Prior.LOG_UNIFORM:
        weights = [1.0] * len(chosen)
    elif prior is Prior.UNIFORM_ODDS:  # a log-spaced point stands for a width ~ theta
        weights = thetas
    else:
        min_effect = grid.thetas[grid.min_effect]
        low, high = FOCUS[0] * min_effect, FOCUS[1] * min_effect
        core = [low <= t <= high for t in thetas]
        inside, outside = sum(core), len(core) - sum(core)
        weights = [
            FOCUS_WEIGHT / inside if in_core else (1.0 - FOCUS_WEIGHT) / max(outside, 1)
            for in_core in core
        ]
    mixture = _normalised(chosen, weights)
    return Mixture(mixture.indices, mixture.log_weights, grid.unity)


def tolerance_index(grid: Grid, tolerance: float) -> int:
    """The largest grid point at or below `tolerance` (and above 1): rejecting "theta at
    least that point" rejects "theta at least the tolerance" too."""
    below = [i for i, t in enumerate(grid.thetas) if grid.unity < i and t <= tolerance * 1.000001]
    return below[-1] if below else grid.unity + 1


@functools.lru_cache(maxsize=512)
def no_harm_mixture(grid: Grid, null: int | None = None) -> Mixture:
    """Against H0': theta >= the grid point `null` (default: min_effect); large when the
    canary is below it.

    Half the weight sits on theta = 1 (most canaries change nothing), the rest spreads
    log-uniformly over [1/4, null) so a canary slightly better or worse still
    gathers evidence."""
    null = grid.min_effect if null is None else null
    others = [
        i
        for i, t in enumerate(grid.thetas)
        if LOWEST_IMPROVEMENT <= t < grid.thetas[null] and i != grid.unity
    ]
    spread = (1.0 - UNITY_WEIGHT) / max(len(others), 1)
    mixture = _normalised([grid.unity, *others], [UNITY_WEIGHT] + [spread] * len(others))
    return Mixture(mixture.indices, mixture.log_weights, null)


def hidden_ratio(attribution: Attribution, level: float) -> float | None:
    """The upper confidence bound on theta at `level`: the smallest grid point from which
    up every "theta at least this" is rejected by its no-harm test; None while none is.
    A regression this large or larger would have been caught with probability 1 - level."""
    grid, cut = attribution.grid, math.log(1.0 / level)
    top, count = len(grid.thetas) - 1, len(grid.thetas) - 1 - grid.unity

    def rejected(j: int) -> bool:  # on a prefix: the e-value grows with the null's theta
        return no_harm_mixture(grid, top - j).log_e(attribution) >= cut

    rejections = _leading(rejected, count)
    return grid.thetas[top - rejections + 1] if rejections else None


def two_sided_mixture(grid: Grid) -> Mixture:
    """Against H0: theta = 1, both directions alike (does the baseline drift from stable?)."""
    chosen = [i for i in range(len(grid.thetas)) if i != grid.unity]
    mixture = _normalised(chosen, [1.0] * len(chosen))
    return Mixture(mixture.indices, mixture.log_weights, grid.unity)


@dataclass(frozen=True)
class Interval:
    """A confidence sequence's current bounds; `high` None when unbounded."""

    low: float
    high: float | None


def confidence_sequence(attribution: Attribution, upper: Mixture, level: float) -> Interval:
    """Bounds on theta, each side at `level`: the thetas no one-sided test rejects.

    Every grid point theta0 is tested with `upper` (a mixture over alternatives above
    its null) shifted along the grid to sit above theta0, and mirrored below it. The
    log-likelihood is concave in log(theta), so on the even grid each test's e-value is
    monotone in theta0: the rejected points are a prefix (below the effect) and a suffix
    (above it), found by bisection. At theta0 = 1 the upper test is the rollback test."""
    lr, thetas = attribution.log_lr, attribution.grid.thetas
    offsets = [(i - upper.null, w) for i, w in zip(upper.indices, upper.log_weights, strict=True)]
    cut = math.log(1.0 / level)

    def rejected(j: int, side: int) -> bool:
        terms = [w + lr[j + side * o] for o, w in offsets if 0 <= j + side * o < len(lr)]
        return bool(terms) and log_sum_exp(terms) - lr[j] >= cut

    below = _leading(lambda j: rejected(j, 1), len(lr))
    above = _leading(lambda j: rejected(len(lr) - 1 - j, -1), len(lr))
    low = thetas[below - 1] if below else 0.0
    high = thetas[len(lr) - above] if above else None
    return Interval(low, high)


def _leading(holds: Callable[[int], bool], count: int) -> int:
    """How many of 0, 1, ... count - 1 hold, for a predicate true on a prefix only."""
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo


def drift_per_event(share: float, truth: float, alternative: float, null: float) -> float:
    """Expected growth of log LR(alternative over null) per event when theta is `truth`."""
    p = share
    q_truth = truth * p / (truth * p + 1.0 - p)
    return q_truth * math.log(alternative / null) - math.log(
        (alternative * p + 1.0 - p) / (null * p + 1.0 - p)
    )


def events_to_reach(
    share: float, truth: float, alternative: float, null: float, missing: float
) -> int:
    """About how many more events a test needs to gain `missing` nats of log e-value when
    theta is `truth`, growing like LR(alternative over null); -1 if it does not grow."""
    if missing <= 0:
        return 0
    drift = drift_per_event(share, truth, alternative, null)
    return math.ceil(missing / drift) if drift > 0 else -1


def nearest(grid: Grid, theta: float, among: Sequence[int] | None = None) -> int:
    """The index of the grid point nearest `theta` on the log scale, kept within the
    (contiguous) indices `among`."""
    target = math.log(theta)
    i = bisect.bisect_left(grid.log_thetas, target)
    if i == len(grid.thetas) or (
        i > 0 and target - grid.log_thetas[i - 1] < grid.log_thetas[i] - target
    ):
        i -= 1
    if among is not None:
        i = max(min(among), min(max(among), i))
    return i


class RateAbove:
    """An e-process against H0: an arm's event rate <= `limit` (an absolute guardrail).

    Each request is a Bernoulli trial; the alternatives are a few multiples of the limit,
    weighted alike. The counts are sufficient, so it needs no state of its own."""

    def __init__(self, limit: float, multiples: Sequence[float] = (1.25, 1.5, 2, 3, 5, 8, 13)):
        self.limit = limit
        self.alternatives = tuple(limit * m for m in multiples if 0 < limit * m < 1)
        self.log_weight = -math.log(len(self.alternatives)) if self.alternatives else 0.0

    def log_e(self, events: int, requests: int) -> float:
        return self.mixed(self.log_lrs(events, requests), any_event=events > 0)

    def log_lrs(self, events: int, requests: int) -> list[float]:
        """Each alternative's log likelihood ratio against the limit (0 < limit < 1)."""
        stay = requests - events
        return [
            events * math.log(a / self.limit) + stay * math.log((1.0 - a) / (1.0 - self.limit))
            for a in self.alternatives
        ]

    def mixed(self, log_lrs: Sequence[float], *, any_event: bool) -> float:
        """The e-value of the alternatives' ratios, weighted alike."""
        if self.limit <= 0:
            return math.inf if any_event else 0.0  # any event breaks a zero limit
        if not self.alternatives:
            return 0.0  # a limit of 1 cannot be broken
        return log_sum_exp([self.log_weight + x for x in log_lrs])


class RateAboveProcess:
    """`RateAbove` one interval at a time, each interval's likelihood ratios tempered by
    its weight (a cluster of errors counts as one; see `Dispersion`). With every weight
    1 it is `RateAbove` of the totals."""

    def __init__(self, rail: RateAbove) -> None:
        self.rail = rail
        self.log_lr = [0.0] * len(rail.alternatives)
        self.any_event = False

    def update(self, events: int, requests: int, weight: float = 1.0) -> None:
        self.any_event = self.any_event or events > 0
        if not 0 < self.rail.limit < 1:
            return
        self.log_lr = [
            total + weight * step
            for total, step in zip(self.log_lr, self.rail.log_lrs(events, requests), strict=True)
        ]

    def log_e(self) -> float:
        return self.rail.mixed(self.log_lr, any_event=self.any_event)


RATE_BELOW_MULTIPLES = (0.0, 0.1, 0.3, 0.6)  # alternatives, in multiples of the tolerance
RATE_BELOW_WEIGHTS = (0.7, 0.1, 0.1, 0.1)  # most canaries that barely err do not err at all


class RateBelow:
    """An e-process against H0: an arm's event rate >= `tolerance` (the canary's own rate,
    whatever the old version's). Each request is a Bernoulli trial; (tempered) counts are
    sufficient. Most weight sits on a rate of 0: with no events, n requests give
    0.7 (1 - tolerance)^-n, the test of a quiet canary."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.alternatives = tuple(tolerance * m for m in RATE_BELOW_MULTIPLES)
        self.log_weights = tuple(math.log(w) for w in RATE_BELOW_WEIGHTS)

    def log_e(self, events: float, requests: float) -> float:
        stay = max(requests - events, 0.0)
        null = self.tolerance
        terms = []
        for weight, rate in zip(self.log_weights, self.alternatives, strict=True):
            if rate == 0.0:
                if events > 0:
                    continue  # an event rules out a rate of zero
                terms.append(weight - stay * math.log1p(-null))
                continue
            log_lr = events * math.log(rate / null) + stay * (math.log1p(-rate) - math.log1p(-null))
            terms.append(weight + log_lr)
        return log_sum_exp(terms)


def hidden_rate(events: float, requests: float, level: float) -> float | None:
    """The upper confidence bound on an arm's event rate at `level`: the smallest rate,
    on a grid about 10 % apart from 1e-5 to 0.5, that `RateBelow` rejects; None if none."""
    rates = [1e-5 * GRID_RATIO**i for i in range(round(math.log(5e4) / math.log(GRID_RATIO)) + 1)]
    cut = math.log(1.0 / level)
    rejected = _leading(
        lambda j: RateBelow(rates[-1 - j]).log_e(events, requests) >= cut, len(rates)
    )
    return rates[len(rates) - rejected] if rejected else None


# --- Proportions: each denominator event a trial, each numerator event a success -------

PROPORTION_PRIOR = (0.5, 0.5)  # Beta(1/2, 1/2), Jeffreys': no rate favoured at the ends


def proportion_log_e(successes: int, trials: int, p0: float) -> float:
    """The beta-binomial mixture martingale against H0: the success rate is `p0` (Robbins
    1970). The mixture of every rate's likelihood ratio under a Beta prior has the closed
    form B(a + s, b + f) / B(a, b) / (p0^s (1 - p0)^f); it is a nonnegative martingale
    under H0 whatever the stopping time, so by Ville's inequality it exceeds 1/level with
    probability at most level, however often it is looked at."""
    a, b = PROPORTION_PRIOR
    failures = trials - successes
    if (successes and p0 <= 0.0) or (failures and p0 >= 1.0):
        return math.inf
    mixed = _log_beta(a + successes, b + failures) - _log_beta(a, b)
    null = (successes * math.log(p0) if successes else 0.0) + (
        failures * math.log1p(-p0) if failures else 0.0
    )
    return mixed - null


def _log_beta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def proportion_interval(successes: int, trials: int, level: float) -> Interval:
    """A confidence sequence for a success rate: the rates `proportion_log_e` does not
    reject at `level`. The e-value is convex in the rate's log-likelihood, lowest at
    successes / trials, so the kept rates are an interval around it, found by bisection."""
    if trials <= 0:
        return Interval(0.0, 1.0)
    cut = math.log(1.0 / level)
    centre = successes / trials

    def edge(inside: float, outside: float) -> float:
        for _ in range(60):  # to ~1e-18: far below any figure shown
            middle = (inside + outside) / 2.0
            if proportion_log_e(successes, trials, middle) < cut:
                inside = middle
            else:
                outside = middle
        return inside

    low = 0.0 if proportion_log_e(successes, trials, 0.0) < cut else edge(centre, 0.0)
    high = 1.0 if proportion_log_e(successes, trials, 1.0) < cut else edge(centre, 1.0)
    return Interval(low, high)


@dataclass(frozen=True)
class Comparison:
    """Two success rates compared, each side's confidence sequence at level / 2, so by
    the union bound the ratio's and the difference's hold together at `level`."""

    arm: Interval
    reference: Interval
    ratio: Interval  # arm / reference; high None while the reference may be 0
    difference: Interval  # arm - reference (high never None)


def compare_proportions(
    arm: tuple[int, int], reference: tuple[int, int], level: float
) -> Comparison:
    """(successes, trials) of an arm and of its reference."""
    mine = proportion_interval(*arm, level / 2.0)
    theirs = proportion_interval(*reference, level / 2.0)
    assert mine.high is not None and theirs.high is not None
    low = mine.low / theirs.high if theirs.high > 0 else 0.0
    high = mine.high / theirs.low if theirs.low > 0 else None
    return Comparison(
        mine,
        theirs,
        Interval(low, high),
        Interval(mine.low - theirs.high, mine.high - theirs.low),
    )
