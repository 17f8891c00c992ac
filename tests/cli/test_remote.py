"""`conveyor --server URL ...`: the CLI against a server, over real HTTP (a real uvicorn on
127.0.0.1 serving the app with the API contract's routes, tests/cli/remote_server.py).
Each command prints what the same command prints locally for the same data."""

from __future__ import annotations

import os
from unittest import mock

import pytest

import conveyor.cli.remote as remote_client
from cli.remote_server import FakeServer, fake_server
from conftest import run_cli

__all__ = ["fake_server"]


@pytest.fixture
def server(fake_server: FakeServer) -> FakeServer:
    """A server whose project has two runs: run 1 succeeded, run 2 (on a branch) too."""
    project = fake_server.project
    project.run()
    project.git("checkout", "-q", "-b", "feature")
    project.commit({"README": "hello\n"}, "a feature")
    project.run()
    return fake_server


def test_status_prints_what_the_local_status_prints(server: FakeServer) -> None:
    for args in (["status", "1"], ["status"], ["status", "2", "-o", "json"]):
        remote = server.cli(*args)
        local = server.local(*args)

        assert remote.exit_code == 0, remote.stderr
        assert remote.stdout == local.stdout
    asked = server.requests("/api/v1/runs")
    assert {seen.authorization for seen in asked} == {f"Bearer {server.tokens['developer']}"}
    assert [seen.path for seen in asked][:2] == ["/api/v1/runs/1", "/api/v1/runs"]
    assert asked[1].query["limit"] == ["1"]  # the latest run: one item


def test_history_pages_and_filters_as_the_local_history(server: FakeServer) -> None:
    for args in (
        ["history"],
        ["history", "-n", "1"],
        ["history", "--branch", "main", "-o", "json"],
    ):
        remote = server.cli(*args)

        assert remote.exit_code == 0, remote.stderr
        assert remote.stdout == server.local(*args).stdout
    queries = [seen.query for seen in server.requests("/api/v1/runs")]
    assert queries[1] == {"limit": ["1"]}
    assert queries[2] == {"branch": ["main"], "limit": ["20"]}


def test_history_follows_the_cursor_from_page_to_page(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.project.run()  # a third run
    monkeypatch.setattr(remote_client, "PAGE_LIMIT", 2)

    paged = server.cli("history", "-o", "json")

    assert [run["id"] for run in paged.json()] == [3, 2, 1]
    assert [seen.query.get("cursor") for seen in server.seen] == [None, ["2"]]
    assert [seen.query["limit"] for seen in server.seen] == [["2"], ["2"]]


def test_logs_read_in_ranges_print_what_the_local_logs_print(server: FakeServer) -> None:
    for args in (["logs", "1", "build"], ["logs", "1"], ["logs", "2", "test", "-o", "json"]):
        remote = server.cli(*args)

        assert remote.exit_code == 0, remote.stderr
        assert remote.stdout == server.local(*args).stdout
    ranges = [s.query.get("offset") for s in server.requests("/api/v1/runs/1/jobs/build/log")]
    assert len(ranges) > 1 and ranges[0] == ["0"]  # a log longer than one answer


def test_a_run_that_is_not_there_is_not_found_with_the_servers_reason(
    server: FakeServer,
) -> None:
    remote = server.cli("status", "99")
    job = server.cli("logs", "1", "nosuchjob")

    assert remote.exit_code == 4
    assert "run" in remote.stderr and "99" in remote.stderr
    assert job.exit_code == 4 and "its jobs: build, test" in job.stderr


def test_run_triggers_and_follows_the_run_to_its_end(fake_server: FakeServer) -> None:
    started = fake_server.cli("run", "--branch", "main", "-o", "json")

    assert started.exit_code == 0, started.stderr
    assert started.json() == {
        "run": 1,
        "state": "success",
        "jobs": {"build": "success", "test": "success"},
        "failed": [],
    }
    trigger = fake_server.requests("/api/v1/runs")[0]
    assert (trigger.method, trigger.body) == ("POST", {"commit": None, "branch": "main"})
    assert "run 1 · pipeline demo · 2 of 2 jobs to run" in started.stderr
    assert "built" in started.stderr  # a finished job's log, before its line
    assert "run 1 success in" in started.stderr


def test_run_exits_1_when_the_run_fails_and_detach_does_not_wait(
    fake_server: FakeServer,
) -> None:
    fake_server.project.commit({"conveyor.yml": "version: 1\njobs:\n  bad: {run: 'exit 3'}\n"})

    failed = fake_server.cli("run", "-q")
    rerun = fake_server.cli("run", "-q", "--rerun-failed", "1")
    detached = fake_server.cli("run", "--detach")

    assert failed.exit_code == 1, failed.stderr
    assert "see the logs: conveyor logs 1 bad" in failed.stdout
    assert rerun.exit_code == 1 and "run 2 failed in" in rerun.stdout
    assert [s.path for s in fake_server.requests("/api/v1/runs/1/rerun")] == [
        "/api/v1/runs/1/rerun-failed"
    ]
    assert detached.exit_code == 0 and "run 3 started on" in detached.stdout


def test_flags_set_kill_and_ls_as_locally(server: FakeServer) -> None:
    turned_on = server.cli("flags", "set", "production", "banner", "--on", user="admin")
    listed = server.cli("flags", "ls", "production")
    local = server.local("flags", "ls", "production")
    rolled = server.cli("flags", "rollout", "production", "banner", "25", "--stickiness", "tenant")
    killed = server.cli("flags", "kill", "production", "banner", user="admin")

    assert turned_on.exit_code == 0, turned_on.stderr
    assert "production/banner: on · everyone · version 1" in turned_on.stdout
    assert listed.stdout == local.stdout and "banner" in local.stdout
    assert "production/banner: on · rollout 25% on tenant · version 2" in rolled.stdout
    assert "production/banner: killed (version 3)" in killed.stdout
    rollout = server.requests("/api/v1/environments/production/flags/banner/rollout")[0]
    assert rollout.body == {"percentage": 25, "stickiness": "tenant"}
    put = server.requests("/api/v1/environments/production/flags/banner")[0]
    assert (put.method, put.body) == ("PUT", {"enabled": True})


def test_commands_without_a_server_equivalent_are_refused(server: FakeServer) -> None:
    for args, name in (
        (["deploy", "staging", "shop:1"], "deploy"),
        (["env", "stop", "x"], "env stop"),
    ):
        refused = server.cli(*args)

        assert refused.exit_code == 2
        assert f"`conveyor {name}` runs locally only" in refused.stderr
    assert server.seen == []
    option = server.cli("run", "-j", "build")
    assert option.exit_code == 2 and "--job runs locally only" in option.stderr


def test_the_server_can_come_from_the_environment(server: FakeServer) -> None:
    found = run_cli(["status", "1"], server.elsewhere)  # no project here: it fails
    env = {"CONVEYOR_SERVER": server.url, "CONVEYOR_TOKEN": server.tokens["viewer"]}
    with mock.patch.dict(os.environ, env):
        remote = run_cli(["status", "1"], server.elsewhere)

    assert found.exit_code != 0
    assert remote.exit_code == 0 and remote.stdout == server.local("status", "1").stdout


def test_logs_follow_streams_a_job_log_through_the_event_stream(server: FakeServer) -> None:
    followed = server.cli("logs", "1", "build", "--follow")

    assert followed.exit_code == 0, followed.stderr
    assert followed.stdout == server.local("logs", "1", "build").stdout
    assert followed.stdout.splitlines()[-2:] == ["built", "second line"]
