"""The users file: who may approve, with which roles and groups, and their hashed tokens.

It lives outside the repository (`<state_dir>/users.yml`, or CONVEYOR_USERS_FILE), so the
author of a change cannot add themselves. A token reads `cvy_<id>_<secret>`: the id finds
its entry, and only a salted scrypt hash of the secret is kept.

    users:
      - name: bob
        email: bob@example.org
        roles: [reviewer]
        groups: [sre]
        tokens:
          - {id: 3f2a9c01b7de, hash: "scrypt$16384$8$1$...", created: ..., expires: ...}
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.approvals.model import Refusal, Refused
from conveyor.errors import ConveyorError, NotFoundError

USERS_FILE_ENV = "CONVEYOR_USERS_FILE"
USERS_FILENAME = "users.yml"
TOKEN_PREFIX = "cvy"  # noqa: S105 (a token starts with it; not a secret)
_TOKEN_ID_PATTERN = r"^[0-9a-f]{12}$"  # noqa: S105 (a pattern)
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_HEADER = "# Conveyor users: identities, roles and hashed tokens (docs/approvals.md).\n"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenEntry(_Strict):
    id: str = Field(pattern=_TOKEN_ID_PATTERN, description="Finds the entry; not secret.")
    hash: str = Field(pattern=r"^scrypt\$", description="scrypt$N$r$p$salt$hash (base64).")
    created: datetime
    expires: datetime | None = None
    revoked: datetime | None = None


class User(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    email: str = Field(pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    # Lists, not tuples: the spec loader walks lists to suggest keys in its errors.
    roles: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    tokens: list[TokenEntry] = Field(default_factory=list)


class UsersFile(_Strict):
    users: list[User] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> UsersFile:
        for what, values in (
            ("name", [u.name.casefold() for u in self.users]),
            ("email", [u.email.casefold() for u in self.users]),
            ("token id", [t.id for u in self.users for t in u.tokens]),
        ):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{what} {repeated[0]!r} appears more than once")
        return self

    def find(self, name: str) -> User | None:
        return next((u for u in self.users if u.name.casefold() == name.casefold()), None)

    def owner_of(self, token_id: str) -> tuple[User, TokenEntry] | None:
        for user in self.users:
            for token in user.tokens:
                if token.id == token_id:
                    return user, token
        return None

    def replaced(self, user: User) -> UsersFile:
        kept = [u for u in self.users if u.name != user.name]
        return UsersFile(users=[*kept, user])


@dataclass(frozen=True)
class Authenticated:
    user: User
    token_id: str


@dataclass(frozen=True)
class NotAuthenticated:
    refused: Refused
    token_id: str | None  # when the token named one
    identity: str | None  # the entry's owner, when the id was found


@dataclass(frozen=True)
class IssuedToken:
    user: str
    token: str  # shown once, never stored
    entry: TokenEntry


# --- the file ---------------------------------------------------------------------------


def users_path(state_dir: Path) -> Path:
    override = os.environ.get(USERS_FILE_ENV)
    return Path(override) if override else state_dir / USERS_FILENAME


def load_users(path: Path) -> UsersFile:
    """The file's users; none when it does not exist. A bad file is one located error."""
    from conveyor.spec.loader import parse_model

    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return UsersFile()
    except (OSError, UnicodeDecodeError) as error:
        raise ConveyorError(f"cannot read the users file {path}: {error}") from None
    _refuse_if_shared(path, mode)
    if not text.strip():
        return UsersFile()
    users, _ = parse_model(UsersFile, text, str(path))
    return users


def _refuse_if_shared(path: Path, mode: int) -> None:
    """Whoever can write the users file decides who may approve: only its owner may, and
    its folder must not let others replace it (a sticky folder like /tmp does not)."""
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "anyone" if mode & stat.S_IWOTH else "its group"
        raise ConveyorError(
            f"the users file {path} is writable by {who} (mode {stat.S_IMODE(mode):04o}): "
            "it is not trusted",
            hint=f"chmod 600 {path}",
        )
    folder = path.parent.stat().st_mode
    if folder & (stat.S_IWGRP | stat.S_IWOTH) and not folder & stat.S_ISVTX:
        raise ConveyorError(
            f"the users file's folder {path.parent} is writable by other users, who could "
            "replace the file: it is not trusted",
            hint=f"chmod go-w {path.parent}",
        )


def save_users(path: Path, users: UsersFile) -> None:
    """Write atomically (a temporary file renamed over it), readable by its owner only."""
    import yaml

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the state folder: private
    data = users.model_dump(mode="json", exclude_none=True)
    text = _HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Two `conveyor users` commands at once take turns, so neither loses the other's change."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the state folder: private
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def add_user(path: Path, name: str, email: str, roles: list[str], groups: list[str]) -> User:
    from pydantic import ValidationError

    with _locked(path):
        users = load_users(path)
        existing = users.find(name)
        if existing is not None:
            raise ConveyorError(f"{path} already has a user {existing.name!r}")
        try:
            user = User(name=name, email=email, roles=roles, groups=groups)
            updated = UsersFile(users=[*users.users, user])
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
            )
            raise ConveyorError(f"cannot add {name!r}: {problems}") from None
        save_users(path, updated)
    return user


