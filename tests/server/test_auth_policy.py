"""The policy file's rules (Argo CD's form) on their own, and `conveyor server`'s first
admin login link."""

from __future__ import annotations

from pathlib import Path

import pytest
import uvicorn

from conftest import MakeProject, run_cli
from conveyor.approvals.users import load_users
from conveyor.errors import ConveyorError
from conveyor.server.auth import Action, Principal, allowed
from conveyor.server.policy import DEFAULT_POLICY, PolicyFile, parse_policy
from conveyor.store import sessions
from conveyor.store.store import Store
from server.conftest import SPEC


def caller(name: str, *roles: str, groups: tuple[str, ...] = ()) -> Principal:
    return Principal(name, frozenset(roles), via="token", groups=frozenset(groups))


@pytest.mark.parametrize(
    ("role", "may"),
    [
        ("viewer", {"read"}),
        ("developer", {"read", "create", "update"}),
        ("reviewer", {"read", "approve"}),
        ("admin", {"read", "create", "update", "approve", "admin"}),
        ("stranger", set()),
    ],
)
def test_the_builtin_roles(role: str, may: set[str]) -> None:
    who = caller("x", role)
    assert {a.value for a in Action if allowed(who, "runs", a, "production")} == may


def test_deny_wins_and_objects_are_globs() -> None:
    policy = parse_policy(
        "p, role:developer, environments, update, prod*, deny\n"
        "p, sre, environments, update, *, allow   # the group\n",
        "policy.csv",
    )
    dev = caller("dev", "developer")
    assert allowed(dev, "environments", Action.UPDATE, "staging", policy)
    assert not allowed(dev, "environments", Action.UPDATE, "production-eu", policy)
    assert allowed(dev, "flags", Action.UPDATE, "production", policy)  # another resource
    sre_dev = caller("ops", "developer", groups=("sre",))
    assert not allowed(sre_dev, "environments", Action.UPDATE, "production", policy)
    sre_viewer = caller("ops", "viewer", groups=("sre",))
    assert allowed(sre_viewer, "environments", Action.UPDATE, "production", policy)


def test_without_its_object_a_check_passes_on_an_allow_for_some_object() -> None:
    policy = parse_policy(
        "p, role:stager, environments, update, staging, allow\n"
        "g, carol, role:stager\n"
        "p, role:developer, runs, create, *, deny\n",
        "policy.csv",
    )
    carol = caller("carol")
    assert allowed(carol, "environments", Action.UPDATE, None, policy)  # the endpoint checks
    assert not allowed(carol, "environments", Action.UPDATE, "production", policy)
    assert not allowed(caller("d", "developer"), "runs", Action.CREATE, None, policy)


def test_roles_hold_roles() -> None:
    policy = parse_policy("g, role:lead, role:reviewer\ng, dana, role:lead\n", "p.csv")
    assert allowed(caller("dana"), "approvals", Action.APPROVE, "production", policy)
    assert not allowed(caller("dana"), "runs", Action.CREATE, None, policy)


def test_anonymous_readers_only_with_the_line() -> None:
    assert not DEFAULT_POLICY.is_public()
    assert parse_policy("g, anonymous, role:viewer\n", "p.csv").is_public()
    anonymous = Principal("anonymous", frozenset({"viewer"}), via="anonymous")
    admin_grant = parse_policy("g, anonymous, role:admin\n", "p.csv")
    assert allowed(anonymous, "runs", Action.READ, None, admin_grant)
    assert not allowed(anonymous, "runs", Action.CREATE, None, admin_grant)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("p, role:developer, runs, launch, *, allow", "policy.csv:2: unknown action 'launch'"),
        ("p, role:developer, runs, create, *, maybe", "the effect is allow or deny"),
        ("p, role:developer, runs, create", "a `p` line has 6 fields"),
        ("x, y, z", "expected `p, subject"),
        ("g, alice", "expected `p, subject"),
    ],
)
def test_a_bad_line_is_named(line: str, error: str) -> None:
    with pytest.raises(ConveyorError, match=error.replace("(", r"\(").replace("`", ".")):
        parse_policy(f"# comment\n{line}\n", "policy.csv")


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "policy.csv"
    file = PolicyFile(path)
    assert file.current() is DEFAULT_POLICY
    path.write_text("g, anonymous, role:viewer\n")
    assert file.current().is_public()
    path.write_text("# nobody anonymous any more\n")
    assert not file.current().is_public()


def test_conveyor_server_prints_the_first_admins_login_link(
    git_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = git_project(SPEC)
    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(options))
    result = run_cli(["server", "--port", "8765", "--admin", "root"], project.root)
    assert result.exit_code == 0, result.stderr
    assert served == [{"host": "127.0.0.1", "port": 8765, "log_level": "warning"}]
    line = next(x for x in result.stdout.splitlines() if x.startswith("Log in as root: "))
    link = line.removeprefix("Log in as root: ")
    assert link.startswith("http://127.0.0.1:8765/login/link/")
    state = project.project().state_dir
    root = load_users(state / "users.yml").find("root")
    assert root is not None and root.roles == ["admin"] and root.email == "root@localhost"
    with Store(state) as store:
        used = sessions.consume_login_link(store.engine, link.rsplit("/", 1)[1])
        assert used.user == "root" and used.refused is None
        again = sessions.consume_login_link(store.engine, link.rsplit("/", 1)[1])
        assert again.refused is sessions.LinkRefusal.USED
