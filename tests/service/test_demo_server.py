"""The demo leaves `conveyor server` running over its project: it answers, a second start
replaces the first, and stopping it ends the process."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conftest import MakeProject, process_alive, wait_until
from conveyor.service.demo_server import start_demo_server, stop_demo_server

SPEC = """\
version: 1
name: demo
jobs:
  build:
    run: echo built
"""


@pytest.mark.real
def test_the_demo_server_answers_and_is_replaced_then_stopped(
    git_project: MakeProject, tmp_path: Path
) -> None:
    project = git_project(SPEC).project()
    project.ensure_state_dir()
    pid_dir = tmp_path / "pids"
    first = start_demo_server(project, pid_dir)
    try:
        assert httpx.get(first.url + "/healthz").json()["status"] == "ok"
        second = start_demo_server(project, pid_dir)
        wait_until(lambda: not process_alive(first.pid), "the first server to stop")
        assert httpx.get(second.url + "/healthz").status_code == 200
    finally:
        assert stop_demo_server(pid_dir)
    wait_until(lambda: not process_alive(second.pid), "the server to stop")
    assert not stop_demo_server(pid_dir)