def issue_token(path: Path, name: str, expires_in: float | None, now: datetime) -> IssuedToken:
    """A new token for `name`; its secret is returned once and only its hash is kept."""
    with _locked(path):
        users = load_users(path)
        user = _user(users, name, path)
        token_id = secrets.token_hex(6)
        while users.owner_of(token_id) is not None:
            token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        expires = now + timedelta(seconds=expires_in) if expires_in else None
        entry = TokenEntry(id=token_id, hash=hash_secret(secret), created=now, expires=expires)
        save_users(path, users.replaced(user.model_copy(update={"tokens": [*user.tokens, entry]})))
    return IssuedToken(user.name, f"{TOKEN_PREFIX}_{token_id}_{secret}", entry)


def revoke_token(path: Path, name: str, token_id: str, now: datetime) -> TokenEntry:
    """Mark the token revoked (kept, so a later use is refused as revoked, not unknown)."""
    with _locked(path):
        users = load_users(path)
        user = _user(users, name, path)
        found = next((t for t in user.tokens if t.id == token_id), None)
        if found is None:
            known = ", ".join(t.id for t in user.tokens) or "none"
            raise NotFoundError(f"{user.name} has no token {token_id!r} (tokens: {known})")
        revoked = found.model_copy(update={"revoked": found.revoked or now})
        tokens = [revoked if t.id == token_id else t for t in user.tokens]
        save_users(path, users.replaced(user.model_copy(update={"tokens": tokens})))
    return revoked


def _user(users: UsersFile, name: str, path: Path) -> User:
    user = users.find(name)
    if user is None:
        raise NotFoundError(
            f"no user {name!r} in {path}", hint=f"`conveyor users add {name} --email ...`"
        )
    return user


# --- tokens -----------------------------------------------------------------------------


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


# Secrets already proved right, per stored hash: a server checks the same token at every
# request, and scrypt's deliberate ~50 ms would be most of each answer. Only successes are
# kept, under a SHA-256 of the secret (a token's secret is 32 random bytes: no guessing);
# revocation and expiry are still checked at every call, after this.
_VERIFIED: dict[tuple[str, str], None] = {}
_VERIFIED_MAX = 1024


def verify_secret(secret: str, stored: str) -> bool:
    key = (stored, hashlib.sha256(secret.encode()).hexdigest())
    if key in _VERIFIED:
        return True
    if not _verify_scrypt(secret, stored):
        return False
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[key] = None
    return True


def _verify_scrypt(secret: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = _scrypt(secret, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def authenticate(users: UsersFile, token: str, now: datetime) -> Authenticated | NotAuthenticated:
    """Whose token this is; or why it is refused (unknown, wrong secret, revoked, expired)."""
    prefix, _, rest = token.strip().partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not token_id or not secret:
        return NotAuthenticated(
            Refused(Refusal.UNKNOWN_TOKEN, "that is not a Conveyor token", _ISSUE_HINT), None, None
        )
    found = users.owner_of(token_id)
    if found is None:
        unknown = Refused(Refusal.UNKNOWN_TOKEN, f"token {token_id} is unknown", _ISSUE_HINT)
        return NotAuthenticated(unknown, token_id, None)
    user, entry = found
    problem = _token_problem(entry, secret, now)
    if problem is not None:
        return NotAuthenticated(problem, token_id, user.name)
    return Authenticated(user, token_id)


_ISSUE_HINT = (
    "`conveyor users token NAME` issues one; pass it in CONVEYOR_TOKEN or with --token-file"
)


def _token_problem(entry: TokenEntry, secret: str, now: datetime) -> Refused | None:
    # The secret first: only its holder learns that the token is revoked or expired.
    if not verify_secret(secret, entry.hash):
        return Refused(Refusal.WRONG_SECRET, f"token {entry.id}: the secret is wrong")
    if entry.revoked is not None:
        return Refused(
            Refusal.REVOKED_TOKEN,
            f"token {entry.id} was revoked on {_utc(entry.revoked):%Y-%m-%d %H:%M} UTC",
            _ISSUE_HINT,
        )
    if entry.expires is not None and _utc(entry.expires) <= _utc(now):
        return Refused(
            Refusal.EXPIRED_TOKEN,
            f"token {entry.id} expired on {_utc(entry.expires):%Y-%m-%d %H:%M} UTC",
            _ISSUE_HINT,
        )
    return None


def _utc(moment: datetime) -> datetime:
    """A time without a zone is read as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2**26)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
