"""Names from a payload are hostile input: a branch must be a name git itself would accept
as a branch (the rules of `git check-ref-format --branch`), a commit a full hex object id.
They are checked here before anything reaches git, which only ever gets them as separate
arguments, never through a shell."""

from __future__ import annotations

import re
from collections.abc import Callable

from conveyor.forge.model import Malformed

ZERO_SHA = re.compile(r"^0+$")
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")  # SHA-1 or SHA-256 repositories
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
MAX_BRANCH = 255
HEADS = "refs/heads/"
TAGS = "refs/tags/"


def is_zero(sha: str) -> bool:
    """The all-zero id a forge sends for a deleted branch."""
    return bool(ZERO_SHA.match(sha))


def check_sha(sha: object, what: str = "commit") -> str:
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise Malformed(f"{what} is not a full hex commit id")
    return sha


_RULES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda n: not n or len(n) > MAX_BRANCH, "empty or too long"),
    (lambda n: n.startswith("-") or n in {"@", "HEAD"}, "not allowed as a branch name"),
    (
        lambda n: bool(_FORBIDDEN.search(n)),
        "contains a space, a control character or one of ~ ^ : ? * [ \\",
    ),
    (lambda n: any(s in n for s in ("..", "@{", "//")), "contains '..', '@{' or '//'"),
    (
        lambda n: n.startswith("/") or n.endswith(("/", ".")),
        "starts with '/' or ends with '/' or '.'",
    ),
    (
        lambda n: any(c.startswith(".") or c.endswith(".lock") for c in n.split("/")),
        "a component starts with '.' or ends with '.lock'",
    ),
)


def branch_problem(name: str) -> str | None:
    """Why `name` is not a valid branch name, or None (git check-ref-format's rules)."""
    return next((problem for broken, problem in _RULES if broken(name)), None)


def check_branch(name: object) -> str:
    if not isinstance(name, str):
        raise Malformed("branch is not a string")
    problem = branch_problem(name)
    if problem is not None:
        raise Malformed(f"invalid branch name: {problem}")
    return name


def branch_of(ref: object) -> str | None:
    """The branch of `refs/heads/<branch>`, checked; None for any other ref (a tag)."""
    if not isinstance(ref, str):
        raise Malformed("ref is not a string")
    if not ref.startswith(HEADS):
        return None
    return check_branch(ref.removeprefix(HEADS))
