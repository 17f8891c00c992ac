"""The caller's token, for `approve`/`reject` and for a server: from a file or
$CONVEYOR_TOKEN, never from the command line."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from conveyor.errors import ConveyorError

TOKEN_ENV = "CONVEYOR_TOKEN"  # noqa: S105 (the variable's name)
STANDARD_INPUT = "-"


def caller_token(token_file: str | None, on_command_line: str | None) -> str | None:
    """The caller's token: from --token-file (a file, or '-' for standard input), else
    $CONVEYOR_TOKEN; never from the command line."""
    if on_command_line is not None:
        raise ConveyorError(
            "--token is refused: a token on the command line is visible to every user of "
            "this machine (ps, /proc) and stays in your shell history",
            hint=f"set {TOKEN_ENV}, or pass --token-file FILE (or --token-file - and "
            "send it on standard input); then issue yourself a new token, since this one "
            "was exposed",
        )
    if token_file is None:
        return os.environ.get(TOKEN_ENV) or None
    if token_file == STANDARD_INPUT:
        return sys.stdin.readline().strip() or None
    return _read_token_file(Path(token_file))


def _read_token_file(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConveyorError(f"cannot read the token file {path}: {error}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        raise ConveyorError(
            f"the token file {path} is readable by other users", hint=f"chmod 600 {path}"
        )
    return text.strip() or None
