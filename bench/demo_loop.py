"""The whole demo (`conveyor demo`), timed, with its configured waits taken out.

Runs `conveyor demo -q` as a subprocess (fourteen chapters: gates, image, staging and its
E2E, DAST and load tests, approvals, canary releases, a rollback by the judge, a defect
rolled back by production's SLO alert, its fix, the payments service and its contract),
then reads the demo repositories' stores for the time spent waiting on purpose:
- the load of each `perf` job (its configured `duration`);
- each approval request, from its request to its decision (a person's time);
- each canary release to production, from its start to its verdict (the judge's
  configured analysis windows and bake);
- chapter 9's watch of production, from the promotion to the SLO alert's rollback (the
  defect taking its time to show under production's traffic).
The goal (issue 7, set when the demo had its first eight chapters): the rest, the demo's
own work, in at most 3 minutes on 2 cores. It is reported for chapters 1 to 8 (the
demo the goal was set for) and for the whole demo.

    .venv/bin/python bench/demo_loop.py --repeat 1
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from common import CONVEYOR, Figure, console, header, print_figures, repeat_parser
from conveyor.service.environments import stop_environment
from conveyor.service.project import Project
from conveyor.store.records import EventKind, EventRecord, RunRecord

GOAL_SECONDS = 180.0


@dataclass(frozen=True)
class DemoTiming:
    total: float
    perf_load: float
    approval_wait: float
    canary: float
    watch: float = 0.0

    @property
    def own_work(self) -> float:
        return self.total - self.perf_load - self.approval_wait - self.canary - self.watch


@dataclass(frozen=True)
class Timings:
    first_eight: DemoTiming  # chapters 1 to 8: the demo issue 7's goal was set for
    whole: DemoTiming


FIRST_EIGHT = 8  # the shop's runs of chapters 1 to 8


def run_once() -> Timings:
    started_at = time.time()
    started = time.perf_counter()
    done = subprocess.run([CONVEYOR, "demo", "-q"], capture_output=True, text=True, check=False)
    total = time.perf_counter() - started
    found = re.search(r"cd (/\S+/shop)\n", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"the demo failed (exit {done.returncode}): {done.stdout[-2000:]}")
    shop = Path(found.group(1))
    project = Project.locate(shop / "conveyor.yml")
    payments = Project.locate(shop.parent / "payments" / "conveyor.yml")
    try:
        with project.open_store() as store:
            runs = sorted(store.list_runs(limit=100), key=lambda run: run.id)
        boundary = runs[FIRST_EIGHT - 1].finished_at or started_at
        first_eight = _waits(project, boundary - started_at, until=boundary)
        whole = _waits(project, total, until=None, also=payments)
        return Timings(first_eight, replace(whole, watch=_watch(project, runs)))
    finally:
        for each in (project, payments):
            with each.open_store() as store:
                for name in ("staging", "production"):
                    stop_environment(each, store, name)


def _watch(project: Project, runs: list[RunRecord]) -> float:
    """From chapter 9's run's end (its release promoted) to the alert's rollback."""
    promoted = runs[FIRST_EIGHT].finished_at
    with project.open_store() as store:
        for event in store.events():
            if event.kind == EventKind.ROLLBACK.value and event.actor == "conveyor-alerts":
                return event.ts - (promoted or event.ts)
    return 0.0


def _waits(
    project: Project, total: float, *, until: float | None, also: Project | None = None
) -> DemoTiming:
    perf_load = approval_wait = canary = 0.0
    for each in (project, also) if also is not None else (project,):
        with each.open_store() as store:
            for run in store.list_runs(limit=100):
                if until is not None and (run.finished_at or 0) > until:
                    continue
                for report in store.reports(run.id, "perf"):
                    document = json.loads(store.blobs.get_bytes(report.digest))
                    perf_load += float(document["settings"]["duration"])
            approval_wait += _approvals(store.events(), until)
            canary += sum(
                (deploy.finished_at or deploy.started_at) - deploy.started_at
                for deploy in store.ledger.deploys.of_environment("production")
                if (deploy.progress or {}).get("strategy") == "canary"
                and (until is None or deploy.started_at <= until)
            )
    return DemoTiming(total, perf_load, approval_wait, canary)


def _approvals(events: list[EventRecord], until: float | None) -> float:
    requested: dict[str, float] = {}
    waited = 0.0
    for event in events:
        if until is not None and event.ts > until:
            break
        key = f"{event.run_id}/{event.data.get('environment')}"
        if event.kind == EventKind.APPROVAL_REQUESTED:
            requested[key] = event.ts
        elif event.kind == EventKind.APPROVAL_GRANTED and key in requested:
            waited += event.ts - requested.pop(key)
    return waited


def measure(repeat: int) -> list[Figure]:
    header(f"the whole demo, {repeat} round(s)")
    rounds = []
    for index in range(repeat):
        rounds.append(run_once())
        for label, t in (("chapters 1-8", rounds[-1].first_eight), ("all", rounds[-1].whole)):
            console.print(
                f"round {index + 1}, {label}: total {t.total:.0f} s; configured waits: load "
                f"{t.perf_load:.0f} s, approvals {t.approval_wait:.1f} s, canary analysis "
                f"{t.canary:.0f} s, production's watch {t.watch:.0f} s; "
                f"the demo's own work {t.own_work:.0f} s"
            )
    return [
        Figure("demo, all of it", statistics.median(r.whole.total for r in rounds), "s"),
        Figure(
            "chapters 1-8 without configured waits",
            statistics.median(r.first_eight.own_work for r in rounds),
            "s",
            GOAL_SECONDS,
        ),
        Figure(
            "the whole demo without configured waits",
            statistics.median(r.whole.own_work for r in rounds),
            "s",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    args = repeat_parser(__doc__ or "").parse_args(argv)
    print_figures("medians", measure(args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
