"""The demo's story, end to end: green, cached, stopped at the gates, fixed, released by
canary, a regression rolled back by the judge, and a defect caught after promotion by
production's SLO (the loop closed: incident, requirement, experiment, feedback, DORA)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import run_cli
from conveyor.engine.report import SilentReporter
from conveyor.observe.dora import project_dora
from conveyor.service.demo import DemoResult, run_demo
from conveyor.service.demo_server import DEMO_PID_DIR, FLAGS_PID_FILE, stop_demo_server
from conveyor.service.environments import stop_environment
from conveyor.service.project import Project
from conveyor.service.release_record import release_record, to_markdown
from conveyor.service.reports import run_report
from conveyor.states import JobState, RunState
from conveyor.store.records import EventKind
from conveyor.store.store import Store
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.referrers import PROVENANCE_ARTIFACT, SBOM_ARTIFACT, VULN_SCAN_ARTIFACT

# Nine pipeline runs, five of them through staging's E2E, DAST and load tests, then
# production watched until its SLO alert rolls the last release back.
pytestmark = [pytest.mark.real, pytest.mark.timeout(720)]


def test_the_demo_stops_the_planted_problems_and_passes_the_fix(tmp_path: Path) -> None:
    titles: list[str] = []
    repository = tmp_path / "shop"
    try:
        _check_story(run_demo(SilentReporter(), titles.append, destination=repository))
    finally:  # also after a timeout mid-demo: no router or replica outlives the test
        _stop_environments(repository)
        stop_demo_server(DEMO_PID_DIR, FLAGS_PID_FILE)


def _stop_environments(repository: Path) -> None:
    for folder in (repository, repository.parent / "payments"):
        if not (folder / "conveyor.yml").is_file():
            continue  # the demo stopped before it made this repository
        project = Project.locate(folder / "conveyor.yml")
        with project.open_store() as store:
            for name in ("staging", "production"):
                stop_environment(project, store, name)


def _check_story(result: DemoResult) -> None:
    assert [c.outcome.state for c in result.chapters] == [
        RunState.SUCCESS,
        RunState.SUCCESS,
        RunState.FAILED,  # planted SQL injection and key
        RunState.SUCCESS,
        RunState.FAILED,  # a dependency with a known vulnerability
        RunState.SUCCESS,
        RunState.SUCCESS,  # squash-merged to main; staging, then a canary in production
        RunState.FAILED,  # 200 ms slower: the canary judge rolls it back
        RunState.SUCCESS,  # a leak that only all of production's traffic shows: promoted
        RunState.SUCCESS,  # the follow-up's fix (Closes REQ-1): production holds
        RunState.SUCCESS,  # payments: the shop's contract verified, deployed
        RunState.SUCCESS,  # the shop pays through payments, in staging and production
        RunState.FAILED,  # payments: a breaking API change stopped by the contract
        RunState.SUCCESS,  # payments: a compatible change goes through
    ]
    assert result.as_expected
    rerun = result.chapters[1].outcome.jobs
    # An unchanged rerun: every job's work is reused, except the jobs whose work is all
    # on every run (scan, sign, push, deploys, tests of staging), which say they ran.
    every_run = {"scan-image", "sign", "push", "deploy-staging", "deploy-production"}
    every_run |= {"e2e", "dast", "perf"}
    assert {job: state for job, state in rerun.items() if job in every_run} == {
        job: JobState.SUCCESS for job in every_run
    }
    assert {state for job, state in rerun.items() if job not in every_run} == {JobState.CACHED}

    project_store = result.repository / ".conveyor"

    with Store(project_store) as store:
        blocked = run_report(store, result.chapters[2].outcome.run_id)
        fixed = run_report(store, result.chapters[3].outcome.run_id)
        vulnerable = run_report(store, result.chapters[4].outcome.run_id)
    reasons = [reason for gate in blocked.gates for reason in gate.reasons]
    assert any(r.startswith("app/search.py:15") and "semgrep" in r for r in reasons)
    assert any(r.startswith("app/search.py:16") and "B608" in r for r in reasons)
    assert any(r.startswith("app/search.py:9") and "detect-secrets" in r for r in reasons)
    assert all(gate.passed for gate in fixed.gates)
    final = result.chapters[5].outcome
    assert final.jobs["push"] in (JobState.SUCCESS, JobState.CACHED)
    for chapter in (result.chapters[0], result.chapters[6]):
        jobs = chapter.outcome.jobs
        assert jobs["deploy-staging"] is JobState.SUCCESS
        for verification in ("e2e", "dast", "perf"):
            assert jobs[verification] in (JobState.SUCCESS, JobState.CACHED)
        assert jobs["deploy-production"] is JobState.SUCCESS
    _check_the_human_gate(result)
    _check_staging_reports(result)
    # Production serves the merged version (the image of the last run), through the router.
    assert set(result.urls) == {"staging", "production"}
    with Store(project_store) as store:
        history = store.ledger.history.entries("production")
        decisions = store.ledger.history.events("production", (EventKind.RELEASE_DECISION,))
    deploys = [entry for entry in history if entry.kind == "deploy"]
    assert [entry.result for entry in deploys][:3] == ["succeeded", "succeeded", "rolled_back"]
    # Production serves chapter 12's version: the shop that pays through payments.
    served = httpx.get(result.urls["production"] + "/version", timeout=5).json()["version"]
    assert deploys[-1].digest is not None
    assert deploys[-1].digest.removeprefix("sha256:").startswith(served)
    # Chapter 8: the judge saw the slow requests and rolled back.
    regression = result.chapters[7].outcome.jobs
    assert regression["deploy-staging"] is JobState.SUCCESS
    assert regression["deploy-production"] is JobState.FAILED
    assert "slow requests" in (deploys[2].reason or "")
    # One rollback verdict, chapter 8's (chapter 9's release was promoted).
    assert [d.data["verdict"] for d in decisions].count("rollback") == 1
    products = httpx.get(result.urls["staging"] + "/api/products", timeout=5)
    assert products.status_code == 200
    published = LayoutStore(result.repository / ".conveyor" / "published")
    assert published.repositories() == ["shop"]
    vuln_reasons = [r for gate in vulnerable.gates for r in gate.reasons]
    assert any(
        "urllib3 1.26.4" in r and "PYSEC-2023-192" in r and "fixed in 1.26.17" in r
        for r in vuln_reasons
    )
    # The key never reaches a report, in any form.
    assert "sk_live_4eC39HqLyjWDarjtT1zdp7dc9a2B" not in json.dumps(blocked.sarif)
    _check_the_loop(result, deploys[1].release_id)
    _check_quality_and_contracts(result)


def _check_quality_and_contracts(result: DemoResult) -> None:
    """Both pipelines run the quality gate; the shop records its contract with payments,
    payments verifies it; the breaking change is refused naming the interaction."""
    shop, payments, paying, breaking, compatible = (
        result.chapters[i].outcome.jobs for i in (0, 10, 11, 12, 13)
    )
    assert paying["deploy-production"] is JobState.SUCCESS
    assert (shop["quality"], shop["contract"]) == (JobState.SUCCESS, JobState.SUCCESS)
    assert (payments["quality"], payments["verify-contracts"]) == (JobState.SUCCESS,) * 2
    assert payments["deploy-production"] is JobState.SUCCESS
    assert breaking["verify-contracts"] is JobState.FAILED
    assert JobState.SUCCESS not in (breaking["deploy-staging"], breaking["deploy-production"])
    assert compatible["deploy-production"] is JobState.SUCCESS
    refusals = result.contract_refusal
    assert any("'a payment for an order'" in r and "status" in r for r in refusals), refusals


def _check_the_loop(result: DemoResult, warm: str) -> None:
    """Chapter 9's release passed its canary; under all of production's traffic its leak
    burnt the error budget, the SLO's page alert rolled it back to chapter 7's release,
    the incident names it and its commit, and its follow-up requirement was committed.
    Meanwhile the experiment's variants and the users' ratings were recorded, and DORA
    counts the alert's rollback as a failed change."""
    loop = result.loop
    assert loop is not None and loop.closed
    leaky = result.chapters[8].outcome.jobs
    assert leaky["deploy-production"] is JobState.SUCCESS  # the canary could not see it
    assert loop.restored_to == warm
    assert loop.alert.startswith("ErrorBudgetBurn (page): production: availability burns")
    assert loop.suspects[0] == loop.release
    project = Project.locate(result.repository / "conveyor.yml")
    with project.open_store() as store:
        live = store.ledger.environments.get("production")
        rollbacks = [e for e in store.events() if e.kind == EventKind.ROLLBACK.value]
        report = project_dora(project, store, "production", "1d")
    assert live is not None
    alerted = [e for e in rollbacks if e.actor == "conveyor-alerts"]
    assert [(e.data["from"], e.data["to"]) for e in alerted] == [(loop.release, warm)]
    assert result.addressed == [f"REQ-1 closed by {_head_of(result.repository, 'REQ-1')}"]
    requirement = result.repository / str(loop.requirement)
    assert "Products: stock levels from a pool" in requirement.read_text()
    assert loop.release is not None and loop.release in requirement.read_text()
    log = run_cli(["history"], result.repository)  # the repository is intact afterwards
    assert log.exit_code == 0
    # Both arms of the experiment bought and rated (the users' model favours "on"), as
    # shown while chapter 7's release was live again.
    assert result.experiment is not None
    variants = result.experiment.business.variants
    ratings = result.experiment.feedback.variants
    assert {arm.variant for arm in variants if arm.metrics.get("checkouts")} == {"on", "off"}
    assert {summary.variant for summary in ratings} == {"on", "off"}
    # Chapters 1, 7, 9, 10 and 12 (chapter 2 deployed no change; 8 was stopped by the canary).
    assert report.deployments == 5
    assert (report.failed_deployments, report.canary_stops) == (1, 1)  # chapters 9 and 8


