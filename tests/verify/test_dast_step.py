"""The `dast` step running the real wapiti, schemathesis and passive checks against a real
staging of the shop: clean, and with the planted SQL injection
(examples/shop/fixtures/planted-injection)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import Environments, NoEnvironments, NoEvidence, StepContext
from conveyor.findings.model import Disposition, Finding, Level
from conveyor.findings.sarif import findings_from_log
from conveyor.service.step_environments import ProjectEnvironments
from conveyor.spec.gates import FailLevel, FindingsGate, Gates
from conveyor.steps.dast import DastParams, DastStep
from deploy.apps import free_port
from steps.conftest import BaselineEvidence, CountingExecutor, Lines
from verify.shop_staging import SHOP, StagingShop, shop_in_staging

PLANTED = SHOP / "fixtures" / "planted-injection"
SHOP_GATES = Gates(findings=FindingsGate(fail_on=FailLevel.WARNING))  # examples/shop/conveyor.yml
# The crawl budget of the shop's own dast job (28 s; the planted scan keeps the 60 s default).
SHOP_SCAN_TIME = yaml.safe_load((SHOP / "conveyor.yml").read_text())["jobs"]["dast"]["with"][
    "max_scan_time"
]
SEARCH_CRASH_WAIVER = """\
exceptions:
  - rule: internal-server-error
    tool: wapiti
    path: "api/**"
    reason: the search answers 500 on bad input until SHOP-7
    owner: dana@example.com
    expires: 2999-12-31
"""


def fresh_workspace(workspace: Path) -> Path:
    """A workspace with no exceptions file: every finding counts."""
    workspace.mkdir(parents=True)
    return workspace


@dataclass
class Outcome:
    result: ExecResult
    log: Lines
    evidence: NoEvidence
    executor: CountingExecutor

    def report(self, kind: str) -> Any:
        [content] = [content for k, content, _ in self.evidence.published if k == kind]
        return json.loads(content)

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.evidence.published]

    @property
    def findings(self) -> list[Finding]:
        return findings_from_log(self.report("sarif"))

    def finding(self, tool: str, rule: str) -> Finding:
        [found] = [f for f in self.findings if (f.tool, f.rule_id) == (tool, rule)]
        return found


def run_dast_step(
    workspace: Path,
    *,
    evidence: NoEvidence | None = None,
    env: dict[str, str] | None = None,
    environments: Environments | None = None,
    **with_: Any,
) -> Outcome:
    workspace.mkdir(parents=True, exist_ok=True)
    base_env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(workspace.parent / "home"),
        "LANG": "C.UTF-8",
    }
    log, executor = Lines(), CountingExecutor()
    evidence = evidence or NoEvidence(SHOP_GATES)
    ctx = StepContext(
        "dast",
        workspace,
        {**base_env, **(env or {})},
        120,
        executor,
        log,
        evidence,
        environments or NoEnvironments(),
    )
    step, params = DastStep(), DastParams(**with_)

    async def both() -> ExecResult:
        ran = await step.run(params, ctx)
        return await step.finalize(params, ctx, ran)

    return Outcome(asyncio.run(both()), log, evidence, executor)


@pytest.fixture(scope="module")
def planted_staging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StagingShop]:
    with shop_in_staging(tmp_path_factory.mktemp("planted"), overlays=(PLANTED,)) as staging:
        yield staging


@pytest.fixture(scope="module")
def planted_scan(planted_staging: StagingShop, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The step with its defaults against the shop with the planted injection."""
    return run_dast_step(tmp_path_factory.mktemp("planted-scan"), url=planted_staging.url)


