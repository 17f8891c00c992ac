"""The judge: every interval, roll back, promote, or keep watching, with the evidence.

    guardrails: a breach ─────────────────────────────────────────────► ROLLBACK
    per kind of event (errors, slow requests), canary against the old version:
      the pooled reference (baseline + stable), the baseline agreeing ─► ROLLBACK
      once the baseline parts from stable: the baseline alone ─────────► ROLLBACK
      every kind below min_effect, after min_duration ─────────────────► PROMOTE
    max_duration passed ──────────────────────────────────────────────► INCONCLUSIVE
    otherwise ───────────────── CONTINUE, with the events and requests still needed

Every interval's evidence is tempered by the size of the clusters its events may come in
(`dispersion`), so a retry burst counts as one event. The statistics live in `eprocess`;
docs/analysis.md explains the design and its budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from conveyor.analysis.dispersion import Dispersion
from conveyor.analysis.eprocess import (
    Attribution,
    Grid,
    Prior,
    RateAbove,
    RateAboveProcess,
    RateBelow,
    confidence_sequence,
    events_to_reach,
    grid_for,
    hidden_rate,
    hidden_ratio,
    nearest,
    no_harm_mixture,
    regression_mixture,
    tolerance_index,
    two_sided_mixture,
)
from conveyor.analysis.model import Counts, Decision, Observation, Verdict
from conveyor.analysis.runs import Run, RunFilter
from conveyor.spec.strategy import Analysis

GUARDRAIL_SHARE = 0.05  # of alpha: the sequential error-rate guardrail
# The rest of alpha, per kind. Slow events (over the old version's p95: ~5 % of requests)
# outnumber errors wherever the error guardrail holds, so latency evidence is cheaper.
KIND_SHARES = {"errors": 0.75, "latency": 0.25, "log_errors": 0.25}
DRIFT_LEVEL = 0.01  # baseline against stable: a difference this unlikely stops the pooling
# The absolute route to a promotion closes while the canary has more events than the
# tolerated ratio of the old version's rate explains, plus this many: where the ratio is
# knowable, a canary that leans to harm is held to it. A gate only removes promotions.
GATE_SLACK = 1.0


@dataclass(frozen=True)
class Tolerance:
    """The largest regression of one kind a promoted canary may still be hiding."""

    ratio: float  # to the old version's rate
    rate: float  # of the canary's requests


class Reference(StrEnum):
    """What the canary is compared with."""

    POOLED = "pooled"  # baseline + stable, the baseline guarding against bias
    BASELINE = "baseline"  # the baseline alone: robust to warm-up, slower (Kayenta's way)


class Kind(StrEnum):
    ERRORS = "errors"
    LATENCY = "latency"  # requests slower than the latency threshold
    # Error-level log lines, at most one per request (the tests count events per request):
    # a release that answers 200 while it logs exceptions. Only with `log_errors: true`.
    LOG_ERRORS = "log_errors"

    def events(self, counts: Counts) -> int:
        if self is Kind.LOG_ERRORS:
            return min(counts.log_errors, counts.requests)
        return counts.errors if self is Kind.ERRORS else counts.slow

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Kind.ERRORS: "errors",
    Kind.LATENCY: "slow requests",
    Kind.LOG_ERRORS: "error log lines",
}


def split_alpha(alpha: float, kinds: list[Kind], *, guardrail: bool) -> dict[str, float]:
    """Bonferroni: the levels of the routes to a rollback add up to alpha."""
    levels = {"guardrail": alpha * GUARDRAIL_SHARE if guardrail else 0.0}
    shares = {kind: KIND_SHARES[kind.value] for kind in kinds}
    rest = alpha - levels["guardrail"]
    for kind, share in shares.items():
        levels[kind.value] = rest * share / sum(shares.values())
    return levels


@dataclass(frozen=True)
class Need:
    """What one kind of event still needs for the decision its data leans to."""

    kind: Kind
    verdict: Verdict  # PROMOTE or ROLLBACK
    events: int | None  # None: at the present effect the evidence does not grow
    requests: int | None  # service-wide requests (all arms) that many events take

    @property
    def sort_key(self) -> float:
        return math.inf if self.requests is None else float(self.requests)

    def describe(self) -> str:
        towards = "roll back" if self.verdict is Verdict.ROLLBACK else "promote"
        if self.events is None or self.requests is None:
            return f"{self.kind.label}: the evidence does not grow at the present effect"
        if self.events == 0:
            return (
                f"{self.kind.label}: none in the canary yet; ~{self.requests} more requests to "
                f"{towards}"
            )
        more = f"~{self.events} more events (~{self.requests} requests)"
        return f"{self.kind.label}: {more} to {towards}"


@dataclass(frozen=True)
class _Held:
    """One interval's canary events, left out of the rollback tests."""

    events: int
    canary_requests: int
    references: int  # baseline + stable requests
    baseline: int  # baseline requests
    weight: float | None  # the interval's own tempering weight, if it has one


