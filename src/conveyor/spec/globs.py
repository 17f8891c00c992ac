"""File globs (`src/**/*.py`, `{a,b}/*.txt`) checked up front and matched with wcmatch.

A glob is checked after its braces are expanded, the way wcmatch expands them when it
matches: `{..,x}/secrets.env` is `../secrets.env` or `x/secrets.env`, and the first
leaves the workspace. Output globs also may not name Conveyor's state folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import bracex
from wcmatch import fnmatch as wcfnmatch
from wcmatch import glob as wcglob

GLOB_FLAGS = wcglob.GLOBSTAR | wcglob.BRACE | wcglob.DOTGLOB | wcglob.NEGATE
# wcmatch's own default: a brace bomb ({a,b}{a,b}...) is refused, not expanded.
EXPANSION_LIMIT = 1000
STATE_DIR_NAME = ".conveyor"  # the project's state: database, blobs, secrets.env
_ESCAPE = re.compile(r"\\(.)")


def check_glob(pattern: str) -> str:
    """Return the pattern, or raise ValueError saying what is wrong with it."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError("a glob must be a non-empty string")
    _check_balanced(pattern)
    for expanded in expand_glob(pattern):
        if not expanded:
            continue  # `{,x}`: the empty alternative matches nothing
        parts = _literal_parts(expanded)
        shown = "" if expanded == pattern.removeprefix("!") else f" (as {expanded!r})"
        if expanded.startswith(("/", "\\/")) or parts[0] == "":
            raise ValueError(f"glob {pattern!r}{shown} must be relative to the workspace")
        if ".." in parts:
            raise ValueError(f"glob {pattern!r}{shown} must not leave the workspace ('..')")
    return pattern


def check_output_glob(pattern: str) -> str:
    """`check_glob`, and the outputs never reach into Conveyor's state folder."""
    check_glob(pattern)
    for expanded in expand_glob(pattern):
        if any(_names_state_dir(part) for part in expanded.split("/")):
            raise ValueError(
                f"glob {pattern!r} reaches into {STATE_DIR_NAME}/, Conveyor's state "
                "(secrets.env, the cache): it cannot be an output"
            )
    return pattern


def expand_glob(pattern: str) -> list[str]:
    """The patterns a glob stands for once its braces are expanded (no `!` prefix)."""
    body = pattern.removeprefix("!")
    try:
        return list(bracex.expand(body, keep_escapes=True, limit=EXPANSION_LIMIT))
    except bracex.ExpansionLimitException:
        raise ValueError(
            f"glob {pattern!r} expands to more than {EXPANSION_LIMIT} patterns"
        ) from None


def under_state_dir(relative: str) -> bool:
    """Whether a matched workspace path lies in a `.conveyor` folder."""
    return STATE_DIR_NAME in relative.split("/")


def _literal_parts(pattern: str) -> list[str]:
    """The path components with escapes removed: `\\.\\.` is `..` to the file system."""
    return [_ESCAPE.sub(r"\1", part) for part in pattern.split("/")]


def _names_state_dir(part: str) -> bool:
    """A component written to match `.conveyor`: `.conveyor`, `.conv*`, `[.]conveyor`.

    One that matches any name (`*`, `**`, `*r`) matches `conveyor` too and is not refused
    here; the files it finds under `.conveyor/` are left out when outputs are collected.
    """
    if _ESCAPE.sub(r"\1", part) == STATE_DIR_NAME:
        return True
    flags = wcfnmatch.DOTMATCH
    return bool(
        wcfnmatch.fnmatch(STATE_DIR_NAME, part, flags=flags)
        and not wcfnmatch.fnmatch(STATE_DIR_NAME.lstrip("."), part, flags=flags)
    )


def _check_balanced(pattern: str) -> None:
    depth_brace, in_class, escaped = 0, False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "{":
            depth_brace += 1
        elif char == "}":
            depth_brace -= 1
            if depth_brace < 0:
                raise ValueError(f"glob {pattern!r} has a '}}' without its '{{'")
    if in_class:
        raise ValueError(f"glob {pattern!r} has a '[' without its ']'")
    if depth_brace:
        raise ValueError(f"glob {pattern!r} has a '{{' without its '}}'")


def match_any(path: str, patterns: Iterable[str]) -> bool:
    return bool(wcglob.globmatch(path, list(patterns), flags=GLOB_FLAGS))


def filter_paths(paths: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The paths matching the patterns (a `!pattern` excludes), in sorted order."""
    pattern_list = list(patterns)
    return sorted(p for p in paths if wcglob.globmatch(p, pattern_list, flags=GLOB_FLAGS))
