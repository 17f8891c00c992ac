"""DORA over a year of history: 100,000 events in the store, `observe.dora.dora(...)` timed.

The year (seeded, so every run builds the same one): 4 canary deploys a day to production
(about 26 events each: started, release states, canary steps, traffic shifts to 10, 25, 50
and 100 %, the judge's verdicts, replica events, smoke results, a hook, finished), 4
direct deploys a day to staging (about 14 events each), one pipeline run behind each
production deploy and the rest of the 100,000 events as run and job events of other runs
(pull requests). 5 % of production deploys are rolled back while baking, 3 % are stopped
by the canary's judge, a flag is killed about once a week and an incident opened about
every two weeks. Rows are bulk-inserted in the shape `store/events.event_row` writes (the
appends themselves are not what is measured), then ANALYZE runs as the server's would.

Timed: `dora(store, "production", since=now - 365 d, until=now)` (the one indexed query,
the commit times of the deploys' runs, the fold), the median of `--repeat` calls.
The same calls are timed again without the index `ix_events_kind_ts` (dropped: the read
of a store before migration 0011). `--extra-job-events N` adds N job events to the same
year (a busier CI: the index's case). Goal (issue 16): <= 1 s.

    .venv/bin/python bench/dora_year.py --repeat 9
    .venv/bin/python bench/dora_year.py --repeat 9 --extra-job-events 900000
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from common import Figure, Samples, console, header, print_figures, print_samples, repeat_parser
from conveyor.observe.dora import DAY, dora
from conveyor.service.project import Project
from conveyor.store import schema
from conveyor.store.db import write_transaction
from conveyor.store.store import Store

EVENTS = 100_000
DEPLOYS_PER_DAY = 3
GOAL_S = 1.0


class Year:
    """Event and run rows of a year, in the order they happened."""

    def __init__(self, rng: random.Random, end: float) -> None:
        self.rng, self.end = rng, end
        self.events: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.deploy_id = 0

    def event(self, kind: str, ts: float, run_id: int | None = None, **data: Any) -> None:
        self.events.append(
            {
                "ts": ts,
                "kind": kind,
                "run_id": run_id,
                "job_id": data.pop("job_id", None),
                "state": data.pop("state", None),
                "commit_sha": None,
                "actor": "ci",
                "data": data,
            }
        )

    def run(self, ts: float, jobs: int = 8) -> int:
        run_id = len(self.runs) + 1
        sha = f"{self.rng.getrandbits(160):040x}"
        committed = ts - self.rng.uniform(600, 3 * DAY)
        self.runs.append(_run_row(run_id, ts, sha, committed))
        self.event("run.created", ts, run_id, state="running")
        for job in range(jobs):
            self.event("job.planned", ts, run_id, job_id=f"job-{job}")
            self.event("job.state", ts + 1, run_id, job_id=f"job-{job}", state="running")
            self.event("job.state", ts + 60, run_id, job_id=f"job-{job}", state="success")
        self.event("run.state", ts + 120, run_id, state="success")
        return run_id

    def production_deploy(self, ts: float, release: str, previous: str) -> None:
        env, rng = "production", self.rng
        run_id = self.run(ts - 900)
        deploy_id = self._start(env, ts, release, previous, run_id)
        outcome = rng.random()
        for n in range(4):
            self.event("replica.event", ts + n, environment=env, release=release, replica=n)
        self.event("release.state", ts + 5, environment=env, release=release, state="serving")
        for step, weight in enumerate((10, 25, 50)):
            at = ts + 60 + step * 300
            self.event("release.step", at, environment=env, deploy_id=deploy_id, step=step)
            self._traffic(env, at, deploy_id, {release: weight, previous: 100 - weight})
            verdict = "rollback" if outcome < 0.03 and step == 1 else "continue"
            self._decision(env, at + 120, deploy_id, verdict)
            if verdict == "rollback":
                self._rollback(env, at + 121, deploy_id, release, previous)
                self._finish(env, at + 122, deploy_id, release, "rolled_back")
                return
        full = ts + 1000
        self._traffic(env, full, deploy_id, {release: 100, previous: 0})
        self.event("release.hook", full + 1, environment=env, deploy_id=deploy_id)
        self.event("smoke.result", full + 2, environment=env, deploy_id=deploy_id, ok=True)
        self.event("smoke.result", full + 3, environment=env, deploy_id=deploy_id, ok=True)
        if outcome > 0.95:
            self._decision(env, full + 200, deploy_id, "rollback")
            self._rollback(env, full + 201, deploy_id, release, previous)
            self._finish(env, full + 202, deploy_id, release, "rolled_back")
            return
        self._decision(env, full + 300, deploy_id, "promote")
        self.event("release.state", full + 301, environment=env, release=release, state="live")
        self._finish(env, full + 302, deploy_id, release, "succeeded")

    def staging_deploy(self, ts: float, release: str, previous: str) -> None:
        env = "staging"
        deploy_id = self._start(env, ts, release, previous, None)
        for n in range(4):
            self.event("replica.event", ts + n, environment=env, release=release, replica=n)
        self._traffic(env, ts + 5, deploy_id, {release: 50, previous: 50})
        self._traffic(env, ts + 10, deploy_id, {release: 100, previous: 0})
        for state in ("serving", "live", "retired"):
            self.event("release.state", ts + 11, environment=env, release=release, state=state)
        self.event("smoke.result", ts + 12, environment=env, deploy_id=deploy_id, ok=True)
        self.event("smoke.result", ts + 13, environment=env, deploy_id=deploy_id, ok=True)
        self._finish(env, ts + 14, deploy_id, release, "succeeded")

    def _start(self, env: str, ts: float, release: str, previous: str, run_id: int | None) -> int:
        self.deploy_id += 1
        self.event(
            "deploy.started",
            ts,
            run_id,
            environment=env,
            deploy_id=self.deploy_id,
            release=release,
            digest=f"sha256:{self.rng.getrandbits(256):064x}",
            previous=previous,
            approval=None,
        )
        return self.deploy_id

    def _traffic(self, env: str, ts: float, deploy_id: int, weights: dict[str, int]) -> None:
        self.event("traffic.shifted", ts, environment=env, deploy_id=deploy_id, weights=weights)

    def _decision(self, env: str, ts: float, deploy_id: int, verdict: str) -> None:
        self.event(
            "release.decision",
            ts,
            environment=env,
            deploy_id=deploy_id,
            verdict=verdict,
            evidence={"e_value": round(self.rng.random() * 30, 3)},
        )

    def _rollback(self, env: str, ts: float, deploy_id: int, release: str, to: str) -> None:
        weights = {to: 100, release: 0}
        data = {"deploy_id": deploy_id, "from": release, "to": to, "weights": weights}
        self.event("rollback", ts, environment=env, **data)

    def _finish(self, env: str, ts: float, deploy_id: int, release: str, state: str) -> None:
        data = {"environment": env, "deploy_id": deploy_id, "release": release}
        self.event("deploy.finished", ts, state=state, **data)


def _run_row(run_id: int, ts: float, sha: str, committed: float) -> dict[str, Any]:
    return {
        "id": run_id,
        "pipeline": "ci",
        "state": "success",
        "commit_sha": sha,
        "branch": "main",
        "committed_at": committed,
        "trigger": {},
        "started_at": ts,
        "finished_at": ts + 120,
    }


def add_job_events(year: Year, count: int, rng: random.Random) -> None:
    """`count` more job events spread over the year: a busier CI, the same deploys."""
    start = year.end - 365 * DAY
    for n in range(count):
        ts = start + rng.uniform(0, 365 * DAY)
        year.event("job.state", ts, 1, job_id=f"job-{n % 8}", state="success")
    year.events.sort(key=lambda row: row["ts"])


def build_year(rng: random.Random, end: float) -> Year:
    year = Year(rng, end)
    start = end - 365 * DAY
    releases = {"production": "v0", "staging": "v0"}
    for day in range(365):
        for n in range(DEPLOYS_PER_DAY):
            ts = start + day * DAY + (n + 1) * DAY / (DEPLOYS_PER_DAY + 1)
            release = f"v{day}.{n}"
            year.staging_deploy(ts - 3600, release, releases["staging"])
            year.production_deploy(ts, release, releases["production"])
            releases["staging"] = releases["production"] = release
        if day % 7 == 3:
            flag = {"environment": "production", "flag": "new-checkout", "rollback": True}
            year.event("flag.killed", start + day * DAY + 0.45 * DAY, **flag)
        if day % 14 == 9:
            at = start + day * DAY + 0.65 * DAY
            year.event("incident.opened", at, environment="production", incident=day)
            resolved = {"environment": "production", "incident": day, "state": "resolved"}
            year.event("incident.state", at + 1800, **resolved)
    while len(year.events) < EVENTS:  # other runs: pull requests
        year.run(start + rng.uniform(0, 365 * DAY), jobs=8)
    year.events.sort(key=lambda row: row["ts"])
    del year.events[EVENTS:]
    return year


def fill(project: Project, year: Year) -> None:
    with project.open_store() as store:
        with write_transaction(store.engine) as conn:
            conn.execute(sa.insert(schema.runs), year.runs)
            conn.execute(sa.insert(schema.events), year.events)
        with store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")


def time_dora(store: Store, label: str, since: float, until: float, repeat: int) -> Samples:
    samples = Samples(label)
    for _ in range(repeat):
        started = time.perf_counter()
        dora(store, "production", since=since, until=until)
        samples.seconds.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = repeat_parser(__doc__ or "")
    parser.add_argument(
        "--extra-job-events", type=int, default=0, help="more run events (a busier CI)"
    )
    args = parser.parse_args()
    header("DORA over a year of history (100,000 events)")
    end = time.time()
    year = build_year(random.Random(16), end)
    add_job_events(year, args.extra_job_events, random.Random(17))
    with tempfile.TemporaryDirectory(prefix="bench-dora-") as tmp:
        project = Project.locate(Path(tmp) / "conveyor.yml")
        fill(project, year)
        since, until = end - 365 * DAY, end + 1
        with project.open_store() as store:
            report = dora(store, "production", since=since, until=until)
            indexed = time_dora(store, "with ix_events_kind_ts", since, until, args.repeat)
            with store.engine.begin() as conn:  # the same read as before migration 0011
                conn.exec_driver_sql("DROP INDEX ix_events_kind_ts")
                conn.exec_driver_sql("ANALYZE")
            scanned = time_dora(store, "without it (a table scan)", since, until, args.repeat)
    console.print(
        f"{len(year.events)} events, {len(year.runs)} runs: {report.deployments} deployments,"
        f" {report.failed_deployments} failed, {report.canary_stops} stopped by the canary,"
        f" {report.rework_deployments} rework; band {report.bands.overall.value}"
    )
    print_samples("DORA over a year", [indexed, scanned], indexed)
    figure = Figure("dora() median", indexed.median, "s", GOAL_S)
    print_figures("Goal", [figure])
    return 0 if figure.verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
