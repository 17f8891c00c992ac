"""Logs per release with a real deploy: the replicas' JSON lines through `conveyor logs
--env`, their secret masked, and the judge rolling back a canary that answers 200 while
it logs exceptions, then promoting a clean one."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import CliProcess, run_cli, wait_until
from conveyor.deploy.rollout import DeployOutcome, release_name
from conveyor.service import environments
from conveyor.service.project import Project
from conveyor.states import DeployState
from deploy.load import Load
from observe.log_app import build_log_app, make_log_project

pytestmark = [pytest.mark.real, pytest.mark.timeout(180)]
TOKEN = "tok_9Qw2Er4Ty6Ui8Op0"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    made = make_log_project(tmp_path / "project")
    yield made
    with made.open_store() as store:
        environments.stop_environment(made, store, "staging")


def deploy(project: Project, image: str) -> DeployOutcome:
    with project.open_store() as store:
        return environments.deploy(project, store, "staging", image, actor="tester")


def url_of(project: Project) -> str:
    with project.open_store() as store:
        record = store.ledger.environments.get("staging")
    assert record is not None
    return f"http://127.0.0.1:{record.port}"


def logs(project: Project, *args: str) -> list[dict[str, object]]:
    result = run_cli(["logs", "--env", "staging", *args, "-o", "json"], project.directory)
    assert result.exit_code == 0, result.stderr
    items: list[dict[str, object]] = result.json()["items"]
    return items


def test_a_canary_logging_exceptions_while_answering_200_is_rolled_back_a_clean_one_promoted(
    project: Project, tmp_path: Path
) -> None:
    stable = build_log_app(project, tmp_path, "v1")
    noisy = build_log_app(project, tmp_path, "v2", "exceptions")
    clean = build_log_app(project, tmp_path, "v3")
    assert deploy(project, stable).state is DeployState.SUCCEEDED
    v1 = release_name("staging", *stable.split("@"))
    v2 = release_name("staging", *noisy.split("@"))

    # The replica's own lines, parsed, its secret masked.
    started = wait_until(lambda: logs(project, "--release", v1), "v1's first lines")
    messages = [str(item["message"]) for item in started]
    assert "starting v1 with token ***" in messages
    assert TOKEN not in json.dumps(started)
    [listening] = [item for item in started if item["logger"] == "shop.checkout"]
    assert listening["level"] == "info" and listening["fields"] == {"version": "v1"}

    with Load(url_of(project)) as load:
        outcome = deploy(project, noisy)
    assert outcome.state is DeployState.ROLLED_BACK, outcome.reason
    assert "error log lines" in (outcome.reason or ""), outcome.reason
    assert load.failures() == []  # every answer was a 200: only the logs told
    errors = logs(project, "--release", v2, "--level", "error", "-n", "5")
    assert errors and all(item["message"] == "checkout failed" for item in errors)
    assert "TimeoutError" in str(errors[0]["fields"]["exception"])  # type: ignore[index]
    assert logs(project, "--release", v1, "--level", "error") == []

    with Load(url_of(project)):
        promoted = deploy(project, clean)
    assert promoted.state is DeployState.SUCCEEDED, promoted.reason
    with project.open_store() as store:
        samples = store.ledger.samples.of("staging", v2)
    assert any(row.signals.get("log_errors", 0) > 0 for row in samples)  # a kept signal


def test_the_cli_shows_text_and_follows_new_lines(
    project: Project, tmp_path: Path, start_cli: Callable[..., CliProcess]
) -> None:
    image = build_log_app(project, tmp_path, "v1", "exceptions")
    assert deploy(project, image).state is DeployState.SUCCEEDED
    args = ["logs", "--env", "staging", "--grep", "listening"]
    shown = wait_until(
        lambda: "listening on port" in (out := run_cli(args, project.directory).stdout) and out,
        "the listening line",
    )
    assert " INFO shop.checkout: listening on port " in shown
    assert "version=v1" in shown

    follower = start_cli(
        ["logs", "--env", "staging", "-F", "--level", "error", "-n", "1", "-o", "json"],
        project.directory,
    )
    lines: list[dict[str, object]] = []
    reader = threading.Thread(target=lambda: _collect(follower, lines), daemon=True)
    reader.start()
    # The first line comes in the newest page or followed, whenever the CLI starts.
    assert httpx.get(url_of(project) + "/", timeout=5).status_code == 200
    wait_until(lambda: lines, "the first error line")
    for _ in range(3):
        assert httpx.get(url_of(project) + "/", timeout=5).status_code == 200
    wait_until(lambda: len(lines) >= 4, "three more error lines, followed")
    assert len(lines) == 4  # each line once: none shown twice between page and follow
    assert all(line["level"] == "error" for line in lines)
    os.killpg(follower.pid, signal.SIGINT)
    assert follower.popen.wait(timeout=10) == 0


def _collect(process: CliProcess, into: list[dict[str, object]]) -> None:
    assert process.popen.stdout is not None
    for line in process.popen.stdout:
        into.append(json.loads(line))


def test_the_continuous_watch_samples_the_error_lines_too(project: Project, tmp_path: Path) -> None:
    from conveyor.observe.watch import Watcher

    noisy = build_log_app(project, tmp_path, "v1", "exceptions")
    assert deploy(project, noisy).state is DeployState.SUCCEEDED
    live = release_name("staging", *noisy.split("@"))
    with project.open_store() as store:
        watcher = Watcher(project, store, consumers=())
        try:
            watcher.tick()
            with httpx.Client(base_url=url_of(project), timeout=5) as client:
                for _ in range(5):
                    assert client.get("/").status_code == 200
            # The replica writes its lines as it answers: the next ticks count them.
            wait_until(
                lambda: watcher.tick() and _log_errors(project, live) >= 5,
                "the watch's samples count the error lines",
            )
        finally:
            watcher.lease.release()


def _log_errors(project: Project, release: str) -> int:
    with project.open_store() as store:
        rows = store.ledger.samples.of("staging", release)
    return max((int(row.signals.get("log_errors", 0)) for row in rows), default=0)
