"""Smoke checks against a real HTTP server on 127.0.0.1 and real shell commands."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor.deploy.smoke import (
    SmokeResult,
    SmokeVerdict,
    describe_failures,
    run_smoke,
    smoke_passed,
)
from conveyor.spec.environments import SmokeCheck


class AppServer(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[str]
    drop_first: int  # close this many connections without answering


class AppHandler(BaseHTTPRequestHandler):
    """`/healthz` says ok, `/status/CODE` answers CODE, `/moved` redirects, `/flaky` drops."""

    server: AppServer

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path == "/flaky" and self.server.drop_first > 0:
            self.server.drop_first -= 1
            self.close_connection = True
            return
        if self.path.startswith("/status/"):
            self.answer(int(self.path.removeprefix("/status/")), b"status page")
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/healthz")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.answer(200, b"ok: all good")

    def do_POST(self) -> None:
        self.server.requests.append(f"POST {self.path}")
        self.answer(201, b"created")

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def app() -> Iterator[AppServer]:
    server = AppServer(("127.0.0.1", 0), AppHandler)
    server.requests = []
    server.drop_first = 0
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def url_of(server: AppServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_one(check: SmokeCheck, base_url: str, **options: Any) -> SmokeResult:
    [result] = run_smoke([check], base_url, retry_delay=0.01, **options)
    return result


# -- HTTP checks -------------------------------------------------------------------------


def test_matching_status_passes(app: AppServer) -> None:
    result = run_one(SmokeCheck(http="/healthz"), url_of(app))
    assert result == SmokeResult("GET /healthz", SmokeVerdict.PASSED, "", result.seconds)
    assert app.requests == ["/healthz"]


def test_wrong_status_fails_without_retrying(app: AppServer) -> None:
    result = run_one(SmokeCheck(http="/status/503"), url_of(app), retries=2)
    assert result.verdict is SmokeVerdict.FAILED
    assert result.detail == "GET /status/503: expected 200, got 503"
    assert app.requests == ["/status/503"]  # a wrong answer is a real failure


def test_expected_non_200_status_and_method(app: AppServer) -> None:
    checks = [
        SmokeCheck(http="/status/404", status=404),
        SmokeCheck(name="create", http="/orders", method="POST", status=201),
    ]
    results = run_smoke(checks, url_of(app))
    assert [(r.title, r.verdict) for r in results] == [
        ("GET /status/404", SmokeVerdict.PASSED),
        ("create", SmokeVerdict.PASSED),
    ]
    assert app.requests == ["/status/404", "POST /orders"]


def test_redirects_are_not_followed(app: AppServer) -> None:
    results = run_smoke(
        [SmokeCheck(http="/moved", status=302), SmokeCheck(http="/moved")], url_of(app)
    )
    assert results[0].verdict is SmokeVerdict.PASSED
    assert results[1].detail == "GET /moved: expected 200, got 302"
    assert app.requests == ["/moved", "/moved"]


def test_body_contains(app: AppServer) -> None:
    found = run_one(SmokeCheck(http="/healthz", body_contains="all good"), url_of(app))
    missing = run_one(SmokeCheck(http="/healthz", body_contains="degraded"), url_of(app))
    assert found.verdict is SmokeVerdict.PASSED
    assert missing.verdict is SmokeVerdict.FAILED
    assert missing.detail == "GET /healthz: body does not contain 'degraded'"


def test_base_url_path_prefix_is_kept(app: AppServer) -> None:
    result = run_one(SmokeCheck(http="/healthz"), url_of(app) + "/shop/")
    assert result.verdict is SmokeVerdict.PASSED
    assert app.requests == ["/shop/healthz"]


def test_connection_refused_fails_after_retries() -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    result = run_one(SmokeCheck(http="/healthz"), base_url, retries=2)
    assert result.verdict is SmokeVerdict.FAILED
    assert result.detail.startswith(f"GET /healthz: cannot reach {base_url}")
    assert "Connection refused" in result.detail
    assert result.detail.endswith("(after 3 attempts)")


def test_dropped_connections_are_retried(app: AppServer) -> None:
    app.drop_first = 2
    result = run_one(SmokeCheck(http="/flaky"), url_of(app), retries=2)
    assert result.verdict is SmokeVerdict.PASSED
    assert app.requests == ["/flaky"] * 3


def test_retries_run_out(app: AppServer) -> None:
    app.drop_first = 5
    result = run_one(SmokeCheck(http="/flaky"), url_of(app), retries=1)
    assert result.verdict is SmokeVerdict.FAILED
    assert "disconnected" in result.detail
    assert result.detail.endswith("(after 2 attempts)")
    assert app.requests == ["/flaky"] * 2


def test_no_answer_within_timeout_fails() -> None:
    # A listening socket nobody accepts from: connections open, no answer ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        base_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = run_one(SmokeCheck(http="/healthz", timeout=0.2), base_url, retries=1)
    assert result.verdict is SmokeVerdict.FAILED
    assert result.detail == "GET /healthz: no answer within 0.2s (after 2 attempts)"


# -- command checks ----------------------------------------------------------------------


def test_command_that_exits_zero_passes(tmp_path: Path) -> None:
    result = run_one(SmokeCheck(command="true"), "http://127.0.0.1:1", cwd=tmp_path)
    assert result == SmokeResult("true", SmokeVerdict.PASSED, "", result.seconds)


def test_failing_command_shows_exit_code_and_output_tail(tmp_path: Path) -> None:
    script = "for i in 1 2 3 4 5 6 7; do echo line $i; echo; done; echo oops >&2; exit 3"
    result = run_one(SmokeCheck(name="script", command=script), "http://x", cwd=tmp_path)
    assert result.verdict is SmokeVerdict.FAILED
    assert result.detail.splitlines() == [
        "exited with code 3; output:",
        "line 4",
        "line 5",
        "line 6",
        "line 7",
        "oops",
    ]


def test_long_output_is_cut_to_its_end(tmp_path: Path) -> None:
    script = "printf 'x%.0s' $(seq 2000); echo END; exit 1"
    result = run_one(SmokeCheck(command=script), "http://x", cwd=tmp_path)
    assert result.detail.startswith("exited with code 1; output:\n…")
    assert result.detail.endswith("END")
    assert len(result.detail.split("\n", 1)[1]) == 500


def test_command_sees_url_env_and_cwd(tmp_path: Path) -> None:
    (tmp_path / "marker").write_text("here")
    script = (
        'test "$CONVEYOR_ENV_URL" = http://127.0.0.1:8080 '
        '&& test "$SHOP_MODE" = smoke && test -f marker && test -n "$PATH"'
    )
    passing = run_one(
        SmokeCheck(command=script),
        "http://127.0.0.1:8080",
        env={"SHOP_MODE": "smoke"},
        cwd=tmp_path,
    )
    other_url = run_one(
        SmokeCheck(command=script), "http://127.0.0.1:9", env={"SHOP_MODE": "smoke"}, cwd=tmp_path
    )
    assert passing.verdict is SmokeVerdict.PASSED
    assert other_url.verdict is SmokeVerdict.FAILED


def test_command_is_killed_at_its_timeout(tmp_path: Path) -> None:
    script = "echo starting; sleep 30 & echo $! > child.pid; wait"
    result = run_one(SmokeCheck(command=script, timeout=0.5), "http://x", cwd=tmp_path)
    assert result.verdict is SmokeVerdict.FAILED
    assert result.detail == "timed out after 0.5s; output:\nstarting"
    assert_gone(int((tmp_path / "child.pid").read_text()))


def test_plain_sleep_times_out(tmp_path: Path) -> None:
    result = run_one(SmokeCheck(command="sleep 5", timeout=0.5), "http://x", cwd=tmp_path)
    assert result.verdict is SmokeVerdict.FAILED
    assert result.detail == "timed out after 0.5s"


def test_missing_working_directory_is_a_failure(tmp_path: Path) -> None:
    result = run_one(SmokeCheck(command="true"), "http://x", cwd=tmp_path / "absent")
    assert result.verdict is SmokeVerdict.FAILED
    assert result.detail.startswith("cannot start /bin/sh in")


def assert_gone(pid: int) -> None:
    """The background child was killed with its group: gone, or a zombie awaiting its reaper."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
            return
        if state in {"Z", "X"}:
            return
        time.sleep(0.02)
    os.kill(pid, 9)
    pytest.fail(f"background process {pid} survived the timeout")


# -- the whole run -----------------------------------------------------------------------


def test_every_check_runs_after_a_failure(app: AppServer, tmp_path: Path) -> None:
    checks = [
        SmokeCheck(http="/status/500"),
        SmokeCheck(name="script", command="echo broken; echo again; exit 3"),
        SmokeCheck(http="/healthz", body_contains="ok"),
    ]
    results = run_smoke(checks, url_of(app), cwd=tmp_path)
    assert [r.verdict for r in results] == [
        SmokeVerdict.FAILED,
        SmokeVerdict.FAILED,
        SmokeVerdict.PASSED,
    ]
    assert app.requests == ["/status/500", "/healthz"]
    assert not smoke_passed(results)
    assert describe_failures(results) == (
        "GET /status/500: expected 200, got 500\nscript: exited with code 3; output: broken | again"
    )


def test_all_passing() -> None:
    results = [SmokeResult("a", SmokeVerdict.PASSED), SmokeResult("b", SmokeVerdict.PASSED)]
    assert smoke_passed(results)
    assert smoke_passed([])
    assert describe_failures(results) == ""