@pytest.mark.real
def test_the_shop_passes_its_own_dast_gate_in_staging(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    environments = ProjectEnvironments(shop_staging.project, run_id=None, actor="test")

    workspace = fresh_workspace(tmp_path / "shop")

    outcome = run_dast_step(
        workspace, environments=environments, environment="staging", max_scan_time=SHOP_SCAN_TIME
    )

    assert outcome.result.ok, outcome.log.text
    assert sorted(outcome.kinds) == ["dast", "gate", "sarif"]
    blocking = [
        f
        for f in outcome.findings
        if f.level.at_least(Level.WARNING) and f.disposition is not Disposition.WAIVED
    ]
    assert blocking == []
    assert {f.properties["parameter"] for f in outcome.findings} <= {"conveyor-sticky"}
    assert outcome.report("gate")["passed"] is True
    report = outcome.report("dast")
    assert report["target"]["url"] == shop_staging.url
    assert report["target"]["environment"] == "staging"
    assert report["target"]["release_id"]
    assert report["target"]["digest"] == shop_staging.image.split("@")[1]
    assert set(report["tools"]) == {"wapiti", "schemathesis", "passive"}
    assert all(tool["exercised"] > 0 for tool in report["tools"].values())
    assert report["passed"] is True
    assert "gate dast: passed" in outcome.result.detail
    assert outcome.result.detail.startswith(f"dast of staging ({shop_staging.url}")


@pytest.mark.real
def test_the_planted_injection_fails_the_step_naming_its_path_and_parameter(
    planted_scan: Outcome,
) -> None:
    assert not planted_scan.result.ok
    injection = planted_scan.finding("wapiti", "sql-injection")
    assert injection.level is Level.ERROR
    assert injection.disposition is Disposition.NEW
    assert injection.path == "api/search"
    assert injection.properties["method"] == "GET"
    assert injection.properties["parameter"] == "q"
    assert "GET /api/search (parameter q): SQL Injection" in planted_scan.result.detail
    assert planted_scan.report("gate")["passed"] is False
    assert planted_scan.report("dast")["passed"] is False
    assert "✗ api/search: error sql-injection [wapiti]" in planted_scan.log.text


@pytest.mark.real
def test_a_baseline_and_an_exception_let_the_known_findings_pass(
    planted_staging: StagingShop, planted_scan: Outcome, tmp_path: Path
) -> None:
    workspace = tmp_path / "shop"
    (workspace / ".conveyor").mkdir(parents=True)
    (workspace / ".conveyor" / "exceptions.yml").write_text(SEARCH_CRASH_WAIVER)
    baseline = BaselineEvidence([planted_scan.report("sarif")], SHOP_GATES)

    outcome = run_dast_step(
        workspace,
        evidence=baseline,
        url=planted_staging.url,
        tools=["wapiti"],
        wapiti_modules=["sql", "exec"],
    )

    assert outcome.result.ok, outcome.log.text
    injection = outcome.finding("wapiti", "sql-injection")
    assert injection.disposition is Disposition.UNCHANGED  # the same fingerprint as before
    assert injection.fingerprint == planted_scan.finding("wapiti", "sql-injection").fingerprint
    crash = outcome.finding("wapiti", "internal-server-error")
    assert crash.disposition is Disposition.WAIVED
    assert crash.waiver is not None and crash.waiver.source == ".conveyor/exceptions.yml:2"
    assert "1 unchanged, 1 waived" in outcome.result.detail


def test_a_staging_that_is_down_fails_with_the_reason_before_any_scan(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    outcome = run_dast_step(tmp_path / "shop", url=url)

    assert not outcome.result.ok
    assert outcome.result.detail.startswith(f"dast: {url} is not answering: GET {url}/")
    assert outcome.executor.commands == []
    assert outcome.evidence.published == []


@pytest.mark.real
def test_an_openapi_document_that_is_not_there_fails_naming_it(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    outcome = run_dast_step(tmp_path / "shop", url=shop_staging.url, openapi="/api/openapi.yaml")

    assert not outcome.result.ok
    detail = outcome.result.detail
    assert f"cannot read the OpenAPI document at {shop_staging.url}/api/openapi.yaml" in detail
    assert "404 Not Found" in detail
    assert outcome.executor.commands == []


@pytest.mark.real
def test_without_an_openapi_document_schemathesis_is_skipped_with_a_note(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    outcome = run_dast_step(
        fresh_workspace(tmp_path / "shop"),
        url=shop_staging.url,
        openapi=None,
        tools=["schemathesis", "passive"],
    )

    assert outcome.result.ok, outcome.log.text
    assert outcome.executor.commands == []
    report = outcome.report("dast")
    assert set(report["tools"]) == {"passive"}
    assert report["tools"]["passive"]["exercised"] == 1  # the base URL only
    assert report["notes"] == ["schemathesis skipped: `openapi` is null (no OpenAPI document)"]


@pytest.mark.real
def test_a_scanner_that_is_not_installed_fails_saying_so(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    outcome = run_dast_step(tmp_path / "shop", env={"PATH": "/usr/bin:/bin"}, url=shop_staging.url)

    assert not outcome.result.ok
    assert "wapiti is not installed (or not on PATH)" in outcome.result.detail
    assert outcome.executor.commands == []


@pytest.mark.real
def test_a_scanner_that_crashes_fails_the_step_with_its_last_words(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    crashing = bin_dir / "wapiti"
    crashing.write_text(
        "#!/bin/sh\necho 'Traceback: sqlite3.DatabaseError: disk full' >&2\nexit 3\n"
    )
    crashing.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

    outcome = run_dast_step(tmp_path / "shop", env={"PATH": path}, url=shop_staging.url)

    assert not outcome.result.ok
    assert outcome.result.detail.startswith(
        "wapiti failed (exited with code 3): Traceback: sqlite3"
    )
    assert "sarif" not in outcome.kinds
