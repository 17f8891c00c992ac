"""`conveyor --server URL ...` when things go wrong: no server, no or a bad token, a role
that does not allow it, an answer that is not Conveyor's; and the commands whose answers
the tests set (approvals, environments, audit)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

from cli.remote_server import FakeServer, fake_server
from conftest import run_cli
from conveyor.approvals.model import (
    ApprovalRequest,
    ApprovalState,
    ApprovalStatus,
    Decision,
    Verdict,
)
from conveyor.service.jsonable import to_jsonable

__all__ = ["fake_server"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_no_server_at_the_url_is_an_infrastructure_error_with_a_hint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    text = run_cli(["--server", url, "status"], tmp_path)
    as_json = run_cli(["--server", url, "history", "-o", "json"], tmp_path)

    assert text.exit_code == 3
    assert f"error: no Conveyor server answers at {url}" in text.stderr
    assert "hint: start it with `conveyor server`" in text.stderr
    error = json.loads(as_json.stderr)["error"]
    assert (error["code"], error["exit_code"]) == ("infrastructure", 3)


def test_a_server_url_that_is_not_a_url_is_a_usage_error(tmp_path: Path) -> None:
    found = run_cli(["--server", "localhost:8080", "status"], tmp_path)

    assert found.exit_code == 2 and "--server takes a URL" in found.stderr


def test_without_a_token_the_server_asks_you_to_log_in(fake_server: FakeServer) -> None:
    found = fake_server.cli("status", "1", user=None)
    wrong = fake_server.cli("status", "1", user=None, CONVEYOR_TOKEN="cvy_nope_nope")

    assert found.exit_code == 1
    assert "the server refused you" in found.stderr and "hint: log in" in found.stderr
    assert wrong.exit_code == 1 and "the server refused you" in wrong.stderr


def test_a_role_without_the_right_is_not_allowed(fake_server: FakeServer) -> None:
    found = fake_server.cli("flags", "set", "production", "banner", "--on", user="viewer")

    assert found.exit_code == 1
    assert "not allowed: viewer may not update flags" in found.stderr


def test_a_token_comes_from_a_file_never_from_the_command_line(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(fake_server.tokens["viewer"] + "\n")
    token_file.chmod(0o600)
    leaked = tmp_path / "leaked"
    leaked.write_text(fake_server.tokens["viewer"])
    leaked.chmod(0o644)
    args = ["--server", fake_server.url, "--token-file"]

    found = run_cli([*args, str(token_file), "whoami"], fake_server.elsewhere)
    readable = run_cli([*args, str(leaked), "whoami"], fake_server.elsewhere)
    on_line = fake_server.cli("approve", "1", "--token", "cvy_x")

    with mock.patch("sys.stdin", io.StringIO(fake_server.tokens["admin"] + "\n")):
        piped = run_cli([f"--server={fake_server.url}", "--token-file", "-", "whoami"], tmp_path)

    assert found.exit_code == 0, found.stderr
    assert f"viewer (roles: viewer) on {fake_server.url}" in found.stdout
    assert piped.exit_code == 0 and piped.stdout.startswith("admin (roles: admin)")
    assert readable.exit_code == 2 and "readable by other users" in readable.stderr
    assert on_line.exit_code == 2 and "--token is refused" in on_line.stderr


def test_an_answer_that_is_not_json_is_an_infrastructure_error(fake_server: FakeServer) -> None:
    found = fake_server.cli("env", "ls")  # the test set no answer: "not json"

    assert found.exit_code == 3
    assert "did not answer as a Conveyor server does: not JSON" in found.stderr


def test_an_answer_of_the_wrong_shape_is_an_infrastructure_error(fake_server: FakeServer) -> None:
    fake_server.answers["/api/v1/environments/production"] = {"name": "production"}

    found = fake_server.cli("env", "status", "production")

    assert found.exit_code == 3 and "did not answer as a Conveyor server does" in found.stderr


def status(state: ApprovalState, approvals: int) -> ApprovalStatus:
    request = ApprovalRequest(
        id=5,
        run_id=7,
        environment="production",
        repository="shop",
        digest="sha256:" + "ab" * 32,
        author="Ada <ada@example.org>",
        actor="ada",
        os_user="ada",
        required=1,
        roles=("reviewer",),
        groups=(),
        requested_at=1_700_000_000.0,
        timeout_at=1_700_003_600.0,
        not_before=1_700_000_000.0,
    )
    decision = Decision(6, 5, Verdict.APPROVE, "reviewer", "r@example.org", "ok", 1.7e9, "t-1")
    return ApprovalStatus(request, state, (decision,) * approvals, None, None)


def test_approve_posts_the_decision_and_prints_the_summary(fake_server: FakeServer) -> None:
    approved = status(ApprovalState.APPROVED, 1)
    fake_server.answers["/api/v1/runs/7/approve"] = to_jsonable(approved)

    text = fake_server.cli("approve", "7", "-m", "looks good", "-e", "production", user="reviewer")
    as_json = fake_server.cli("approve", "7", "-o", "json", user="reviewer")

    assert text.exit_code == 0, text.stderr
    assert text.stdout == "run 7 to production: approved (1 of 1 approvals)\n"
    assert as_json.json() == to_jsonable(approved)
    sent = fake_server.requests("/api/v1/runs/7/approve")[0]
    assert sent.body == {"environment": "production", "comment": "looks good"}
    assert sent.authorization == f"Bearer {fake_server.tokens['reviewer']}"


def test_approvals_ls_lists_the_pending_requests(fake_server: FakeServer) -> None:
    pending = status(ApprovalState.PENDING, 0)
    fake_server.answers["/api/v1/approvals"] = {
        "items": [to_jsonable(pending)],
        "next_cursor": None,
    }

    found = fake_server.cli("approvals", "ls", "--pending")

    assert found.exit_code == 0, found.stderr
    row = found.stdout.splitlines()[1]
    assert row.startswith("7    production   shop@sha256:abababababab  pending  0/1")
    assert fake_server.requests("/api/v1/approvals")[0].query["pending"] == ["true"]


def test_env_ls_and_audit_verify_print_the_servers_answers(fake_server: FakeServer) -> None:
    from conveyor.service.environments import list_environments

    project = fake_server.project.project()
    with project.open_store() as store:
        views = list_environments(project, store)
    fake_server.answers["/api/v1/environments"] = {"items": to_jsonable(views), "next_cursor": None}
    verdict = {"entries": 3, "intact": True, "problems": [], "checked_against": None,
               "signed": None, "notes": []}  # fmt: skip
    fake_server.answers["/api/v1/audit/verify"] = verdict

    listed = fake_server.cli("env", "ls")
    local = fake_server.local("env", "ls")
    verified = fake_server.cli("audit", "verify")

    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout == local.stdout
    assert verified.exit_code == 0 and "✓ 3 entries, the chain is intact" in verified.stdout


def test_a_local_command_does_not_import_the_http_client(tmp_path: Path) -> None:
    code = (
        "import sys, contextlib, io\n"
        "from conveyor.cli.app import run_cli\n"
        "quiet = io.StringIO()\n"
        "with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):\n"
        "    run_cli(['history'])\n"
        "print('httpx' in sys.modules, 'conveyor.cli.remote' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_SERVER"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
        check=True,
    )  # fmt: skip

    assert done.stdout.split() == ["False", "False"]


def test_approvals_show_and_env_history_print_as_locally(fake_server: FakeServer) -> None:
    from conveyor.store.ledger.history import HistoryEntry

    fake_server.answers["/api/v1/runs/7/approvals"] = {
        "items": [to_jsonable(status(ApprovalState.APPROVED, 1))],
        "next_cursor": None,
    }
    entry = HistoryEntry("deploy", "staging", "staging-shop-1", "sha256:" + "cd" * 32, "ada",
                         1.7e9, 1.7e9 + 3, "succeeded", None, 4)  # fmt: skip
    fake_server.answers["/api/v1/environments/staging/history"] = {
        "items": [to_jsonable(entry)],
        "next_cursor": None,
    }

    shown = fake_server.cli("approvals", "show", "7")
    history = fake_server.cli("env", "history", "staging")

    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.splitlines()[:2] == [
        "run 7 to production: approved (1 of 1 approvals)",
        "  image shop@sha256:" + "ab" * 32,
    ]
    assert "approved by reviewer: ok" in shown.stdout
    assert history.exit_code == 0, history.stderr
    row = history.stdout.splitlines()[1].split()
    assert row[2:] == ["deploy", "4", "staging-shop-1", "sha256:cdcdcdcdcdcd", "ada", "succeeded"]


def test_the_server_variable_has_one_name() -> None:
    from conveyor.cli import app, target

    assert app.SERVER_ENV == target.SERVER_ENV == "CONVEYOR_SERVER"
