"""The users file: users, tokens hashed with scrypt, atomic writes, located errors."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.approvals import users as users_module
from conveyor.approvals.model import Refusal
from conveyor.approvals.users import (
    Authenticated,
    NotAuthenticated,
    add_user,
    authenticate,
    issue_token,
    load_users,
    revoke_token,
    users_path,
)
from conveyor.errors import ConveyorError, NotFoundError, SpecError

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "users.yml"
    add_user(path, "bob", "bob@example.org", ["reviewer"], ["sre"])
    return path


def refusal(found: Authenticated | NotAuthenticated) -> Refusal:
    assert isinstance(found, NotAuthenticated), f"{found} was accepted"
    return found.refused.code


def test_a_token_authenticates_its_owner_and_only_its_hash_is_kept(users_file: Path) -> None:
    issued = issue_token(users_file, "bob", None, NOW)

    found = authenticate(load_users(users_file), issued.token, NOW)

    prefix, token_id, secret = issued.token.split("_", 2)
    assert (prefix, token_id) == ("cvy", issued.entry.id)
    assert isinstance(found, Authenticated)
    assert (found.user.name, found.user.roles, found.token_id) == ("bob", ["reviewer"], token_id)
    text = users_file.read_text()
    assert secret not in text
    assert issued.entry.hash.startswith("scrypt$16384$8$1$")
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600


def test_a_wrong_secret_an_unknown_id_and_a_malformed_token_are_refused(
    users_file: Path,
) -> None:
    issued = issue_token(users_file, "bob", None, NOW)
    users = load_users(users_file)
    token_id = issued.entry.id

    assert refusal(authenticate(users, f"cvy_{token_id}_nope", NOW)) is Refusal.WRONG_SECRET
    assert refusal(authenticate(users, "cvy_0123456789ab_nope", NOW)) is Refusal.UNKNOWN_TOKEN
    assert refusal(authenticate(users, "Bearer x", NOW)) is Refusal.UNKNOWN_TOKEN


def test_a_token_expires(users_file: Path) -> None:
    issued = issue_token(users_file, "bob", 30 * 86400, NOW)
    users = load_users(users_file)

    before = authenticate(users, issued.token, NOW + timedelta(days=29))
    after = authenticate(users, issued.token, NOW + timedelta(days=30))

    assert isinstance(before, Authenticated)
    assert refusal(after) is Refusal.EXPIRED_TOKEN
    assert issued.entry.expires == NOW + timedelta(days=30)


def test_a_revoked_token_is_kept_and_refused_as_revoked(users_file: Path) -> None:
    kept = issue_token(users_file, "bob", None, NOW)
    lost = issue_token(users_file, "bob", None, NOW)

    revoke_token(users_file, "bob", lost.entry.id, NOW)
    users = load_users(users_file)

    assert refusal(authenticate(users, lost.token, NOW)) is Refusal.REVOKED_TOKEN
    assert isinstance(authenticate(users, kept.token, NOW), Authenticated)
    with pytest.raises(NotFoundError, match="bob has no token 'ffffffffffff'"):
        revoke_token(users_file, "bob", "ffffffffffff", NOW)


def test_names_are_unique_and_tokens_need_a_known_user(users_file: Path) -> None:
    with pytest.raises(ConveyorError, match="already has a user 'bob'"):
        add_user(users_file, "Bob", "other@example.org", [], [])
    with pytest.raises(ConveyorError, match="email"):
        add_user(users_file, "robert", "bob@example.org", [], [])
    with pytest.raises(NotFoundError, match="no user 'zoe'"):
        issue_token(users_file, "zoe", None, NOW)


def test_a_bad_users_file_names_the_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "users.yml"
    path.write_text("users:\n  - name: bob\n    email: bob@example.org\n    role: [reviewer]\n")

    with pytest.raises(SpecError) as raised:
        load_users(path)

    assert raised.value.file == str(path)
    assert (raised.value.line, raised.value.key_path) == (4, "users[0].role")
    assert "unknown key 'role'" in raised.value.message
    assert raised.value.hint == "did you mean 'roles'?"


def test_a_users_file_anyone_may_edit_is_not_trusted(users_file: Path) -> None:
    users_file.chmod(0o666)

    with pytest.raises(ConveyorError, match="writable by anyone"):
        load_users(users_file)


def test_a_users_file_its_group_may_edit_is_not_trusted(users_file: Path) -> None:
    users_file.chmod(0o660)

    with pytest.raises(ConveyorError) as raised:
        load_users(users_file)

    assert raised.value.message == (
        f"the users file {users_file} is writable by its group (mode 0660): it is not trusted"
    )
    assert raised.value.hint == f"chmod 600 {users_file}"


def test_a_users_file_in_a_folder_others_may_write_is_not_trusted(users_file: Path) -> None:
    users_file.parent.chmod(0o775)

    with pytest.raises(ConveyorError, match="could replace the file"):
        load_users(users_file)

    users_file.parent.chmod(0o1777)  # sticky, like /tmp: others cannot replace it
    assert load_users(users_file).users


def test_the_users_file_is_in_the_state_folder_unless_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert users_path(tmp_path) == tmp_path / "users.yml"
    monkeypatch.setenv("CONVEYOR_USERS_FILE", "/etc/conveyor/users.yml")
    assert users_path(tmp_path) == Path("/etc/conveyor/users.yml")


def test_a_missing_users_file_has_no_users(tmp_path: Path) -> None:
    assert load_users(tmp_path / "absent.yml").users == []


def test_a_token_checked_once_is_still_refused_once_revoked_or_wrong(
    users_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = issue_token(users_file, "bob", None, NOW)
    token_id = issued.entry.id
    hashed: list[str] = []
    real = users_module._scrypt

    def counted(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        hashed.append(secret)
        return real(secret, salt, n, r, p)

    monkeypatch.setattr(users_module, "_scrypt", counted)
    for _ in range(3):  # a server checks the same token at every request: scrypt once
        assert isinstance(authenticate(load_users(users_file), issued.token, NOW), Authenticated)
    assert len(hashed) == 1
    wrong = authenticate(load_users(users_file), f"cvy_{token_id}_nope", NOW)
    assert refusal(wrong) is Refusal.WRONG_SECRET
    revoke_token(users_file, "bob", token_id, NOW)
    assert refusal(authenticate(load_users(users_file), issued.token, NOW)) is Refusal.REVOKED_TOKEN
