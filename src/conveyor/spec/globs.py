"""File globs (`src/**/*.py`, `{a,b}/*.txt`) checked up front and matched with wcmatch."""

from __future__ import annotations

from collections.abc import Iterable

from wcmatch import glob as wcglob

GLOB_FLAGS = wcglob.GLOBSTAR | wcglob.BRACE | wcglob.DOTGLOB | wcglob.NEGATE


def check_glob(pattern: str) -> str:
    """Return the pattern, or raise ValueError saying what is wrong with it."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError("a glob must be a non-empty string")
    if pattern.startswith("/"):
        raise ValueError(f"glob {pattern!r} must be relative to the repository root")
    if any(part == ".." for part in pattern.split("/")):
        raise ValueError(f"glob {pattern!r} must not leave the repository ('..')")
    _check_balanced(pattern)
    return pattern


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