def _check_the_human_gate(result: DemoResult) -> None:
    """Dana's own approvals were refused and recorded; Riley's opened the gate; the audit
    chain holds them all; the release record of production names them."""
    assert result.refusals and all("dana wrote the change" in r for r in result.refusals)
    production_deploys = 7  # chapters 1, 2, 7, 8, 9, 10 and 12
    assert len(result.approvals) == production_deploys
    project = Project.locate(result.repository / "conveyor.yml")
    with project.open_store() as store:
        refused = [e for e in store.events() if e.kind == EventKind.APPROVAL_REFUSED]
        assert store.audit_verify() == []
        audited = {entry.kind for entry in store.audit_entries()}
        # Chapter 7's release: the squash-merged change, released by canary.
        merged = [e for e in store.ledger.history.entries("production") if e.kind == "deploy"]
        record = release_record(project, store, "production", release_id=merged[1].release_id)
    assert {r.data["code"] for r in refused} == {"author"}
    assert {"approval.granted", "approval.refused", "approval.requested"} <= audited
    kinds = [event["kind"] for event in record["approvals"]]
    assert kinds == ["approval.requested", "approval.refused", "approval.granted"]
    assert record["release"]["state"] == "succeeded"
    assert record["staging"]["e2e"][0]["totals"]["passed"] == 5
    assert record["staging"]["perf"][0]["passed"] is True
    assert any(gate["gate"] == "dast" for gate in record["gates"])
    assert {item["artifact_type"] for item in record["provenance"]} == {
        PROVENANCE_ARTIFACT,
        SBOM_ARTIFACT,
        VULN_SCAN_ARTIFACT,
    }
    assert [c["subject"] for c in record["commits"]] == ["Product search and payments (squashed)"]
    markdown = to_markdown(record)
    for heading in ("## Commits", "## Gates", "## Approvals", "## Provenance"):
        assert heading in markdown
    assert "approval.refused by dana" in markdown


def _check_staging_reports(result: DemoResult) -> None:
    """`conveyor report` of the merged commit's run shows staging's journeys and load."""
    run_id = result.chapters[6].outcome.run_id
    shown = run_cli(["report", str(run_id)], result.repository)
    assert shown.exit_code == 0, shown.stderr
    assert "e2e (e2e): 5 passed" in shown.stdout
    assert "perf (perf): passed" in shown.stdout
    assert "dast (dast): passed" in shown.stdout


def _head_of(repository: Path, key: str) -> str:
    """The short sha of the newest commit whose message names `key`."""
    found = subprocess.run(
        ["git", "log", "-1", "--format=%H", f"--grep={key}", "--grep=Closes", "--all-match"],
        cwd=repository,
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip()[:12]
