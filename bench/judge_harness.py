"""The canary judge against its peers on synthetic request streams, at full speed.

Each scenario (a service's rate, error rate, latency, a 10 % canary and a 10 % baseline,
an injected effect) runs `--runs` times; every judge sees the very same streams (common
seeds). Per judge: median and p90 time to detect (a rollback; a run without one counts as
never, so a p90 needs 90 % detected), the share of runs detected within the maximum
duration (30 min), the share promoted, and the median's ratio to the oracle's. The
no-regression scenarios report the false-rollback rate with its 95 % interval; the
conveyor judge runs them at least `--null-runs` times.

The clustered scenarios draw errors in clusters (retry bursts, broken sessions, batch
jobs, a bad upstream connection, a gamma-distributed per-second rate), with and without
a 2x regression. "conveyor, unclustered" is the judge that counts every error as an
independent draw (the judge before issue 12), on the same streams. "conveyor, runs
counted" is the judge that counts runs of canary errors (a broken session) in its
rollback tests (`Judge(runs=False)`). The short-step scenarios (2 min) are regressions a
held-out run could hide: +200 ms on every canary request, 10x and 100 % errors, with
and without broken sessions; every one must be rolled back within the step.

    .venv/bin/python bench/judge_harness.py --runs 500 --seed 1
    .venv/bin/python bench/judge_harness.py --runs 500 --only 2x --prior log-uniform
    .venv/bin/python bench/judge_harness.py --runs 200 --null-runs 1000 --only clustered
    .venv/bin/python bench/judge_harness.py --runs 40 --null-runs 40 --only "20 req/s" --no-peers
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.table import Table

from common import Figure, console, header, print_figures
from conveyor.analysis.eprocess import Prior
from conveyor.analysis.judge import Judge, Reference
from conveyor.analysis.model import Verdict
from conveyor.analysis.reference_judges import FlaggerThreshold, KayentaMannWhitney, OracleSPRT
from conveyor.analysis.simulation import Clustering, Outcome, Scenario, SequentialJudge, run
from conveyor.spec.strategy import Analysis

MAX_SECONDS = 1800.0
CLUSTERED_MAX_SECONDS = 900.0  # the spec's default max_duration: keeps the runs affordable
FALSE_ROLLBACK_RUNS = 500
MEDIAN_GOAL, P90_GOAL, FALSE_ROLLBACK_GOAL = 3.0, 6.0, 0.01  # minutes, minutes, share
ALPHA = 0.01


@dataclass(frozen=True)
class Case:
    scenario: Scenario
    regression: bool
    goals: bool = False  # the scenario the goals are stated for
    min_runs: int = 0
    peers: bool = True  # flagger, kayenta and the baseline-alone judge run it too
    max_seconds: float = MAX_SECONDS


CASES = (
    Case(Scenario("100 req/s, 1% errors, 2x errors", 100, 0.01, error_multiplier=2.0), True, True),
    Case(Scenario("1000 req/s, 0.1% errors, 5x errors", 1000, 0.001, error_multiplier=5.0), True),
    Case(Scenario("100 req/s, 1% errors, +20% latency", 100, 0.01, latency_multiplier=1.2), True),
    Case(Scenario("1 req/s, 1% errors, 2x errors", 1, 0.01, error_multiplier=2.0), True),
    Case(Scenario("1 req/s, 1% errors, 5x errors", 1, 0.01, error_multiplier=5.0), True),
    Case(
        Scenario("100 req/s, 1% errors, no regression", 100, 0.01),
        False,
        goals=True,
        min_runs=FALSE_ROLLBACK_RUNS,
    ),
    Case(
        Scenario(
            "no regression; fresh canary and baseline 1.5x errors throughout",
            100,
            0.01,
            warmup_error_multiplier=1.5,
        ),
        False,
    ),
    Case(
        Scenario(
            "no regression; fresh canary and baseline 5x errors for 2 min",
            100,
            0.01,
            warmup_error_multiplier=5.0,
            warmup_seconds=120.0,
        ),
        False,
    ),
)

# A small team's traffic (issue 14): how soon a harmless canary is promoted, and whether a
# 2x regression still is not. The conveyor judge and the oracle only.
SMALL_TEAM_CASES = (
    Case(Scenario("20 req/s, no errors, no regression", 20, 0.0), False, peers=False),
    Case(Scenario("20 req/s, 0.05% errors, no regression", 20, 0.0005), False, peers=False),
    Case(Scenario("20 req/s, 1% errors, no regression", 20, 0.01), False, peers=False),
    Case(
        Scenario("20 req/s, 1% errors, 2x errors", 20, 0.01, error_multiplier=2.0),
        True,
        peers=False,
    ),
)

# Errors in clusters, 100 req/s, 1 % errors on average in every arm.
CLUSTERINGS = {
    "retry bursts of 3 (a failure and 2 failed retries)": Clustering(size=3),
    "retry bursts of 10": Clustering(size=10),
    "broken sessions, 10 errors over 5 s, half the errors": Clustering(10, 5, 0.5),
    "broken sessions, 20 errors over 20 s, half the errors": Clustering(20, 20, 0.5),
    "batch jobs, 50 errors in 2 s, 30 % of the errors": Clustering(50, 2, 0.3),
    "bad upstream connection, 30 errors in 3 s, 30 %": Clustering(30, 3, 0.3),
    "gamma per-second rate, shape 0.5": Clustering(gamma_shape=0.5),
    "gamma per-second rate, shape 0.1": Clustering(gamma_shape=0.1),
}
CLUSTERED_CASES = tuple(
    Case(
        Scenario(f"clustered, {name}, {effect}", 100, 0.01, error_multiplier=m, clustering=c),
        regression=m > 1.0,
        goals=m == 1.0,
        peers=False,
        max_seconds=CLUSTERED_MAX_SECONDS,
    )
    for name, c in CLUSTERINGS.items()
    for m, effect in ((1.0, "no regression"), (2.0, "2x errors"))
)

# Regressions a held-out run of canary events could hide (issue 12): a short canary step
# (2 min) must still roll them back. A uniform latency regression makes every canary
# second slow, one long run; a severe error regression makes every second err.
SHORT_STEP_SECONDS = 120.0
SESSIONS = CLUSTERINGS["broken sessions, 20 errors over 20 s, half the errors"]
_STEP = "short step, "
_SESSIONS_OF_20 = "broken sessions of 20 s, "
SHORT_STEPS = (
    Scenario(_STEP + "+200 ms on every canary request", 100, 0.01, latency_shift=0.2),
    Scenario(_STEP + "10x errors", 100, 0.01, error_multiplier=10.0),
    Scenario(_STEP + "100% errors", 100, 0.01, error_multiplier=100.0),
    Scenario(
        _STEP + _SESSIONS_OF_20 + "+200 ms on every canary request",
        100,
        0.01,
        latency_shift=0.2,
        clustering=SESSIONS,
    ),
    Scenario(
        _STEP + _SESSIONS_OF_20 + "10x errors",
        100,
        0.01,
        error_multiplier=10.0,
        clustering=SESSIONS,
    ),
    Scenario(
        _STEP + _SESSIONS_OF_20 + "100% errors",
        100,
        0.01,
        error_multiplier=100.0,
        clustering=SESSIONS,
    ),
)
SHORT_STEP_CASES = tuple(
    Case(scenario, regression=True, peers=False, max_seconds=SHORT_STEP_SECONDS)
    for scenario in SHORT_STEPS
)


def judges(
    scenario: Scenario, prior: Prior, *, peers_too: bool = True
) -> dict[str, Callable[[], SequentialJudge]]:
    settings = Analysis(alpha=ALPHA, max_duration=MAX_SECONDS)
    error_effect, slow_effect = scenario.true_effects
    latency = scenario.latency_multiplier != 1.0 or scenario.latency_shift > 0.0
    effect = slow_effect if latency else error_effect
    if effect <= 1.0:  # nothing to know: the oracle tests the smallest harmful effect
        effect = settings.min_effect
    slow_limit = 1.5 * scenario.slow_share()
    ours: dict[str, Callable[[], SequentialJudge]] = {
        "conveyor": lambda: Judge(settings, prior=prior),
        "conveyor, unclustered": lambda: Judge(settings, prior=prior, clustered=False),
        "conveyor, runs counted": lambda: Judge(settings, prior=prior, runs=False),
    }
    peers: dict[str, Callable[[], SequentialJudge]] = {
        "conveyor, baseline alone": lambda: Judge(
            settings, prior=prior, reference=Reference.BASELINE
        ),
        "flagger": lambda: FlaggerThreshold(max_slow_share=slow_limit),
        "kayenta": lambda: KayentaMannWhitney(alpha=ALPHA),
    }
    oracle: dict[str, Callable[[], SequentialJudge]] = {
        "oracle": lambda: OracleSPRT(effect=effect, latency=latency, alpha=ALPHA)
    }
    return ours | (peers if peers_too else {}) | oracle


@dataclass(frozen=True)
class Summary:
    judge: str
    outcomes: Sequence[Outcome]

    def share(self, verdict: Verdict) -> float:
        return sum(o.verdict is verdict for o in self.outcomes) / len(self.outcomes)

    def detection_quantile(self, q: float) -> float:
        """Minutes to a rollback at quantile q; inf when fewer than q of the runs had one."""
        times = sorted(
            o.seconds / 60.0 if o.verdict is Verdict.ROLLBACK else math.inf for o in self.outcomes
        )
        return times[min(len(times) - 1, math.ceil(q * len(times)) - 1)]

    def rollback_interval(self) -> tuple[float, float]:
        """The false-rollback rate's 95 % Clopper-Pearson interval."""
        runs = len(self.outcomes)
        return clopper_pearson(sum(o.verdict is Verdict.ROLLBACK for o in self.outcomes), runs)

    def median_promotion(self) -> float:
        times = sorted(o.seconds / 60.0 for o in self.outcomes if o.verdict is Verdict.PROMOTE)
        return times[len(times) // 2] if times else math.inf


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval, by bisection on the binomial tails."""
    tail = (1.0 - confidence) / 2.0

    def at_most(k: int, p: float) -> float:  # P(X <= k) when the rate is p
        return math.fsum(_binomial(trials, j, p) for j in range(k + 1))

    def solve(holds: Callable[[float], bool]) -> float:  # holds on a prefix of [0, 1]
        lo, hi = 0.0, 1.0
        for _ in range(50):
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if holds(mid) else (lo, mid)
        return lo

    # P(X >= successes) = 1 - P(X < successes) grows with p; P(X <= successes) shrinks.
    low = 0.0 if successes == 0 else solve(lambda p: 1.0 - at_most(successes - 1, p) < tail)
    high = 1.0 if successes == trials else solve(lambda p: at_most(successes, p) > tail)
    return low, high


def _binomial(trials: int, k: int, p: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return float(k == (0 if p <= 0.0 else trials))
    log_choose = math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
    return math.exp(log_choose + k * math.log(p) + (trials - k) * math.log1p(-p))


@dataclass(frozen=True)
class Plan:
    """What to run: the same for every case."""

    runs: int
    null_runs: int
    seed: int
    prior: Prior
    peers: bool = True
    jobs: int = 1


def _judges_of(case: Case, plan: Plan) -> dict[str, Callable[[], SequentialJudge]]:
    return judges(case.scenario, plan.prior, peers_too=case.peers and plan.peers)


def _one_run(task: tuple[Case, Plan, str, int]) -> Outcome:
    case, plan, name, seed = task
    factory = _judges_of(case, plan)[name]  # rebuilt here: lambdas do not pickle
    return run(factory, case.scenario, max_seconds=case.max_seconds, seed=seed)


def simulate(case: Case, plan: Plan) -> list[Summary]:
    counts = {}
    for name in _judges_of(case, plan):
        count = plan.runs
        if name == "conveyor" and not case.regression:
            count = max(count, case.min_runs, plan.null_runs)
        counts[name] = count
    tasks = [(case, plan, name, plan.seed + i) for name, n in counts.items() for i in range(n)]
    if plan.jobs > 1:
        with multiprocessing.get_context("fork").Pool(plan.jobs) as pool:
            outcomes = pool.map(_one_run, tasks, chunksize=8)
    else:
        outcomes = [_one_run(task) for task in tasks]
    summaries, start = [], 0
    for name, count in counts.items():
        summaries.append(Summary(name, outcomes[start : start + count]))
        start += count
    return summaries


def _minutes(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.2f}"


def print_case(case: Case, summaries: Sequence[Summary], seconds: float) -> None:
    runs = len(summaries[0].outcomes)
    console.print(f"[bold]{case.scenario.name}[/] ({runs} runs, {seconds:.0f} s)")
    table = Table(box=None, pad_edge=False)
    oracle = next(s for s in summaries if s.judge == "oracle").detection_quantile(0.5)
    columns = ["judge", "median min", "p90 min", "detected", "promoted", "vs oracle", "undecided"]
    if not case.regression:
        columns = [
            "judge",
            "runs",
            "false rollback",
            "95 % interval",
            "promoted",
            "promotion median min",
            "undecided",
        ]
    for column in columns:
        table.add_column(column, justify="left" if column == "judge" else "right")
    for s in summaries:
        if case.regression:
            median = s.detection_quantile(0.5)
            ratio = median / oracle if math.isfinite(median) and math.isfinite(oracle) else None
            table.add_row(
                s.judge,
                _minutes(median),
                _minutes(s.detection_quantile(0.9)),
                f"{s.share(Verdict.ROLLBACK):.1%}",
                f"{s.share(Verdict.PROMOTE):.1%}",
                f"{ratio:.2f}x" if ratio is not None else "",
                f"{s.share(Verdict.INCONCLUSIVE):.1%}",
            )
        else:
            low, high = s.rollback_interval()
            table.add_row(
                s.judge,
                str(len(s.outcomes)),
                f"{s.share(Verdict.ROLLBACK):.2%}",
                f"{low:.2%} to {high:.2%}",
                f"{s.share(Verdict.PROMOTE):.1%}",
                _minutes(s.median_promotion()),
                f"{s.share(Verdict.INCONCLUSIVE):.1%}",
            )
    console.print(table)
    ours = summaries[0].outcomes
    undecided = [o.reason for o in ours if o.verdict is Verdict.INCONCLUSIVE]
    if undecided:
        console.print(f"[dim]conveyor, undecided at {case.max_seconds / 60:g} min: {undecided[0]}")


def goal_figures(case: Case, summaries: Sequence[Summary]) -> list[Figure]:
    ours = next(s for s in summaries if s.judge == "conveyor")
    if case.regression:
        return [
            Figure("median time to detect, 2x", ours.detection_quantile(0.5), "min", MEDIAN_GOAL),
            Figure("p90 time to detect, 2x", ours.detection_quantile(0.9), "min", P90_GOAL),
        ]
    rate = ours.share(Verdict.ROLLBACK)
    name = "false-rollback rate" + (", clustered" if case.scenario.clustering else "")
    return [Figure(f"{name}: {case.scenario.name}", rate, "share", FALSE_ROLLBACK_GOAL)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="runs per scenario (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="the first run's seed")
    parser.add_argument("--prior", type=Prior, default=Prior.FOCUSED, choices=list(Prior))
    parser.add_argument(
        "--only", default="", help="scenarios whose name contains this (or any of a|b)"
    )
    parser.add_argument(
        "--null-runs",
        type=int,
        default=FALSE_ROLLBACK_RUNS,
        help="runs of the conveyor judge per no-regression scenario (default 500)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="processes (default 1)")
    parser.add_argument(
        "--no-peers", action="store_true", help="only the conveyor judges and the oracle"
    )
    args = parser.parse_args(argv)
    header(f"canary judges, {args.runs} runs per scenario, prior {args.prior.value}")
    figures: list[Figure] = []
    wanted = args.only.split("|")
    plan = Plan(args.runs, args.null_runs, args.seed, args.prior, not args.no_peers, args.jobs)
    for case in (
        c
        for c in (*CASES, *SMALL_TEAM_CASES, *CLUSTERED_CASES, *SHORT_STEP_CASES)
        if any(w in c.scenario.name for w in wanted)
    ):
        started = time.perf_counter()
        summaries = simulate(case, plan)
        print_case(case, summaries, time.perf_counter() - started)
        if case.goals:
            figures += goal_figures(case, summaries)
    if figures:
        print_figures("goals (conveyor judge)", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