@dataclass
class _Scores:
    """Log e-values, refreshed when an attribution changes."""

    rollback_pooled: float = 0.0
    rollback_paired: float = 0.0
    promote_pooled: float = 0.0  # the ratio route: theta below the tolerated ratio
    promote_paired: float = 0.0
    drift: float = 0.0
    versions: tuple[int, ...] = ()


class KindTests:
    """One kind of event: the canary against the pooled old version and against the
    baseline alone, and the baseline against stable (the pooling's bias guard)."""

    def __init__(
        self,
        kind: Kind,
        grid: Grid,
        *,
        level: float,
        beta: float,
        prior: Prior,
        reference: Reference,
        drift_level: float,
        tolerance: Tolerance,
        clustered: bool = True,
        runs: bool = True,
    ) -> None:
        self.kind = kind
        self.tolerance = tolerance
        # Events may come in clusters: each interval's evidence is tempered by the
        # largest cluster it may hold, estimated from all arms' events together.
        self.dispersion = Dispersion() if clustered else None
        self.pooled = Attribution(grid)  # canary | baseline + stable
        self.paired = Attribution(grid)  # canary | baseline
        self.drift = Attribution(grid)  # baseline | stable
        # Runs of canary errors (a broken session) are held out of the rollback tests,
        # for a bounded time: their likelihood ratios are the ones above minus these
        # (runs.py). Errors only: a latency regression slows every request.
        held_out = clustered and runs and kind is Kind.ERRORS
        self.runs = RunFilter() if held_out else None
        self.pooled_left_out = Attribution(grid)
        self.paired_left_out = Attribution(grid)
        self.held: list[_Held] = []  # the present run's canary events, held out for now
        self.regression = regression_mixture(grid, prior)
        self.no_harm = no_harm_mixture(grid, tolerance_index(grid, tolerance.ratio))
        self.rate_below = RateBelow(tolerance.rate)
        # The canary's own events and requests, intervals without a weight of their own
        # kept raw (tempered as the cluster size now is), the others already tempered.
        self.canary_raw = [0.0, 0.0]
        self.canary_fixed = [0.0, 0.0]
        self.two_sided = two_sided_mixture(grid)
        # Two routes share `level`: the pooled one, and after a drift flag (probability
        # <= drift_level under H0) the baseline alone, from then on: level (1 + drift) in all.
        pooled = reference is Reference.POOLED
        self.level = level / (1.0 + drift_level) if pooled else level
        self.log_rollback = math.log(1.0 / self.level)
        self.log_promote = math.log(1.0 / beta)
        self.beta = beta
        self.log_drift = math.log(1.0 / drift_level)
        # The paired state when the judge switched to the baseline alone: from the start
        # with Reference.BASELINE, else when the drift is flagged (sticky). Kept raw, so
        # the growth since then is tempered as the cluster size is now.
        start = (self.paired.snapshot(), self.paired_left_out.snapshot())
        self.switched_at = start if reference is Reference.BASELINE else None
        self.scores = _Scores()
        self._evidence: tuple[tuple[object, ...], dict[str, Any]] = ((), {})
        self._attributions = (self.pooled, self.paired, self.drift) + (
            (self.pooled_left_out, self.paired_left_out) if held_out else ()
        )
        self._rate_log_e_of: tuple[tuple[float, float], float] = ((-1.0, -1.0), 0.0)
        self._rate_bound: tuple[tuple[float, int], float | None] = ((-1.0, -1), None)

    def update(self, canary: Counts, baseline: Counts, stable: Counts) -> None:
        c, b, s = self.kind.events(canary), self.kind.events(baseline), self.kind.events(stable)
        weight = None
        if self.dispersion is not None:
            requests = canary.requests + baseline.requests + stable.requests
            weight = self.dispersion.update(c + b + s, requests)
            for attribution in self._attributions:
                attribution.temper(self.dispersion.clusters)
        references = baseline.requests + stable.requests
        self.pooled.update(c, canary.requests, b + s, references, weight)
        self.paired.update(c, canary.requests, b, baseline.requests, weight)
        self.drift.update(b, baseline.requests, s, stable.requests, weight)
        if self.runs is not None:
            run = self.runs.classify(c, canary.requests, b + s, references)
            self._hold_runs(run, _Held(c, canary.requests, references, baseline.requests, weight))
        if weight is None:
            self.canary_raw = [self.canary_raw[0] + c, self.canary_raw[1] + canary.requests]
        else:
            fixed = self.canary_fixed
            self.canary_fixed = [fixed[0] + weight * c, fixed[1] + weight * canary.requests]
        versions = tuple(a.version for a in self._attributions)
        if versions == self.scores.versions:
            return
        self.scores = _Scores(
            self.regression.log_e_of(_minus(self.pooled.log_lr, self.pooled_left_out.log_lr)),
            self.regression.log_e_of(_minus(self.paired.log_lr, self.paired_left_out.log_lr)),
            self.no_harm.log_e(self.pooled),
            self.no_harm.log_e(self.paired),
            self.two_sided.log_e(self.drift),
            versions,
        )
        if self.switched_at is None and self.scores.drift >= self.log_drift:
            self.switched_at = (self.paired.snapshot(), self.paired_left_out.snapshot())

    def _hold_runs(self, run: Run, held: _Held) -> None:
        """Hold this interval's canary events out, count the run's held ones again, or
        keep them out for good (the run was a session)."""
        if run is Run.HOLD:
            self._leave_out(held)
            self.held.append(held)
        if run is Run.RELEASE:  # no session: count its events again
            for earlier in self.held:
                self._leave_out(earlier, -1)
        if run is Run.RELEASE or run is Run.SETTLE:
            self.held = []

    def _leave_out(self, held: _Held, sign: int = 1) -> None:
        """Leave the canary events out of the rollback tests (sign -1: count them again).
        These likelihood ratios get only the left-out canary events, no reference events."""
        events, weight = sign * held.events, held.weight
        self.pooled_left_out.update(events, held.canary_requests, 0, held.references, weight)
        self.paired_left_out.update(events, held.canary_requests, 0, held.baseline, weight)

    @property
    def cluster_size(self) -> float:
        return self.dispersion.factor if self.dispersion is not None else 1.0

    @property
    def weight(self) -> float:
        """The last interval's weight: 1 / its cluster size."""
        return 1.0 / self.cluster_size

    @property
    def baseline_only(self) -> bool:
        return self.switched_at is not None

    def _rollback_log_e(self) -> float:
        """The live rollback route: pooled, or the baseline's growth since the drift."""
        if self.switched_at is None:
            return self.scores.rollback_pooled
        paired, left_out = self.switched_at
        at_switch = self.regression.log_e_of(
            _minus(self.paired.tempered(paired), self.paired_left_out.tempered(left_out))
        )
        return self.scores.rollback_paired - at_switch

    def baseline_agrees(self) -> bool:
        """The baseline bears the pooled evidence out: the canary-against-baseline
        likelihood ratio at the pooled effect is at least 1, and the baseline-against-stable
        e-value at most 1 (no hint of a bias). Vacuous without a baseline."""
        paired, grid = self.paired, self.paired.grid
        if paired.reference_requests == 0:
            return True
        ratio = self.pooled.rate_ratio() or grid.thetas[-1]
        point = nearest(grid, ratio)
        return ratio > 1.0 and paired.log_lr[point] >= 0.0 and self.scores.drift <= 0.0

    def rollback_reason(self) -> str | None:
        log_e = self._rollback_log_e()
        if log_e < self.log_rollback:
            return None
        evidence = f"e-value {_e(log_e):.3g} >= {1.0 / self.level:.3g}"
        if self.baseline_only:
            return f"{self.kind.label}: {_compare(self.paired, 'the baseline')}, {evidence}"
        if not self.baseline_agrees():
            return None  # the pooled evidence may be the stable arm's: wait for the baseline
        compared = _compare(self.pooled, "the old version (baseline + stable)")
        return f"{self.kind.label}: {compared}, {evidence}; the baseline agrees"

    def _ratio_log_e(self) -> float:
        return self.scores.promote_paired if self.baseline_only else self.scores.promote_pooled

    def canary_counts(self) -> tuple[float, float]:
        """The canary's events and requests, tempered as the evidence is."""
        inverse = 1.0 / (self.dispersion.clusters if self.dispersion is not None else 1.0)
        raw, fixed = self.canary_raw, self.canary_fixed
        return raw[0] * inverse + fixed[0], raw[1] * inverse + fixed[1]

    def _rate_log_e(self) -> float:
        """The absolute route: the canary's own rate below the tolerated rate; closed
        while the canary leans to harm."""
        if not self._rate_gate_open():
            return -math.inf
        counts = self.canary_counts()
        if self._rate_log_e_of[0] != counts:  # asked several times an interval
            self._rate_log_e_of = (counts, self.rate_below.log_e(*counts))
        return self._rate_log_e_of[1]

    def _rate_gate_open(self) -> bool:
        attribution = self.paired if self.baseline_only else self.pooled
        if attribution.reference_requests == 0:
            return attribution.canary_events == 0
        reference_rate = attribution.reference_events / attribution.reference_requests
        explained = self.tolerance.ratio * reference_rate * attribution.canary_requests
        return attribution.canary_events <= explained + GATE_SLACK

    def _promote_log_e(self) -> float:
        """Either route may promote: their mean is an e-value against "the canary is both
        over the tolerated ratio and over the tolerated rate"."""
        ratio, rate = self._ratio_log_e(), self._rate_log_e()
        top = max(ratio, rate)
        return top + math.log((math.exp(ratio - top) + math.exp(rate - top)) / 2.0)

    def promotion_ready(self) -> bool:
        return self._promote_log_e() >= self.log_promote

    def routes(self) -> list[str]:
        """What a promotion now guarantees: one phrase per route whose e-value alone
        clears 1/beta (each is an e-process of its own), else the two together."""
        label, tolerance = self.kind.label, self.tolerance
        ratio = f"a >={tolerance.ratio:g}x regression in {label}"
        rate = f"{label} on >={_percent(tolerance.rate)} of the canary's requests"
        passed = [
            phrase
            for phrase, log_e in ((ratio, self._ratio_log_e()), (rate, self._rate_log_e()))
            if log_e >= self.log_promote
        ]
        return passed or [
            f"{label} both >={tolerance.ratio:g}x the old version's and on "
            f">={_percent(tolerance.rate)} of the canary's requests"
        ]

    def promotion_reason(self) -> str:
        return " or ".join(self.routes())

    def need(self, service_requests: int) -> Need:
        """Events (and service-wide requests) to the decision the data leans to."""
        attribution = self.paired if self.baseline_only else self.pooled
        quiet = self._quiet_need(attribution, service_requests)
        if attribution.events == 0 and quiet is not None:
            return quiet
        grid = attribution.grid
        min_effect = grid.thetas[grid.min_effect]
        ratio = attribution.rate_ratio()
        harmful = attribution.canary_events > 0 if ratio is None else ratio >= min_effect**0.5
        share = attribution.canary_share
        if harmful:
            truth = min(max(ratio or min_effect, min_effect), grid.thetas[-1])
            point = grid.thetas[nearest(grid, truth, self.regression.indices)]
            missing = self.log_rollback - self._rollback_log_e()
            verdict, events = Verdict.ROLLBACK, events_to_reach(share, truth, point, 1.0, missing)
        else:
            tolerated = grid.thetas[self.no_harm.null]
            missing = self.log_promote + math.log(2.0) - self._ratio_log_e()
            verdict, events = Verdict.PROMOTE, events_to_reach(share, 1.0, 1.0, tolerated, missing)
        if events < 0:
            return quiet or Need(self.kind, verdict, None, None)
        events = math.ceil(events * self.cluster_size)  # a cluster counts as one event
        per_request = (attribution.events + 1) / (service_requests + 1)
        need = Need(self.kind, verdict, events, math.ceil(events / per_request))
        if verdict is Verdict.PROMOTE and quiet is not None and quiet.sort_key < need.sort_key:
            return quiet
        return need

    def _quiet_need(self, attribution: Attribution, service_requests: int) -> Need | None:
        """While the canary has no events: the requests the absolute route still needs."""
        if self.canary_counts()[0] > 0:
            return None
        missing = max(self.log_promote + math.log(2.0) - self._rate_log_e(), 0.0)
        short = min(missing, 1e6) / -math.log1p(-self.tolerance.rate) * self.cluster_size
        canary_part = max(attribution.canary_requests, 1) / max(service_requests, 1)
        return Need(self.kind, Verdict.PROMOTE, 0, math.ceil(short / canary_part))

    def evidence(self) -> dict[str, Any]:
        """What a report shows; rebuilt only when the events changed."""
        key = (*self.scores.versions, self.baseline_only)
        if self._evidence[0] != key:
            self._evidence = (key, self._build_evidence())
        # The absolute route's figures move with every request, not only with events.
        return {
            **self._evidence[1],
            "e_promote": _e(self._promote_log_e()),
            "e_promote_rate": _e(self._rate_log_e()),
            "hidden": {**self._evidence[1]["hidden"], "rate": self._hidden_rate()},
        }

    def _hidden_rate(self) -> float | None:
        """The bound on the canary's own rate, refreshed when its (tempered) requests
        grew by 2 % or its events changed: it moves slowly, and costs a bisection."""
        events, requests = self.canary_counts()
        key = (events, math.floor(math.log1p(requests) / math.log(1.02)))
        if self._rate_bound[0] != key:
            self._rate_bound = (key, hidden_rate(events, requests, self.beta))
        return self._rate_bound[1]

    def _hidden(self) -> dict[str, Any]:
        """The largest regression the canary may still be hiding, each bound at beta: its
        rate ratio to the old version, and its own rate; null while unbounded."""
        attribution = self.paired if self.baseline_only else self.pooled
        return {
            "level": self.beta,
            "ratio": hidden_ratio(attribution, self.beta),
            "tolerated_ratio": self.tolerance.ratio,
            "tolerated_rate": self.tolerance.rate,
        }

    def _build_evidence(self) -> dict[str, Any]:
        scores = self.scores
        attribution = self.paired if self.baseline_only else self.pooled
        interval = confidence_sequence(attribution, self.regression, self.level)
        return {
            "reference": "baseline" if self.baseline_only else "baseline+stable",
            "e_rollback": _e(self._rollback_log_e()),
            "e_rollback_pooled": _e(scores.rollback_pooled),
            "e_rollback_baseline": _e(scores.rollback_paired),
            "e_promote_ratio": _e(self._ratio_log_e()),
            "hidden": self._hidden(),
            "e_drift": _e(scores.drift),
            "thresholds": {
                "rollback": 1.0 / self.level,
                "promote": math.exp(self.log_promote),
                "drift": math.exp(self.log_drift),
            },
            "drift_flagged": self.scores.drift >= self.log_drift,
            "cluster_size": self.cluster_size,
            "baseline_agrees": self.baseline_agrees(),
            "rate_ratio": self.pooled.rate_ratio(),
            "rate_ratio_baseline": self.paired.rate_ratio(),
            "baseline_over_stable": self.drift.rate_ratio(),
            "confidence_sequence": {
                "level": self.level,
                "low": interval.low,
                "high": interval.high,
            },
        }


