"""The `perf` step running the real Locust against the shop in a real staging."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.executors.local import LocalExecutor
from conveyor.engine.step import (
    Environments,
    NoEnvironments,
    NoEvidence,
    StepContext,
    job_output_dir,
)
from conveyor.service.step_environments import ProjectEnvironments
from conveyor.steps.perf import PerfParams, PerfStep
from conveyor.verify.perf import NO_BASELINE
from deploy.apps import free_port
from steps.conftest import BaselineEvidence, Lines
from verify.shop_staging import SHOP, StagingShop

JOB = "perf"
LOCUSTFILE = SHOP / "perf" / "locustfile.py"
GENEROUS = {"p95": "10s", "p99": "10s", "error_rate": 5, "min_rps": 0.5}


@dataclass
class Outcome:
    ran: ExecResult
    final: ExecResult
    log: Lines
    evidence: NoEvidence
    workspace: Path

    @property
    def report(self) -> dict[str, Any]:
        (content,) = [content for kind, content, _ in self.evidence.published if kind == "perf"]
        result: dict[str, Any] = json.loads(content)
        return result


def workspace_with_locustfile(root: Path) -> Path:
    (root / "perf").mkdir(parents=True)
    shutil.copy(LOCUSTFILE, root / "perf" / "locustfile.py")
    return root


def run_perf(
    workspace: Path,
    params: dict[str, Any],
    *,
    evidence: NoEvidence | None = None,
    env: dict[str, str] | None = None,
    environments: Environments | None = None,
) -> Outcome:
    log = Lines()
    venv_bin = str(Path(sys.executable).parent)
    ctx = StepContext(
        job_id=JOB,
        workspace=workspace,
        env={"PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "HOME": str(workspace)}
        | (env or {}),
        timeout=60.0,
        executor=LocalExecutor(),
        log=log,
        evidence=evidence or NoEvidence(),
        environments=environments or NoEnvironments(),
    )
    step, validated = PerfStep(), PerfParams.model_validate(params)

    async def both() -> tuple[ExecResult, ExecResult]:
        ran = await step.run(validated, ctx)
        return ran, await step.finalize(validated, ctx, ran)

    ran, final = asyncio.run(both())
    assert isinstance(ctx.evidence, NoEvidence)
    return Outcome(ran, final, log, ctx.evidence, workspace)


@pytest.fixture(scope="module")
def first_run(shop_staging: StagingShop, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """A 3 s load on staging, named by environment (resolved through the store)."""
    project = shop_staging.project
    workspace = workspace_with_locustfile(tmp_path_factory.mktemp("perf-first"))
    environments = ProjectEnvironments(project, run_id=None, actor="test")
    params = {"environment": "staging", "duration": "3s", "thresholds": GENEROUS}
    return run_perf(workspace, params, environments=environments)


@pytest.mark.real
def test_a_load_within_generous_thresholds_passes_and_publishes_the_report(
    first_run: Outcome, shop_staging: StagingShop
) -> None:
    assert first_run.ran.ok  # run only defers to finalize
    assert first_run.final.ok, first_run.final.detail
    report = first_run.report
    assert report["passed"] is True and report["reasons"] == []
    assert report["target"]["environment"] == "staging"
    assert report["target"]["url"] == shop_staging.url
    assert report["target"]["digest"] == shop_staging.image.split("@")[1]
    assert report["target"]["release_id"]
    assert report["settings"]["users"] == 10 and report["settings"]["duration"] == 3
    totals = report["totals"]
    assert totals["requests"] > 0 and totals["failures"] == 0
    assert 0 <= totals["p50_ms"] <= totals["p95_ms"] <= totals["p99_ms"]
    assert totals["p99_ms"] > 0
    assert totals["rps"] > 0
    # Requests for one product aggregate under their name, whatever the id.
    names = {(row["method"], row["name"]) for row in report["endpoints"]}
    assert {("GET", "/"), ("GET", "/api/products"), ("GET", "/api/products/[id]")} <= names
    assert sum(row["requests"] for row in report["endpoints"]) == totals["requests"]
    assert {check["metric"] for check in report["thresholds"]["checks"]} == {
        "p95",
        "p99",
        "error_rate",
        "rps",
    }
    assert report["comparison"]["note"] == NO_BASELINE


@pytest.mark.real
def test_the_log_shows_the_table_the_comparison_and_the_verdict(first_run: Outcome) -> None:
    text = first_run.log.text
    assert "Method  Name" in text and "/api/products/[id]" in text
    assert f"perf: {NO_BASELINE}" in text
    assert "✓ p95" in text
    assert first_run.final.detail.startswith("perf passed: ")
    assert first_run.final.detail in text
    out = job_output_dir(first_run.workspace, JOB) / "perf"
    assert json.loads((out / "perf.json").read_text()) == first_run.report
    assert (out / "report.html").stat().st_size > 0


@pytest.mark.real
def test_a_threshold_nobody_can_meet_fails_naming_it(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    workspace = workspace_with_locustfile(tmp_path)
    params = {"url": shop_staging.url, "duration": "2s", "thresholds": {"min_rps": 1e9}}
    outcome = run_perf(workspace, params)
    assert not outcome.final.ok
    assert "is below the minimum 1000000000.0 req/s" in outcome.final.detail
    assert outcome.report["passed"] is False
    assert outcome.report["thresholds"]["checks"][-1] == {
        "metric": "rps",
        "limit": 1e9,
        "actual": outcome.report["totals"]["rps"],
        "passed": False,
    }


@pytest.mark.real
def test_a_baseline_much_faster_than_now_fails_as_a_regression(
    first_run: Outcome, shop_staging: StagingShop, tmp_path: Path
) -> None:
    previous = first_run.report
    # Ten users who wait 0.2-1 s between clicks make at most 50 requests a second.
    previous["totals"]["rps"] = 1000.0
    previous["target"]["release_id"] = "r-previous"
    workspace = workspace_with_locustfile(tmp_path)
    params = {"url": shop_staging.url, "duration": "2s", "thresholds": GENEROUS}
    outcome = run_perf(workspace, params, evidence=BaselineEvidence([previous], kind="perf"))
    assert not outcome.final.ok
    assert "throughput regressed from 1000.0 req/s to " in outcome.final.detail
    assert "beyond the allowed 20%" in outcome.final.detail
    comparison = outcome.report["comparison"]
    assert comparison["note"] == "compared with the previous result (release r-previous)"
    rps = next(change for change in comparison["changes"] if change["metric"] == "rps")
    assert rps["baseline"] == 1000.0 and rps["regressed"] is True and rps["change_percent"] < -90


def test_a_staging_that_is_down_fails_with_the_reason(tmp_path: Path) -> None:
    workspace = workspace_with_locustfile(tmp_path)
    outcome = run_perf(workspace, {"url": f"http://127.0.0.1:{free_port()}", "duration": "1s"})
    assert not outcome.final.ok
    assert "is not answering" in outcome.final.detail
    assert outcome.evidence.published == []


@pytest.mark.real
def test_a_missing_locustfile_fails_naming_it(shop_staging: StagingShop, tmp_path: Path) -> None:
    outcome = run_perf(tmp_path, {"url": shop_staging.url, "locustfile": "load/shop.py"})
    assert not outcome.final.ok
    assert "the locustfile load/shop.py does not exist" in outcome.final.detail


@pytest.mark.real
def test_a_locustfile_that_crashes_locust_fails_with_its_error(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    (tmp_path / "perf").mkdir()
    (tmp_path / "perf" / "locustfile.py").write_text("import no_such_load_library\n")
    outcome = run_perf(tmp_path, {"url": shop_staging.url, "duration": "1s"})
    assert not outcome.final.ok
    assert outcome.final.detail.startswith("perf: locust failed (exited with code 1)")
    assert "no_such_load_library" in outcome.final.detail
    assert outcome.final.detail.endswith("it wrote no statistics")
    assert outcome.evidence.published == []


@pytest.mark.real
def test_without_locust_the_step_fails_saying_so(shop_staging: StagingShop, tmp_path: Path) -> None:
    workspace = workspace_with_locustfile(tmp_path)
    outcome = run_perf(workspace, {"url": shop_staging.url}, env={"PATH": "/usr/bin:/bin"})
    assert not outcome.final.ok
    assert outcome.final.detail.startswith("perf: locust failed (cannot start python")
    assert outcome.final.detail.endswith("(no `locust` on the job's PATH: pip install locust)")
    assert outcome.evidence.published == []


HALF_FAILING = """\
from locust import HttpUser, constant, task


class Prober(HttpUser):
    wait_time = constant(0.1)

    @task
    def good_then_missing(self):
        self.client.get("/healthz")
        self.client.get("/no-such-page")
"""


@pytest.mark.real
def test_failed_requests_are_judged_by_the_error_rate_not_locusts_exit_code(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    (tmp_path / "perf").mkdir()
    (tmp_path / "perf" / "locustfile.py").write_text(HALF_FAILING)
    params = {"url": shop_staging.url, "users": 2, "duration": "1s"}
    outcome = run_perf(tmp_path, params | {"thresholds": {"error_rate": 60}})
    assert "(exit code 1)" in outcome.log.text  # Locust's exit: some request failed
    assert outcome.final.ok, outcome.final.detail
    report = outcome.report
    assert 0 < report["totals"]["failures"] < report["totals"]["requests"]
    (error,) = report["errors"]
    assert (error["method"], error["name"]) == ("GET", "/no-such-page")
    assert "404" in error["error"]
