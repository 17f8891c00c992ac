"""The canary judge against its peers on synthetic request streams, at full speed.

Each scenario (a service's rate, error rate, latency, a 10 % canary and a 10 % baseline,
an injected effect) runs `--runs` times; every judge sees the very same streams (common
seeds). Per judge: median and p90 time to detect (a rollback; a run without one counts as
never, so a p90 needs 90 % detected), the share of runs detected within the maximum
duration (30 min), the share promoted, and the median's ratio to the oracle's. The
no-regression scenarios run at least 500 times and report the false-rollback rate.

    .venv/bin/python bench/judge_harness.py --runs 500 --seed 1
    .venv/bin/python bench/judge_harness.py --runs 500 --only 2x --prior log-uniform
"""

from __future__ import annotations

import argparse
import math
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
from conveyor.analysis.simulation import Outcome, Scenario, SequentialJudge, run
from conveyor.spec.strategy import Analysis

MAX_SECONDS = 1800.0
FALSE_ROLLBACK_RUNS = 500
MEDIAN_GOAL, P90_GOAL, FALSE_ROLLBACK_GOAL = 3.0, 6.0, 0.01  # minutes, minutes, share
ALPHA = 0.01


@dataclass(frozen=True)
class Case:
    scenario: Scenario
    regression: bool
    goals: bool = False  # the scenario the goals are stated for
    min_runs: int = 0


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


def judges(scenario: Scenario, prior: Prior) -> dict[str, Callable[[], SequentialJudge]]:
    settings = Analysis(alpha=ALPHA, max_duration=MAX_SECONDS)
    error_effect, slow_effect = scenario.true_effects
    latency = scenario.latency_multiplier != 1.0
    effect = slow_effect if latency else error_effect
    if effect <= 1.0:  # nothing to know: the oracle tests the smallest harmful effect
        effect = settings.min_effect
    slow_limit = 1.5 * scenario.slow_share()
    return {
        "conveyor": lambda: Judge(settings, prior=prior),
        "conveyor-baseline": lambda: Judge(settings, prior=prior, reference=Reference.BASELINE),
        "flagger": lambda: FlaggerThreshold(max_slow_share=slow_limit),
        "kayenta": lambda: KayentaMannWhitney(alpha=ALPHA),
        "oracle": lambda: OracleSPRT(effect=effect, latency=latency, alpha=ALPHA),
    }


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

    def median_promotion(self) -> float:
        times = sorted(o.seconds / 60.0 for o in self.outcomes if o.verdict is Verdict.PROMOTE)
        return times[len(times) // 2] if times else math.inf


def simulate(case: Case, runs: int, seed: int, prior: Prior) -> list[Summary]:
    return [
        Summary(
            name,
            [
                run(factory, case.scenario, max_seconds=MAX_SECONDS, seed=seed + i)
                for i in range(runs)
            ],
        )
        for name, factory in judges(case.scenario, prior).items()
    ]


def _minutes(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.2f}"


def print_case(case: Case, summaries: Sequence[Summary], seconds: float) -> None:
    runs = len(summaries[0].outcomes)
    console.print(f"[bold]{case.scenario.name}[/] ({runs} runs, {seconds:.0f} s)")
    table = Table(box=None, pad_edge=False)
    oracle = next(s for s in summaries if s.judge == "oracle").detection_quantile(0.5)
    columns = ["judge", "median min", "p90 min", "detected", "promoted", "vs oracle", "undecided"]
    if not case.regression:
        columns = ["judge", "false rollback", "promoted", "promotion median min", "undecided"]
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
            table.add_row(
                s.judge,
                f"{s.share(Verdict.ROLLBACK):.2%}",
                f"{s.share(Verdict.PROMOTE):.1%}",
                _minutes(s.median_promotion()),
                f"{s.share(Verdict.INCONCLUSIVE):.1%}",
            )
    console.print(table)
    ours = summaries[0].outcomes
    undecided = [o.reason for o in ours if o.verdict is Verdict.INCONCLUSIVE]
    if undecided:
        console.print(f"[dim]conveyor, undecided at {MAX_SECONDS / 60:g} min, e.g.: {undecided[0]}")


def goal_figures(case: Case, summaries: Sequence[Summary]) -> list[Figure]:
    ours = next(s for s in summaries if s.judge == "conveyor")
    if case.regression:
        return [
            Figure("median time to detect, 2x", ours.detection_quantile(0.5), "min", MEDIAN_GOAL),
            Figure("p90 time to detect, 2x", ours.detection_quantile(0.9), "min", P90_GOAL),
        ]
    rate = ours.share(Verdict.ROLLBACK)
    return [Figure("false-rollback rate", rate, "share", FALSE_ROLLBACK_GOAL)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="runs per scenario (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="the first run's seed")
    parser.add_argument("--prior", type=Prior, default=Prior.FOCUSED, choices=list(Prior))
    parser.add_argument("--only", default="", help="scenarios whose name contains this")
    args = parser.parse_args(argv)
    header(f"canary judges, {args.runs} runs per scenario, prior {args.prior.value}")
    figures: list[Figure] = []
    for case in (c for c in CASES if args.only in c.scenario.name):
        runs = max(args.runs, case.min_runs)
        started = time.perf_counter()
        summaries = simulate(case, runs, args.seed, args.prior)
        print_case(case, summaries, time.perf_counter() - started)
        if case.goals:
            figures += goal_figures(case, summaries)
    if figures:
        print_figures("goals (conveyor judge)", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
