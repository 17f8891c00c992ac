"""The `e2e` step running real Playwright tests in the system Chromium against a real staging."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import pytest

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import Environments, NoEnvironments, NoEvidence, StepContext
from conveyor.service.step_environments import ProjectEnvironments
from conveyor.steps.e2e import E2eParams, E2eStep
from deploy.apps import free_port
from steps.conftest import CountingExecutor, Lines
from verify.shop_staging import SHOP, StagingShop

SHOP_JOURNEYS = 5  # the test functions of examples/shop/tests/e2e/test_journeys.py
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAILING_TEST = "tests/e2e/test_promise.py::test_the_catalogue_promises_free_shipping[chromium]"
# A project of its own with strict warnings (as the shop has): one journey that passes
# and proves which browser ran, one that expects text the shop's page does not have.
PROMISE_PROJECT = {
    "pytest.ini": "[pytest]\nfilterwarnings = error\n",
    "tests/e2e/test_promise.py": """\
        import shutil
        import subprocess

        from playwright.sync_api import expect


        def test_runs_in_the_system_chromium(browser, browser_type_launch_args):
            executable = browser_type_launch_args["executable_path"]
            assert executable == shutil.which("chromium")
            version = subprocess.run([executable, "--version"], capture_output=True, text=True)
            assert browser.version in version.stdout


        def test_the_catalogue_promises_free_shipping(page):
            page.goto("/")
            expect(page.get_by_text("Free shipping")).to_be_visible(timeout=500)
        """,
}


@dataclass
class Outcome:
    result: ExecResult
    log: Lines
    evidence: NoEvidence
    executor: CountingExecutor

    def published(self, kind: str) -> list[tuple[bytes, dict[str, Any]]]:
        return [(content, summary) for k, content, summary in self.evidence.published if k == kind]

    @property
    def report(self) -> Any:
        [(content, _)] = self.published("e2e")
        return json.loads(content)


def run_e2e_step(
    workspace: Path,
    extra_env: dict[str, str] | None = None,
    environments: Environments | None = None,
    **with_: Any,
) -> Outcome:
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(workspace.parent / "home"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        **(extra_env or {}),
    }
    log, evidence, executor = Lines(), NoEvidence(), CountingExecutor()
    environments = environments or NoEnvironments()
    ctx = StepContext("e2e", workspace, env, 60, executor, log, evidence, environments)
    step, params = E2eStep(), E2eParams(**with_)

    async def both() -> ExecResult:
        ran = await step.run(params, ctx)
        return await step.finalize(params, ctx, ran)

    return Outcome(asyncio.run(both()), log, evidence, executor)


def shop_workspace(root: Path) -> Path:
    """The shop's E2E tests and pytest configuration, as a job's checkout has them."""
    workspace = root / "shop"
    shutil.copytree(SHOP / "tests" / "e2e", workspace / "tests" / "e2e")
    shutil.copy(SHOP / "pyproject.toml", workspace)
    return workspace


def project(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(content))
    return root


@pytest.mark.real
def test_the_shop_journeys_pass_against_its_staging(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    environments = ProjectEnvironments(shop_staging.project, run_id=None, actor="test")

    outcome = run_e2e_step(
        shop_workspace(tmp_path), environments=environments, environment="staging"
    )

    assert outcome.result.ok, outcome.log.text
    report = outcome.report
    assert report["totals"]["passed"] == SHOP_JOURNEYS
    assert report["totals"]["failed"] == report["totals"]["errors"] == 0
    assert report["target"]["url"] == shop_staging.url
    assert report["target"]["environment"] == "staging"
    assert report["target"]["release_id"]
    assert report["target"]["digest"] == shop_staging.image.split("@")[1]
    [(_, summary)] = outcome.published("e2e")
    assert summary["passed"] is True
    assert outcome.published("e2e-artifact") == []
    assert f"{SHOP_JOURNEYS} passed against staging" in outcome.result.detail


@pytest.mark.real
def test_a_failing_journey_fails_the_step_with_a_screenshot_and_a_trace(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    workspace = project(tmp_path / "promise", PROMISE_PROJECT)

    outcome = run_e2e_step(workspace, url=shop_staging.url)

    assert not outcome.result.ok
    assert FAILING_TEST in outcome.result.detail
    assert 'to_be_visible" get_by_text("Free shipping")' in outcome.result.detail
    assert outcome.report["totals"]["passed"] == 1
    assert [f["id"] for f in outcome.report["failures"]] == [FAILING_TEST]
    artifacts = {
        summary["kind"]: (content, summary)
        for content, summary in outcome.published("e2e-artifact")
    }
    assert set(artifacts) == {"screenshot", "trace"}
    screenshot, shot_summary = artifacts["screenshot"]
    assert screenshot.startswith(PNG_MAGIC)
    assert shot_summary["test"] == FAILING_TEST
    assert shot_summary["bytes"] == len(screenshot)
    assert (workspace / shot_summary["file"]).read_bytes() == screenshot
    trace, trace_summary = artifacts["trace"]
    with zipfile.ZipFile(io.BytesIO(trace)) as archive:
        assert any(name.endswith(".trace") for name in archive.namelist())
    assert f"playwright show-trace {trace_summary['file']}" in outcome.log.text


def test_a_staging_that_is_down_fails_without_starting_the_browser(tmp_path: Path) -> None:
    workspace = shop_workspace(tmp_path)

    outcome = run_e2e_step(workspace, url=f"http://127.0.0.1:{free_port()}")

    assert not outcome.result.ok
    assert "is not answering" in outcome.result.detail
    assert outcome.executor.commands == []
    assert outcome.evidence.published == []


@pytest.mark.real
def test_a_missing_tests_directory_fails_naming_it(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    outcome = run_e2e_step(tmp_path, url=shop_staging.url, tests="tests/browser")

    assert not outcome.result.ok
    assert "tests/browser does not exist" in outcome.result.detail
    assert outcome.executor.commands == []


@pytest.mark.real
def test_a_browser_that_is_not_there_fails_naming_it(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    workspace = shop_workspace(tmp_path)

    outcome = run_e2e_step(workspace, url=shop_staging.url, browser=str(tmp_path / "chrome"))

    assert not outcome.result.ok
    assert str(tmp_path / "chrome") in outcome.result.detail
    assert outcome.executor.commands == []


@pytest.mark.real
def test_no_chromium_on_path_fails_naming_the_package(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    workspace = shop_workspace(tmp_path)
    only_the_venv = {"PATH": str(Path(sys.executable).parent)}

    outcome = run_e2e_step(workspace, only_the_venv, url=shop_staging.url)

    assert not outcome.result.ok
    assert "no Chromium on PATH" in outcome.result.detail
    assert "`chromium`" in outcome.result.detail
    assert outcome.executor.commands == []


@pytest.mark.real
def test_a_driver_that_cannot_start_fails_naming_the_missing_library(
    shop_staging: StagingShop, tmp_path: Path
) -> None:
    """Playwright's bundled node without libatomic.so.1 (a minimal Debian 12) exits at
    once; every test then errors with 'Connection closed while reading from the driver'."""
    workspace = shop_workspace(tmp_path)
    node = tmp_path / "node-without-libatomic"
    node.write_text(
        "#!/bin/sh\necho 'libatomic.so.1: cannot open shared object file' >&2\nexit 127\n"
    )
    node.chmod(0o755)

    outcome = run_e2e_step(workspace, {"PLAYWRIGHT_NODEJS_PATH": str(node)}, url=shop_staging.url)

    assert not outcome.result.ok
    assert "Playwright's driver could not start" in outcome.result.detail
    assert "libatomic1" in outcome.result.detail


def test_tests_outside_the_workspace_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="inside the workspace"):
        E2eParams(url="http://127.0.0.1:1", tests="../elsewhere")
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        E2eParams(tests="tests/e2e")
