"""Loading a job's secrets from the environment or the untracked `.conveyor/secrets.env`.

No error message ever contains a secret's value: parse errors name the file and line only.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from conveyor.errors import ConveyorError
from conveyor.vcs.git import is_tracked

SECRETS_FILE = ".conveyor/secrets.env"

# One dotenv entry, comment or blank line. Values are literal: no ${VAR} expansion,
# because secrets routinely contain "$".
_ENTRY = re.compile(
    r"""
    [ \t]*
    (?:
        (?:export[ \t]+)?
        (?P<key>[A-Za-z_][A-Za-z0-9_]*)
        [ \t]*=[ \t]*
        (?:
            '(?P<single>[^']*)'
          | "(?P<double>(?:[^"\\]|\\.)*)"
          | (?P<bare>(?!['"])[^\n]*?)
        )
        [ \t]*
        (?:[ \t]\#[^\n]*)?
    |
        (?:\#[^\n]*)?
    )
    [ \t]*\r?(?:\n|\Z)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def load_secrets(
    names: Iterable[str],
    *,
    root: Path,
    environ: Mapping[str, str],
    job: str | None = None,
) -> dict[str, str]:
    """The value of each named secret: the environment first, then the secrets file."""
    wanted = list(dict.fromkeys(names))
    found = {name: environ[name] for name in wanted if name in environ}
    missing = [name for name in wanted if name not in found]
    if not missing:
        return found
    path = root / SECRETS_FILE
    from_file = _read_secrets_file(root, path) if path.exists() else {}
    for name in missing:
        if name not in from_file:
            raise _missing_secret(name, job, path)
        found[name] = from_file[name]
    return found


def without_secrets(environ: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The environment jobs inherit: `environ` less every variable named as a secret
    anywhere in the pipeline, so a job sees a secret only if it declares it."""
    hidden = frozenset(names)
    return {name: value for name, value in environ.items() if name not in hidden}


def _read_secrets_file(root: Path, path: Path) -> dict[str, str]:
    """Parse the secrets file after checking it is private and not tracked by git."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        raise ConveyorError(
            f"{path} is readable by other users",
            hint=f"make it private: chmod 600 {path}",
        )
    if is_tracked(root, SECRETS_FILE):
        raise ConveyorError(
            f"{path} is tracked by git, so its secrets are in the repository",
            hint=f"untrack it with `git rm --cached {SECRETS_FILE}`, add it to .gitignore, "
            "and rotate every secret it contains",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        # `from None`: the decode error carries the file's bytes, secrets included.
        raise ConveyorError(f"{path} is not valid UTF-8") from None
    return parse_dotenv(text, source=str(path))


def parse_dotenv(text: str, *, source: str) -> dict[str, str]:
    """KEY=value lines (`export`, quotes and `#` comments allowed); later keys win."""
    values: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _ENTRY.match(text, position)
        if match is None or match.end() == position:
            line = text.count("\n", 0, position) + 1
            raise ConveyorError(
                f"{source}:{line}: cannot parse this line",
                hint="write KEY=value, KEY='value' or KEY=\"value\"; # starts a comment",
            )
        if match["key"] is not None:
            values[match["key"]] = _value_of(match)
        position = match.end()
    return values


def _value_of(match: re.Match[str]) -> str:
    if match["single"] is not None:
        return match["single"]
    if match["double"] is not None:
        return _ESCAPE.sub(lambda m: _ESCAPES.get(m[1], m[0]), match["double"])
    return str(match["bare"]).strip()


def _missing_secret(name: str, job: str | None, path: Path) -> ConveyorError:
    needed_by = f" needed by job {job!r}" if job else ""
    file_state = "" if path.exists() else " (the file does not exist)"
    return ConveyorError(
        f"secret {name!r}{needed_by} is not set: looked for the environment variable "
        f"{name} and for {name}= in {path}{file_state}",
        hint=f"export {name}=... before running, or add {name}=... to {path} (chmod 600)",
    )
