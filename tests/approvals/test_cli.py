"""`conveyor users ...`, `conveyor approve|reject` and `conveyor approvals ls|show`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from approvals.conftest import DIGEST, REPOSITORY
from conftest import CliResult, run_cli
from conveyor.service import approvals as service
from conveyor.service.project import Project
from conveyor.spec.environments import Approval
from conveyor.store.records import EventKind, NewRun

SPEC = "version: 1\njobs:\n  noop: {run: 'true'}\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "conveyor.yml").write_text(SPEC)
    return tmp_path


def cli(root: Path, *args: str) -> CliResult:
    return run_cli(list(args), root)


def add_reviewer(root: Path, name: str) -> str:
    """Add `name` as a reviewer and return their new token."""
    added = cli(root, "users", "add", name, "--email", f"{name}@example.org", "--role", "reviewer")
    assert added.exit_code == 0, added.stderr
    issued = cli(root, "users", "token", name, "-o", "json")
    assert issued.exit_code == 0, issued.stderr
    token: str = issued.json()["token"]
    return token


def token_file(root: Path, token: str, name: str = "token") -> str:
    """The token in a file only its owner may read, as `--token-file` takes it."""
    path = root / name
    path.write_text(token + "\n")
    path.chmod(0o600)
    return str(path)


def waiting_run(root: Path, required: int = 1) -> int:
    """A run (by ada, started by tom) waiting for approval to production."""
    with Project.locate(root / "conveyor.yml").open_store() as store:
        run = store.create_run(
            NewRun(pipeline="shop", author="ada <ada@example.org>", actor="tom"), []
        )
        service.request_approval(
            store,
            run_id=run,
            environment="production",
            repository=REPOSITORY,
            digest=DIGEST,
            approval=Approval(required=required, roles=["reviewer"]),
        )
    return run


def test_users_are_added_given_tokens_listed_without_secrets_and_revoked(root: Path) -> None:
    added = cli(
        root,
        "users",
        "add",
        "bob",
        "--email",
        "bob@example.org",
        "--role",
        "reviewer",
        "--group",
        "sre",
    )
    issued = cli(root, "users", "token", "bob", "--expires", "30d")
    token = issued.stdout.strip()
    token_id = token.split("_")[1]

    listed = cli(root, "users", "ls", "-o", "json")
    revoked = cli(root, "users", "revoke", "bob", token_id)
    after = cli(root, "users", "ls")

    assert added.exit_code == 0 and "added bob" in added.stdout
    assert issued.exit_code == 0 and token.startswith(f"cvy_{token_id}_")
    assert "not shown again" in issued.stderr
    [bob] = listed.json()
    assert (bob["name"], bob["roles"], bob["groups"]) == ("bob", ["reviewer"], ["sre"])
    assert [t["id"] for t in bob["tokens"]] == [token_id]
    assert bob["tokens"][0]["expires"] is not None
    assert token.split("_", 2)[2] not in listed.stdout
    assert "hash" not in listed.stdout
    assert revoked.exit_code == 0
    assert f"{token_id} (revoked)" in after.stdout
    assert (root / ".conveyor" / "users.yml").is_file()


def test_a_bad_expiry_and_an_unknown_user_are_clear_errors(root: Path) -> None:
    cli(root, "users", "add", "bob", "--email", "bob@example.org", "--role", "reviewer")

    bad = cli(root, "users", "token", "bob", "--expires", "soon")
    unknown = cli(root, "users", "token", "zoe")

    assert bad.exit_code == 2 and "--expires: invalid duration 'soon'" in bad.stderr
    assert unknown.exit_code == 4 and "no user 'zoe'" in unknown.stderr  # not found


def test_approve_with_a_token_and_show_the_run(root: Path) -> None:
    bob = add_reviewer(root, "bob")
    run = waiting_run(root)

    approved = cli(
        root, "approve", str(run), "--token-file", token_file(root, bob), "-m", "tested on staging"
    )
    shown = cli(root, "approvals", "show", str(run))
    listed = cli(root, "approvals", "ls", "-o", "json")

    assert approved.exit_code == 0, approved.stderr
    assert f"run {run} to production: approved (1 of 1 approvals)" in approved.stdout
    assert "approved by bob: tested on staging" in shown.stdout
    [status] = listed.json()
    assert (status["state"], status["request"]["run_id"]) == ("approved", run)
    assert status["approvals"][0]["identity"] == "bob"


def test_reject_takes_the_token_from_the_environment(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    carol = add_reviewer(root, "carol")
    run = waiting_run(root)
    monkeypatch.setenv("CONVEYOR_TOKEN", carol)

    rejected = cli(root, "reject", str(run), "--comment", "freeze week")
    pending = cli(root, "approvals", "ls", "--pending")

    assert rejected.exit_code == 0, rejected.stderr
    assert "rejected" in rejected.stdout
    assert pending.stdout.strip() == "no approval requests pending"


def test_a_refused_approval_exits_non_zero_with_the_reason_and_is_recorded(root: Path) -> None:
    add_reviewer(root, "bob")
    ada = add_reviewer(root, "ada")
    run = waiting_run(root)

    own = cli(root, "approve", str(run), "--token-file", token_file(root, ada))
    anonymous = cli(root, "approve", str(run))
    missing = cli(root, "approve", "99", "--token-file", token_file(root, ada))

    # docs/cli.md#exit-codes: the human gate said no (1); nothing to decide on (4).
    assert own.exit_code == 1
    assert "refused: ada wrote the change (ada <ada@example.org>)" in own.stderr
    assert "hint: another person" in own.stderr
    assert anonymous.exit_code == 1 and "refused: no token" in anonymous.stderr
    assert missing.exit_code == 4 and "refused: run 99 does not exist" in missing.stderr
    with Project.locate(root / "conveyor.yml").open_store() as store:
        refused = [e for e in store.events() if e.kind == EventKind.APPROVAL_REFUSED.value]
        assert [e.data["code"] for e in refused] == ["author", "unknown-token", "no-run"]
        assert store.audit_verify() == []
    assert "Traceback" not in own.stderr


def test_showing_a_run_that_does_not_exist_is_an_error(root: Path) -> None:
    shown = cli(root, "approvals", "show", "42")

    assert shown.exit_code == 4  # not found
    assert "error: no run #42" in shown.stderr


def test_a_token_on_the_command_line_is_refused_and_nothing_recorded(root: Path) -> None:
    bob = add_reviewer(root, "bob")
    run = waiting_run(root)
    with Project.locate(root / "conveyor.yml").open_store() as store:
        before = len(store.events())

    given = cli(root, "approve", str(run), "--token", bob)
    rejected = cli(root, "reject", str(run), "--token", bob)

    for result in (given, rejected):
        assert result.exit_code == 2
        assert "--token is refused: a token on the command line is visible" in result.stderr
        assert "CONVEYOR_TOKEN" in result.stderr and "--token-file" in result.stderr
        assert bob not in result.stderr + result.stdout
    with Project.locate(root / "conveyor.yml").open_store() as store:
        assert len(store.events()) == before
    assert "--token " not in cli(root, "approve", "--help").stdout


def test_the_token_comes_from_standard_input(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bob = add_reviewer(root, "bob")
    run = waiting_run(root)
    monkeypatch.setattr("sys.stdin", io.StringIO(bob + "\n"))

    approved = cli(root, "approve", str(run), "--token-file", "-")

    assert approved.exit_code == 0, approved.stderr
    assert "approved (1 of 1 approvals)" in approved.stdout


def test_a_token_file_others_may_read_is_refused(root: Path) -> None:
    bob = add_reviewer(root, "bob")
    run = waiting_run(root)
    path = token_file(root, bob)
    Path(path).chmod(0o640)

    shared = cli(root, "approve", str(run), "--token-file", path)
    missing = cli(root, "approve", str(run), "--token-file", str(root / "nowhere"))

    assert shared.exit_code == 2
    assert f"the token file {path} is readable by other users" in shared.stderr
    assert f"chmod 600 {path}" in shared.stderr
    assert missing.exit_code == 2 and "cannot read the token file" in missing.stderr


def test_a_group_writable_users_file_stops_every_command_that_reads_it(root: Path) -> None:
    bob = add_reviewer(root, "bob")
    run = waiting_run(root)
    users = root / ".conveyor" / "users.yml"
    users.chmod(0o620)
    with Project.locate(root / "conveyor.yml").open_store() as store:
        before = len(store.events())

    listed = cli(root, "users", "ls")
    approved = cli(root, "approve", str(run), "--token-file", token_file(root, bob))

    for result in (listed, approved):
        assert result.exit_code == 2
        assert f"the users file {users} is writable by its group" in result.stderr
        assert f"hint: chmod 600 {users}" in result.stderr
    with Project.locate(root / "conveyor.yml").open_store() as store:
        assert len(store.events()) == before


def test_a_non_approver_is_refused_as_a_gate_exit_1_with_a_json_error(root: Path) -> None:
    add_reviewer(root, "bob")
    added = cli(root, "users", "add", "eve", "--email", "eve@example.org", "--role", "dev")
    assert added.exit_code == 0, added.stderr
    issued = cli(root, "users", "token", "eve", "-o", "json")
    eve = str(issued.json()["token"])
    run = waiting_run(root)

    refused = cli(root, "approve", str(run), "--token-file", token_file(root, eve), "-o", "json")

    assert refused.exit_code == 1
    error = json.loads(refused.stderr)["error"]
    assert (error["code"], error["exit_code"]) == ("failed", 1)
    assert error["message"].startswith("refused: ")
