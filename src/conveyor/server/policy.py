"""Who may do what, on which object: rules in the form Argo CD uses (RBAC policy CSV).

    # <state>/policy.csv
    p, role:deployer, environments, update, staging, allow
    p, role:developer, environments, update, production, deny
    g, alice, role:deployer        # a user (or a users-file group) gets a role
    g, anonymous, role:viewer      # the project is public: anyone may read

A `p` line: subject (a user, a group or `role:NAME`), resource (or `*`), action (an
`Action` value or `*`), object (a glob on an environment name or other object, `*` for
all), effect. A `g` line gives a subject a role; roles may hold roles. The built-in roles
come first: viewer reads, developer reads/creates/updates, reviewer reads/approves, admin
does everything. As in Argo CD, a matching `deny` wins over any `allow`; nothing matching
means no.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path

from conveyor.errors import ConveyorError

POLICY_FILENAME = "policy.csv"
ANONYMOUS = "anonymous"  # the subject of callers without a login (public projects)
ROLE_PREFIX = "role:"
# The values of auth.Action (checked there), which rules name.
ACTIONS = ("read", "create", "update", "approve", "admin")


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True)
class Rule:
    subject: str
    resource: str
    action: str
    obj: str
    effect: Effect

    def matches(self, resource: str, action: str, obj: str | None) -> bool:
        if self.resource not in ("*", resource) or self.action not in ("*", action):
            return False
        if obj is None:
            # The object is not known yet (the endpoint checks it): an allow on any
            # object may apply; only a deny on every object refuses now.
            return self.effect is Effect.ALLOW or self.obj == "*"
        return fnmatchcase(obj, self.obj)


BUILTIN_ROLE_ACTIONS: dict[str, tuple[str, ...]] = {
    "viewer": ("read",),
    "developer": ("read", "create", "update"),
    "reviewer": ("read", "approve"),
    "admin": ("*",),
}


def _builtin_rules() -> list[Rule]:
    return [
        Rule(ROLE_PREFIX + role, "*", action, "*", Effect.ALLOW)
        for role, actions in BUILTIN_ROLE_ACTIONS.items()
        for action in actions
    ]


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = field(default_factory=lambda: tuple(_builtin_rules()))
    grants: tuple[tuple[str, str], ...] = ()  # (subject, role:NAME)

    def subjects(self, name: str, roles: Iterable[str], groups: Iterable[str]) -> set[str]:
        """Every subject a caller is: itself, its groups, its roles and the roles those
        are granted, transitively."""
        found = {name, *groups, *(as_role(r) for r in roles)}
        while True:
            more = {role for subject, role in self.grants if subject in found} - found
            if not more:
                return found
            found |= more

    def decide(self, subjects: set[str], resource: str, action: str, obj: str | None) -> bool:
        matching = [
            r for r in self.rules if r.subject in subjects and r.matches(resource, action, obj)
        ]
        if any(r.effect is Effect.DENY for r in matching):
            return False
        return any(r.effect is Effect.ALLOW for r in matching)

    def is_public(self) -> bool:
        """Whether callers without a login may read (a `g, anonymous, ...` line)."""
        return any(subject == ANONYMOUS for subject, _ in self.grants)


def as_role(name: str) -> str:
    return name if name.startswith(ROLE_PREFIX) else ROLE_PREFIX + name


DEFAULT_POLICY = Policy()


def parse_policy(text: str, source: str) -> Policy:
    """The built-in roles plus the file's lines; a bad line is one located error."""
    rules = _builtin_rules()
    grants: list[tuple[str, str]] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        fields = [f.strip() for f in row]
        if not fields or not fields[0] or fields[0].startswith("#"):
            continue
        if "#" in fields[-1]:  # a comment after the last field
            fields[-1] = fields[-1].split("#", 1)[0].strip()
        where = f"{source}:{number}"
        if fields[0] == "p":
            rules.append(_rule(fields, where))
        elif fields[0] == "g" and len(fields) == 3 and fields[1] and fields[2]:
            grants.append((fields[1], as_role(fields[2])))
        else:
            raise ConveyorError(
                f"{where}: expected `p, subject, resource, action, object, allow|deny` "
                "or `g, subject, role`",
                hint="docs/server.md, 'Logging in and who may do what'",
            )
    return Policy(tuple(rules), tuple(grants))


def _rule(fields: list[str], where: str) -> Rule:
    if len(fields) != 6 or not all(fields[1:]):
        raise ConveyorError(
            f"{where}: a `p` line has 6 fields: p, subject, resource, action, object, effect"
        )
    _, subject, resource, action, obj, effect = fields
    if action != "*" and action not in ACTIONS:
        raise ConveyorError(
            f"{where}: unknown action {action!r}", hint=f"one of {', '.join(ACTIONS)} or *"
        )
    if effect not in {e.value for e in Effect}:
        raise ConveyorError(f"{where}: the effect is allow or deny, not {effect!r}")
    if subject.startswith(ROLE_PREFIX) or subject in BUILTIN_ROLE_ACTIONS:
        subject = as_role(subject)
    return Rule(subject, resource, action, obj, Effect(effect))


class PolicyFile:
    """The state folder's policy file, read again whenever it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._policy = DEFAULT_POLICY

    def current(self) -> Policy:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._policy = None, DEFAULT_POLICY
            return self._policy
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            text = self.path.read_text(encoding="utf-8")
            self._policy = parse_policy(text, str(self.path))
            self._seen = seen
        return self._policy
