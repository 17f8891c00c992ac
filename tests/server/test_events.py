"""The one live stream: a run's events reach a subscriber of its topic, and a job's log
lines reach a subscriber of the log's topic, from a real server over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx

from conftest import CliProcess, wait_until
from conveyor.errors import NotFoundError
from conveyor.server.logs import read_range
from server.conftest import MakeServer, ServerUnderTest

StartCli = Callable[..., CliProcess]

SLOW_SPEC = """\
version: 1
name: demo
jobs:
  talk:
    run: |
      echo first line
      sleep 2
      echo second line
"""


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, object]]]:
    kind = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            yield kind, json.loads(line[len("data: ") :])


def test_a_run_s_events_reach_a_subscriber_of_runs(
    served: ServerUnderTest, start_cli: StartCli
) -> None:
    seen: list[tuple[str, dict[str, object]]] = []
    headers = served.as_user("viewer")
    with served.client.stream(
        "GET", "/api/v1/events", params={"topic": "runs"}, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        runner = start_cli(["run"], served.project.root)
        for kind, data in sse_events(response):
            seen.append((kind, data))
            if kind == "run.state" and data["state"] in ("success", "failed"):
                break
        runner.popen.wait(timeout=30)
    kinds = [kind for kind, _ in seen]
    assert "run.created" in kinds and "job.state" in kinds
    assert seen[-1][1]["state"] == "success"


def test_the_stream_needs_a_login(served: ServerUnderTest) -> None:
    assert served.client.get("/api/v1/events").status_code == 401


def test_a_live_log_streams_line_by_line(make_server: MakeServer, start_cli: StartCli) -> None:
    served = make_server(SLOW_SPEC)
    runner = start_cli(["run"], served.project.root)
    try:
        run_id = _wait_for_running_job(served)
        wait_until(lambda: b"first line" in _log_so_far(served, run_id), "the first line")
        texts: list[str] = []
        with served.client.stream(
            "GET",
            "/api/v1/events",
            params={"topic": f"log:{run_id}:talk"},
            headers=served.as_user("viewer"),
            timeout=30,
        ) as response:
            for kind, data in sse_events(response):
                if kind == "log":
                    texts.append(str(data["text"]))
                if kind == "log.end":
                    break
    finally:
        runner.popen.wait(timeout=30)
    # A stream starts after the lines written so far (a viewer reads those as a range).
    whole = "".join(texts)
    assert "second line" in whole and "first line" not in whole


def _log_so_far(served: ServerUnderTest, run_id: int) -> bytes:
    try:
        return read_range(served.context, run_id, "talk", 0, 1 << 20).data
    except NotFoundError:  # the job is not recorded yet
        return b""


def _wait_for_running_job(served: ServerUnderTest) -> int:
    def running() -> int | None:
        run = served.context.store.latest_run()
        return run.id if run is not None else None

    found: int = wait_until(running, "a run to start")
    return found
