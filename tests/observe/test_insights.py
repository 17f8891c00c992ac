"""`conveyor insights`: a period's summary from fixture records (incidents, canary
rollbacks, flaky tests and jobs, job durations, vulnerability scans, waivers), each
actionable item filed as a requirement, shown as filed, then as addressed once a commit
references it; the CLI answers the same (the API: tests/server/test_api_insights.py)."""

from __future__ import annotations

import sys
import time
import types
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import GIT_ENV, GitProject, MakeProject, run_cli
from conveyor.findings.reports import CaseSummary, TestsReport, VulnScanReport
from conveyor.observe.insights import (
    ItemKind,
    ItemState,
    dora_trends,
    file_item,
    item_id,
    summary,
)
from conveyor.states import JobState
from conveyor.store import schema
from conveyor.store.db import write_transaction
from conveyor.store.records import EventKind, NewJob, NewRun
from conveyor.store.store import Store

SPEC = "version: 1\njobs:\n  noop: {run: 'true'}\n"
DAY = 86_400.0
FLAKY_TEST = "tests/test_cart.py::test_total"


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)


def add_event(
    store: Store, kind: str, ts: float, data: dict[str, Any], state: str | None = None
) -> None:
    with write_transaction(store.engine) as conn:
        conn.execute(
            sa.insert(schema.events).values(
                ts=ts, kind=kind, state=state, actor="conveyor", data=data
            )
        )


def add_run(store: Store, started: float, jobs: dict[str, tuple[float, int]]) -> int:
    """A run started at `started` whose jobs took (seconds, attempts)."""
    meta = NewRun(pipeline="shop", commit_sha="a" * 40, branch="main", author="Ada", actor="t")
    run_id = store.create_run(meta, [NewJob(name, name) for name in jobs])
    with write_transaction(store.engine) as conn:
        conn.execute(
            sa.update(schema.runs).where(schema.runs.c.id == run_id).values(started_at=started)
        )
        for name, (seconds, attempts) in jobs.items():
            conn.execute(
                sa.update(schema.jobs)
                .where(schema.jobs.c.run_id == run_id, schema.jobs.c.job_id == name)
                .values(
                    state=JobState.SUCCESS.value,
                    started_at=started,
                    finished_at=started + seconds,
                    attempts=attempts,
                )
            )
    return run_id


def add_report(store: Store, run_id: int, job: str, kind: str, content: bytes) -> None:
    store.add_report(run_id, job, kind, store.blobs.put_report(content), {})


def vulnerability(name: str, fixed_in: str | None, disposition: str = "new") -> dict[str, Any]:
    return {
        "id": f"GHSA-{name}",
        "package": name,
        "installed_version": "1.0",
        "fixed_in": fixed_in,
        "severity": {"level": "high"},
        "summary": f"{name} is unsafe",
        "disposition": disposition,
    }


def seed(repo: GitProject, now: float) -> None:
    """A month of records, and a few from before it that must not count."""
    today = date.fromtimestamp(now)
    soon, later = today + timedelta(days=3), today + timedelta(days=90)
    waivers = [
        f"  - {{rule: B608, reason: tracked in SHOP-1, owner: dana, expires: {soon}}}",
        f"  - {{rule: B101, reason: tests only, owner: dana, expires: {later}}}",
    ]
    repo.write({".conveyor/exceptions.yml": "exceptions:\n" + "\n".join(waivers) + "\n"})
    with repo.store() as store:
        add_event(
            store,
            "incident.opened",
            now - 2 * DAY,
            {
                "incident": 7,
                "environment": "production",
                "alert": {"name": "HighErrorRate"},
                "suspects": ["production-abc"],
                "time_to_detect": 42.0,
            },
        )
        add_event(store, "incident.state", now - 2 * DAY + 60, {"incident": 7}, state="resolved")
        add_event(store, "incident.opened", now - 40 * DAY, {"incident": 3, "environment": "x"})
        store.ledger.history.record(
            EventKind.RELEASE_DECISION,
            "production",
            deploy_id=5,
            verdict="rollback",
            reason="errors 5x the baseline",
        )
        store.ledger.history.record(
            EventKind.RELEASE_DECISION,
            "production",
            deploy_id=5,
            verdict="rollback",
            reason="again",
        )
        store.ledger.history.record(
            EventKind.RELEASE_DECISION, "production", deploy_id=6, verdict="continue", reason="ok"
        )
        recent = [
            add_run(store, now - d * DAY, {"build": (300.0, 1), "test": (90.0, 2)})
            for d in (1, 2, 3)
        ]
        old = add_run(store, now - 60 * DAY, {"build": (9_000.0, 1), "lint": (5.0, 3)})
        flaky = TestsReport(flaky=[CaseSummary(id=FLAKY_TEST, outcome="flaky")]).to_bytes()
        for run_id in (recent[0], recent[1], old):
            add_report(store, run_id, "test", "tests", flaky)
        scan = VulnScanReport(
            vulnerabilities=[
                vulnerability("jinja2", "3.1.4"),
                vulnerability("nofix", None),
                vulnerability("waived", "2.0", disposition="waived"),
            ]
        ).to_bytes()
        add_report(store, recent[0], "scan", "vuln-scan", scan)
        add_report(store, recent[1], "scan", "vuln-scan", scan)  # the same, once


