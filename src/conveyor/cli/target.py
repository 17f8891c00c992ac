"""Where a command acts: on this machine's project (the default) or on a Conveyor server
(`conveyor --server URL COMMAND`, or `CONVEYOR_SERVER`).

`conveyor.cli.app.run_cli` reads the root options and sets the target before the command
runs; a command asks `client()` and gets None locally. Kept free of httpx, typer and rich:
every command imports this module, and the HTTP client (conveyor.cli.remote) is imported
only when a server is the target.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.cli.remote import RemoteClient


SERVER_ENV = "CONVEYOR_SERVER"  # conveyor.cli.app's too: it cannot import this module

# The commands that act on a server when one is the target (a group's as "group sub").
REMOTE_COMMANDS = frozenset(
    {
        "run",
        "status",
        "logs",
        "history",
        "approve",
        "reject",
        "approvals ls",
        "approvals show",
        "env ls",
        "env status",
        "env history",
        "flags ls",
        "flags set",
        "flags rollout",
        "flags kill",
        "audit verify",
        "whoami",
        "insights dora",
        "feedback",
        "incidents list",
        "incidents show",
        "incidents ack",
        "incidents mitigate",
        "incidents resolve",
    }
)
# Commands that only read or write the checkout (or start the server): they run here
# whatever the target.
ALWAYS_LOCAL = frozenset({"init", "lint", "schema", "plan", "server", "demo"})


@dataclass(frozen=True)
class Target:
    server: str | None = None  # None: this machine's project
    token_file: str | None = None  # the root --token-file


# The process's one target, set by run_cli before the command (a list: no `global`).
_chosen: list[Target] = [Target()]
_opened: list[RemoteClient] = []  # closed when the command ends (close_clients)


def set_target(target: Target) -> None:
    _chosen[0] = target


def current() -> Target:
    return _chosen[0]


def target_of(
    server_option: str | None, token_file: str | None, environ: Mapping[str, str] | None = None
) -> Target:
    """The root options' target: `--server URL`, else $CONVEYOR_SERVER, else local."""
    env = os.environ if environ is None else environ
    return Target(server=server_option or env.get(SERVER_ENV) or None, token_file=token_file)


def command_path(words: Sequence[str]) -> str:
    """`env ls` from the words after the root options (`env`, `ls`, `--output`, ...)."""
    plain = [word for word in words if not word.startswith("-")]
    if not plain:
        return ""
    if len(plain) > 1 and f"{plain[0]} {plain[1]}" in REMOTE_COMMANDS:
        return f"{plain[0]} {plain[1]}"
    group_member = any(name.startswith(plain[0] + " ") for name in REMOTE_COMMANDS)
    if group_member and len(plain) > 1:
        return f"{plain[0]} {plain[1]}"
    return plain[0]


def refuse_if_local_only(path: str, server: str) -> None:
    """A command with no server equivalent is refused, never silently run here."""
    head = path.split(" ", maxsplit=1)[0]
    if not path or path in REMOTE_COMMANDS or head in ALWAYS_LOCAL:
        return
    raise ConveyorError(
        f"`conveyor {path}` runs locally only: it has no equivalent on the server {server}",
        hint=f"run it without --server (and without {SERVER_ENV}) in the project's folder",
    )


def client(token: str | None = None) -> RemoteClient | None:
    """The server's client when a server is the target, else None: act on the local
    project. `token`: one the command read itself (approve's --token-file); else the root
    --token-file's, else $CONVEYOR_TOKEN."""
    target = current()
    if target.server is None:
        return None
    from conveyor.cli.remote import RemoteClient

    opened = RemoteClient.connect(target.server, target.token_file, token=token)
    _opened.append(opened)
    return opened


def close_clients() -> None:
    while _opened:
        _opened.pop().close()
