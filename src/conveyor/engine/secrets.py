"""Loading secrets from the environment or the untracked secrets files.

A job's secrets come from `NAME` in the environment, then `.conveyor/secrets.env`. An
environment's secrets are scoped first, as GitLab's and GitHub's environment variables
are: for `production`, `CONVEYOR_SECRET_PRODUCTION_NAME`, then
`.conveyor/secrets/production.env`, and only then the unscoped sources.

No error message ever contains a secret's value: parse errors name the file and line only.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.errors import ConveyorError
from conveyor.spec.environments import SCOPED_SECRET_PREFIX, scoped_secret_variable
from conveyor.vcs.git import is_tracked

SECRETS_FILE = ".conveyor/secrets.env"
ENVIRONMENT_SECRETS_DIR = ".conveyor/secrets"

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


def environment_secrets_file(environment: str) -> str:
    """The per-environment secrets file, relative to the project's folder."""
    return f"{ENVIRONMENT_SECRETS_DIR}/{environment}.env"


@dataclass
class _Variables:
    """Secrets from environment variables, under a prefix (`CONVEYOR_SECRET_STAGING_`)."""

    environ: Mapping[str, str]
    environment: str | None = None

    def variable(self, name: str) -> str:
        if self.environment is None:
            return name
        return scoped_secret_variable(self.environment, name)

    def get(self, name: str) -> str | None:
        return self.environ.get(self.variable(name))

    def describe(self, name: str) -> str:
        return f"the environment variable {self.variable(name)}"

    def advice(self, name: str) -> str:
        return f"export {self.variable(name)}=... before running"


@dataclass
class _File:
    """Secrets from a private, untracked dotenv file, read only when first needed."""

    root: Path
    relative: str
    _values: dict[str, str] | None = field(default=None, init=False)

    @property
    def path(self) -> Path:
        return self.root / self.relative

    def get(self, name: str) -> str | None:
        if self._values is None:
            exists = self.path.exists()
            self._values = _read_secrets_file(self.root, self.relative) if exists else {}
        return self._values.get(name)

    def describe(self, name: str) -> str:
        absent = "" if self.path.exists() else " (the file does not exist)"
        return f"{name}= in {self.path}{absent}"

    def advice(self, name: str) -> str:
        return f"add {name}=... to {self.path} (chmod 600)"


_Source = _Variables | _File  # the places a secret is looked for, in order


def load_secrets(
    names: Iterable[str],
    *,
    root: Path,
    environ: Mapping[str, str],
    job: str | None = None,
    environment: str | None = None,
) -> dict[str, str]:
    """The value of each named secret, from the first source that has it: for an
    `environment`, its scoped variable and its own file; then the unscoped variable and
    the shared secrets file."""
    sources = _sources(root, environ, environment)
    found: dict[str, str] = {}
    for name in dict.fromkeys(names):
        value = _first_value(name, sources)
        if value is None:
            raise _missing_secret(name, sources, job=job, environment=environment)
        found[name] = value
    return found


def available_secrets(
    names: Iterable[str], *, root: Path, environ: Mapping[str, str], environment: str
) -> dict[str, str]:
    """The environment's secrets that are set, the missing ones left out: the values a
    run masks, though only a deploy needs them all."""
    sources = _sources(root, environ, environment)
    values = {name: _first_value(name, sources) for name in dict.fromkeys(names)}
    return {name: value for name, value in values.items() if value is not None}


def _sources(root: Path, environ: Mapping[str, str], environment: str | None) -> list[_Source]:
    sources: list[_Source] = [_Variables(environ), _File(root, SECRETS_FILE)]
    if environment is not None:  # scoped first: they override the shared values
        scoped_file = _File(root, environment_secrets_file(environment))
        sources = [_Variables(environ, environment), scoped_file, *sources]
    return sources


def _first_value(name: str, sources: list[_Source]) -> str | None:
    """From the first source that has it; a file is read only when reached."""
    return next((v for v in (source.get(name) for source in sources) if v is not None), None)


def without_secrets(environ: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The environment jobs inherit: `environ` less every variable named as a secret
    anywhere in the pipeline and every environment-scoped secret, so a job sees a secret
    only if it declares it."""
    hidden = frozenset(names)
    return {
        name: value
        for name, value in environ.items()
        if name not in hidden and not name.startswith(SCOPED_SECRET_PREFIX)
    }


def _read_secrets_file(root: Path, relative: str) -> dict[str, str]:
    """Parse a secrets file after checking it is private and not tracked by git."""
    path = root / relative
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        raise ConveyorError(
            f"{path} is readable by other users",
            hint=f"make it private: chmod 600 {path}",
        )
    if is_tracked(root, relative):
        raise ConveyorError(
            f"{path} is tracked by git, so its secrets are in the repository",
            hint=f"untrack it with `git rm --cached {relative}`, add it to .gitignore, "
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


def _missing_secret(
    name: str, sources: list[_Source], *, job: str | None, environment: str | None
) -> ConveyorError:
    needed_by = f" needed by job {job!r}" if job else ""
    if environment is not None:
        needed_by += f" for environment {environment!r}"
    places = [source.describe(name) for source in sources]
    # The advice names the first (most specific) variable and file.
    return ConveyorError(
        f"secret {name!r}{needed_by} is not set: looked for " + ", then ".join(places),
        hint=f"{sources[0].advice(name)}, or {sources[1].advice(name)}",
    )