def test_the_summary_names_what_the_period_taught(git_project: MakeProject) -> None:
    repo = git_project(SPEC)
    now = time.time()
    seed(repo, now)

    with repo.store() as store:
        found = summary(repo.project(), store, period=30 * DAY, now=now + 1)

    assert [(i["incident"], i["alert"], i["suspects"], i["state"]) for i in found.incidents] == [
        (7, "HighErrorRate", ["production-abc"], "resolved")
    ]
    assert [(r["deploy_id"], r["reason"]) for r in found.regressions] == [
        (5, "errors 5x the baseline")
    ]
    assert found.flaky_tests[0] == {
        "test": FLAKY_TEST,
        "runs": found.flaky_tests[0]["runs"],
        "times": 2,
    }
    assert [f.get("job") for f in found.flaky_tests[1:]] == ["test"]
    assert [(s["job"], s["median_seconds"], s["runs"]) for s in found.slowest_stages] == [
        ("build", 300.0, 3),
        ("test", 90.0, 3),
    ]
    assert [(v["package"], v["fixed_in"]) for v in found.vulnerabilities] == [("jinja2", "3.1.4")]
    assert [(w["waiver"], w["expired"]) for w in found.expiring_waivers] == [("B608", False)]
    kinds = [item.kind for item in found.items]
    assert kinds == [
        ItemKind.INCIDENT,
        ItemKind.REGRESSION,
        ItemKind.FLAKY_TEST,
        ItemKind.FLAKY_JOB,
        ItemKind.SLOW_STAGE,
        ItemKind.SLOW_STAGE,
        ItemKind.VULNERABILITY,
        ItemKind.WAIVER,
    ]
    assert found.items[0].id == "incident-7" and found.items[0].source == "incident:7"
    assert found.items[2].id == item_id(ItemKind.FLAKY_TEST, FLAKY_TEST)
    assert found.items[6].title == "Upgrade jinja2 to 3.1.4 (GHSA-jinja2)"
    assert all(item.state is ItemState.OPEN for item in found.items)


def test_an_item_is_filed_once_then_addressed_by_a_commit(git_project: MakeProject) -> None:
    repo = git_project(SPEC)
    now = time.time()
    seed(repo, now)
    flaky = item_id(ItemKind.FLAKY_TEST, FLAKY_TEST)

    with repo.store() as store:
        item, filed = file_item(repo.project(), store, flaky, actor="ada")
        _, again = file_item(repo.project(), store, flaky, actor="ada")
        before = {i.id: i for i in summary(repo.project(), store).items}
    sha = repo.commit(message=f"test: deflake the cart total\n\nRefs {filed.key}")
    with repo.store() as store:
        after = {i.id: i for i in summary(repo.project(), store).items}

    assert (item.id, filed.key, again.key) == (flaky, "REQ-1", "REQ-1")
    text = (repo.root / filed.location).read_text()
    assert f"# REQ-1: Flaky test: {FLAKY_TEST}" in text
    assert before[flaky].state is ItemState.FILED
    assert before[flaky].requirement == {
        "key": "REQ-1",
        "location": filed.location,
        "addressed_by": None,
    }
    assert after[flaky].state is ItemState.ADDRESSED
    addressed = after[flaky].requirement
    assert addressed is not None and addressed["addressed_by"] == sha
    assert all(i.state is ItemState.OPEN for key, i in after.items() if key != flaky)


def test_the_cli_lists_files_and_refuses_an_unknown_item(git_project: MakeProject) -> None:
    repo = git_project(SPEC)
    seed(repo, time.time())
    flaky = item_id(ItemKind.FLAKY_TEST, FLAKY_TEST)

    listed = run_cli(["insights", "summary", "--since", "30d", "-o", "json"], repo.root)
    text = run_cli(["insights", "summary"], repo.root)
    filed = run_cli(["insights", "file", flaky, "--commit"], repo.root)
    unknown = run_cli(["insights", "file", "flaky-test-0000000000"], repo.root)
    bad_period = run_cli(["insights", "summary", "--since", "a month"], repo.root)

    assert listed.exit_code == 0, listed.stderr
    assert flaky in [item["id"] for item in listed.json()["items"]]
    assert text.exit_code == 0 and f"{flaky} Flaky test: {FLAKY_TEST}" in text.stdout
    assert filed.exit_code == 0, filed.stderr
    assert f"{flaky} filed as REQ-1: docs/requirements/REQ-1.md" in filed.stdout
    assert repo.git("log", "-1", "--format=%s") == f"docs: file REQ-1: Flaky test: {FLAKY_TEST}"
    assert unknown.exit_code == 4 and "no insight 'flaky-test-0000000000'" in unknown.stderr
    assert bad_period.exit_code == 2 and "--since" in bad_period.stderr


def test_dora_trends_come_from_observe_dora_when_it_is_there(
    git_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = git_project(SPEC)
    calls: list[tuple[str, float, float]] = []

    def dora(store: Store, environment: str, *, since: float, until: float) -> dict[str, Any]:
        calls.append((environment, since, until))
        return {"environment": environment, "deployments": 4, "deployment_facts": [1, 2]}

    fake = types.ModuleType("conveyor.observe.dora")
    fake.dora = dora  # type: ignore[attr-defined]
    fake.production_environment = lambda environments: "production"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "conveyor.observe.dora", fake)
    with repo.store() as store:
        found = dora_trends(repo.project(), store, 10.0, 20.0)
    monkeypatch.setitem(sys.modules, "conveyor.observe.dora", None)  # not importable
    with repo.store() as store:
        missing = dora_trends(repo.project(), store, 10.0, 20.0)

    assert calls == [("production", 10.0, 20.0)]
    assert found == {"available": True, "environment": "production", "deployments": 4}
    assert missing == {
        "available": False,
        "reason": "DORA metrics (observe/dora.py) are not installed",
    }
