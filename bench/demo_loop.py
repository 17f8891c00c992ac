"""The whole demo (`conveyor demo`), timed, with its configured waits taken out.

Runs `conveyor demo -q` as a subprocess (eight chapters: gates, image, staging and its
E2E, DAST and load tests, approvals, canary releases, a rollback), then reads the demo
repository's store for the time the pipeline spent waiting on purpose:
- the load of each `perf` job (its configured `duration`);
- each approval request, from its request to its decision (a person's time);
- each canary release to production, from its start to its verdict (the judge's
  configured analysis windows and bake).
The goal (issue 7): the rest, the demo's own work, in at most 3 minutes on 2 cores.

    .venv/bin/python bench/demo_loop.py --repeat 1
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import CONVEYOR, Figure, console, header, print_figures, repeat_parser
from conveyor.service.environments import stop_environment
from conveyor.service.project import Project
from conveyor.store.records import EventKind

GOAL_SECONDS = 180.0


@dataclass(frozen=True)
class DemoTiming:
    total: float
    perf_load: float
    approval_wait: float
    canary: float

    @property
    def own_work(self) -> float:
        return self.total - self.perf_load - self.approval_wait - self.canary


def run_once() -> DemoTiming:
    started = time.perf_counter()
    done = subprocess.run([CONVEYOR, "demo", "-q"], capture_output=True, text=True, check=False)
    total = time.perf_counter() - started
    found = re.search(r"cd (/\S+/shop)", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"the demo failed (exit {done.returncode}): {done.stdout[-2000:]}")
    project = Project.locate(Path(found.group(1)) / "conveyor.yml")
    try:
        return _waits(project, total)
    finally:
        with project.open_store() as store:
            for name in ("staging", "production"):
                stop_environment(project, store, name)


def _waits(project: Project, total: float) -> DemoTiming:
    with project.open_store() as store:
        perf_load = 0.0
        for run in store.list_runs(limit=100):
            for report in store.reports(run.id, "perf"):
                document = json.loads(store.blobs.get_bytes(report.digest))
                perf_load += float(document["settings"]["duration"])
        requested: dict[str, float] = {}
        approval_wait = 0.0
        for event in store.events():
            key = f"{event.run_id}/{event.data.get('environment')}"
            if event.kind == EventKind.APPROVAL_REQUESTED:
                requested[key] = event.ts
            elif event.kind == EventKind.APPROVAL_GRANTED and key in requested:
                approval_wait += event.ts - requested.pop(key)
        canary = sum(
            (deploy.finished_at or deploy.started_at) - deploy.started_at
            for deploy in store.ledger.deploys.of_environment("production")
            if (deploy.progress or {}).get("strategy") == "canary"
        )
    return DemoTiming(total, perf_load, approval_wait, canary)


def measure(repeat: int) -> list[Figure]:
    header(f"the whole demo, {repeat} round(s)")
    timings = []
    for index in range(repeat):
        timings.append(run_once())
        t = timings[-1]
        console.print(
            f"round {index + 1}: total {t.total:.0f} s; configured waits: load {t.perf_load:.0f} s,"
            f" approvals {t.approval_wait:.1f} s, canary analysis {t.canary:.0f} s;"
            f" the demo's own work {t.own_work:.0f} s"
        )
    own = statistics.median(t.own_work for t in timings)
    total = statistics.median(t.total for t in timings)
    return [
        Figure("demo, all of it", total, "s"),
        Figure("demo without configured waits", own, "s", GOAL_SECONDS),
    ]


def main(argv: list[str] | None = None) -> int:
    args = repeat_parser(__doc__ or "").parse_args(argv)
    print_figures("medians", measure(args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