class Judge:
    """Sequential canary analysis over `Observation`s; one judge per analysis step."""

    def __init__(
        self,
        settings: Analysis,
        *,
        latency_enabled: bool = True,
        prior: Prior = Prior.FOCUSED,
        reference: Reference = Reference.POOLED,
        drift_level: float = DRIFT_LEVEL,
        clustered: bool = True,
        runs: bool = True,
    ) -> None:
        self.settings = settings
        rule, (error_rate, slow_rate) = settings.promote_when, settings.hidden_rates()
        tolerances = {
            Kind.ERRORS: Tolerance(rule.max_hidden_error_ratio, error_rate),
            Kind.LATENCY: Tolerance(rule.max_hidden_slow_ratio, slow_rate),
            Kind.LOG_ERRORS: Tolerance(rule.max_hidden_error_ratio, error_rate),
        }
        kinds = [Kind.ERRORS, Kind.LATENCY] if latency_enabled else [Kind.ERRORS]
        if settings.log_errors:
            kinds.append(Kind.LOG_ERRORS)
        limit = settings.guardrails.error_rate
        self.levels = split_alpha(settings.alpha, kinds, guardrail=limit is not None)
        # Tempered like the error tests: a cluster of errors in the canary counts as one.
        self.error_rail = RateAboveProcess(RateAbove(limit)) if limit is not None else None
        grid = grid_for(settings.min_effect)
        self.tests = [
            KindTests(
                kind,
                grid,
                level=self.levels[kind.value],
                beta=settings.beta,
                prior=prior,
                reference=reference,
                drift_level=drift_level,
                tolerance=tolerances[kind],
                clustered=clustered,
                runs=runs,
            )
            for kind in kinds
        ]
        self.totals = {"canary": Counts(), "baseline": Counts(), "stable": Counts()}

    def observe(self, obs: Observation) -> Decision:
        arms = {"canary": obs.canary, "baseline": obs.baseline, "stable": obs.stable}
        self.totals = {name: _add(self.totals[name], counts) for name, counts in arms.items()}
        for tests in self.tests:
            tests.update(obs.canary, obs.baseline, obs.stable)
        if self.error_rail is not None:
            self.error_rail.update(obs.canary.errors, obs.canary.requests, self.tests[0].weight)
        evidence = self._evidence()
        breach = self._guardrail_breach(obs)
        if breach is not None:
            return Decision(Verdict.ROLLBACK, breach, obs.elapsed, evidence)
        for tests in self.tests:
            harm = tests.rollback_reason()
            if harm is not None:
                return Decision(Verdict.ROLLBACK, harm, obs.elapsed, evidence)
        settings = self.settings
        no_harm = all(t.promotion_ready() for t in self.tests)
        if no_harm and obs.elapsed >= settings.min_duration:
            return Decision(Verdict.PROMOTE, self.guarantee(obs.elapsed), obs.elapsed, evidence)
        if no_harm:
            reason = f"no harm so far; no promotion before {settings.min_duration:g} s"
            return Decision(Verdict.CONTINUE, reason, obs.elapsed, evidence, 0, 0)
        need = self._need()
        verdict, reason = Verdict.CONTINUE, need.describe()
        if obs.elapsed >= settings.max_duration:
            verdict = Verdict.INCONCLUSIVE
            reason = f"no decision within {settings.max_duration:g} s; {reason}"
        return Decision(verdict, reason, obs.elapsed, evidence, need.events, need.requests)

    def guarantee(self, elapsed: float) -> str:
        """What a promotion now means, in words: the regressions that would have been
        caught, at the traffic seen, over the time judged."""
        hidden = ", and ".join(t.promotion_reason() for t in self.tests)
        service = sum(counts.requests for counts in self.totals.values())
        rate = service / elapsed if elapsed > 0 else 0.0
        return (
            f"{hidden} would have been caught with {1.0 - self.settings.beta:.0%} probability, "
            f"at {rate:.3g} req/s over {describe_seconds(elapsed)}"
        )

    def _guardrail_breach(self, obs: Observation) -> str | None:
        rails, canary = self.settings.guardrails, self.totals["canary"]
        if self.error_rail is not None and canary.requests >= rails.min_requests:
            log_e = self.error_rail.log_e()
            if log_e >= math.log(1.0 / self.levels["guardrail"]):
                return (
                    f"guardrail error_rate: canary errors {canary.errors / canary.requests:.2%}"
                    f" of {canary.requests} requests, over the {self.error_rail.rail.limit:.2%} "
                    f"limit (e-value {_e(log_e):.3g})"
                )
        now = obs.canary_absolute
        if rails.p99 is not None and now.p99 is not None and now.p99 > rails.p99:
            return f"guardrail p99: canary p99 {now.p99:.3g} s over {rails.p99:g} s"
        cpu = now.cpu_percent
        if rails.cpu_percent is not None and cpu is not None and cpu > rails.cpu_percent:
            return f"guardrail cpu_percent: canary {cpu:.1f} % over {rails.cpu_percent:g} %"
        memory = now.memory_bytes
        if rails.memory_bytes is not None and memory is not None and memory > rails.memory_bytes:
            return f"guardrail memory_bytes: canary {memory} bytes over {rails.memory_bytes}"
        return None

    def _need(self) -> Need:
        service = sum(counts.requests for counts in self.totals.values())
        needs = [t.need(service) for t in self.tests if not t.promotion_ready()]
        toward_rollback = [n for n in needs if n.verdict is Verdict.ROLLBACK]
        if toward_rollback:  # one harmful kind is enough: the nearest decides
            return min(toward_rollback, key=lambda n: n.sort_key)
        return max(needs, key=lambda n: n.sort_key)  # promotion needs every kind

    def _evidence(self) -> Mapping[str, Any]:
        canary = self.totals["canary"]
        evidence: dict[str, Any] = {
            "alpha": self.settings.alpha,
            "beta": self.settings.beta,
            "min_effect": self.settings.min_effect,
            "levels": dict(self.levels),
            "counts": {
                name: _as_dict(counts, logs=self.settings.log_errors)
                for name, counts in self.totals.items()
            },
        }
        for tests in self.tests:
            evidence[tests.kind.value] = tests.evidence()
        if self.error_rail is not None and canary.requests:
            log_e = self.error_rail.log_e()
            evidence["guardrail_error_rate"] = {
                "limit": self.error_rail.rail.limit,
                "canary": canary.errors / canary.requests,
                "e_value": _e(log_e),
            }
        return evidence


def _minus(lr: list[float], left_out: list[float]) -> list[float]:
    return [x - y for x, y in zip(lr, left_out, strict=True)]


def _add(total: Counts, more: Counts) -> Counts:
    return Counts(
        total.requests + more.requests,
        total.errors + more.errors,
        total.slow + more.slow,
        total.log_errors + more.log_errors,
    )


def _as_dict(counts: Counts, *, logs: bool = False) -> dict[str, int]:
    shown = {"requests": counts.requests, "errors": counts.errors, "slow": counts.slow}
    return {**shown, "log_errors": counts.log_errors} if logs else shown


def _compare(attribution: Attribution, reference: str) -> str:
    ratio = attribution.rate_ratio()
    if ratio is None:
        return f"canary {attribution.canary_events}, {reference} none"
    return f"canary at {ratio:.2f}x the rate of {reference}"


def _percent(share: float) -> str:
    return f"{share * 100:.3g}%"


def describe_seconds(seconds: float) -> str:
    """4m10s, 45s, 1h02m."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _e(log_e: float) -> float:
    """An e-value for the record: finite, so it serialises as JSON."""
    return math.exp(min(log_e, 700.0))
