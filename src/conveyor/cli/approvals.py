"""`conveyor approve|reject RUN`, `conveyor approvals ls|show|serve`, `conveyor users ...`:
the approval gate and the identities allowed through it (docs/approvals.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.environments import opened
from conveyor.cli.output import (
    OutputFormat,
    OutputOption,
    console,
    emit_json,
    err_console,
    examples,
)
from conveyor.cli.project import SpecOption
from conveyor.cli.tokens import caller_token
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.approvals.model import ApprovalStatus, Verdict
    from conveyor.approvals.users import TokenEntry, User

approvals_app = typer.Typer(
    help="Approval requests: which deploys wait for whom.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor approvals ls --pending", "the deploys waiting for a decision"),
        ("conveyor approvals show 12 -o json", "who may approve run 12, who did"),
        ("CONVEYOR_TOKEN=... conveyor approve 12 -m 'ok'", "approve (the token says who you are)"),
        ("conveyor reject 12 --token-file ~/.token -m 'no'", "reject: run 12's deploy fails"),
        ("conveyor approvals serve --port 4243", "the HTTP API"),
    ),
)
users_app = typer.Typer(
    help="Who may approve: identities, roles, groups and tokens. The users file is "
    "STATE_DIR/users.yml, or $CONVEYOR_USERS_FILE.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor users add riley --email riley@example.com --role reviewer", "add a user"),
        ("conveyor users token riley --expires 30d", "issue a token, shown once"),
        ("conveyor users ls -o json", "users, roles, token ids (never a secret)"),
        ("conveyor users revoke riley t-1a2b3c", "revoke one token"),
        ("CONVEYOR_USERS_FILE=/etc/conveyor/users.yml conveyor users ls", "another users file"),
    ),
)
RunArgument = typer.Argument(help="The run whose deploy waits, e.g. 12.")
EnvironmentOption = typer.Option(
    "--environment", "-e", help="The environment, when the run waits for several."
)
CommentOption = typer.Option("--comment", "-m", help="Why, for the record.")
TokenFileOption = typer.Option(
    "--token-file",
    show_default=False,
    help="Read your token from this file ('-': standard input); default: $CONVEYOR_TOKEN. "
    "It alone says who you are.",
)
# A token on the command line is readable by every user of the machine (ps, /proc) and
# lands in shell history: the option remains only to say so.
RefusedTokenOption = typer.Option("--token", hidden=True, show_default=False)
UserArgument = typer.Argument(help="The user's name in the users file.")


def register(app: typer.Typer) -> None:
    app.command("approve", epilog=approvals_app.info.epilog)(approve)
    app.command("reject", epilog=approvals_app.info.epilog)(reject)
    app.add_typer(approvals_app, name="approvals")
    app.add_typer(users_app, name="users")


# --- decisions ----------------------------------------------------------------------------


def approve(
    run: Annotated[int, RunArgument],
    environment: Annotated[str | None, EnvironmentOption] = None,
    comment: Annotated[str, CommentOption] = "",
    token_file: Annotated[str | None, TokenFileOption] = None,
    token: Annotated[str | None, RefusedTokenOption] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Approve the deploy run RUN waits for (never your own change or run)."""
    from conveyor.approvals.model import Verdict

    _decide(
        run, Verdict.APPROVE, environment, comment, caller_token(token_file, token), spec, output
    )


def reject(
    run: Annotated[int, RunArgument],
    environment: Annotated[str | None, EnvironmentOption] = None,
    comment: Annotated[str, CommentOption] = "",
    token_file: Annotated[str | None, TokenFileOption] = None,
    token: Annotated[str | None, RefusedTokenOption] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Reject the deploy run RUN waits for: its deploy job fails with your comment."""
    from conveyor.approvals.model import Verdict

    _decide(
        run, Verdict.REJECT, environment, comment, caller_token(token_file, token), spec, output
    )


def _decide(
    run: int,
    verdict: Verdict,
    environment: str | None,
    comment: str,
    token: str | None,
    spec: Path | None,
    output: OutputFormat,
) -> None:
    from conveyor.cli import target

    remote = target.client(token=token)
    if remote is not None:
        from conveyor.cli import remote_commands

        found = remote_commands.decide(remote, run, verdict.value, environment, comment)
    else:
        from conveyor.approvals.users import users_path
        from conveyor.service.approvals import Credentials, decide

        with opened(spec) as (project, store):
            found = decide(
                store,
                users_path(project.state_dir),
                run,
                verdict,
                Credentials.fresh(token),
                environment=environment,
                comment=comment,
            )
    if output is OutputFormat.JSON:
        emit_json(found)
        return
    console.print(_summary(found))


# --- requests -----------------------------------------------------------------------------


@approvals_app.command("ls")
def approvals_ls(
    pending: Annotated[bool, typer.Option("--pending", help="Only those still waiting.")] = False,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Approval requests, newest first: run, environment, image, state, who approved."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        found = remote_commands.approvals(remote, pending)
    else:
        from conveyor.service.approvals import all_statuses

        with opened(spec) as (_project, store):
            found = all_statuses(store, pending_only=pending)
    if output is OutputFormat.JSON:
        emit_json(found)
        return
    if not found:
        console.print("no approval requests" + (" pending" if pending else ""))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("run", "environment", "image", "state", "approvals", "requested"):
        table.add_column(column)
    for status in found:
        request = status.request
        table.add_row(
            str(request.run_id),
            escape(request.environment),
            escape(f"{request.repository}@{request.digest[:19]}"),
            status.state.value,
            f"{len(status.approvals)}/{request.required}",
            _when(request.requested_at),
        )
    console.print(table)


@approvals_app.command("show")
def approvals_show(
    run: Annotated[int, RunArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """A run's approval requests: who may approve, who did, what is still missing."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        found = remote_commands.run_approvals(remote, run)
    else:
        from conveyor.service.approvals import run_statuses

        with opened(spec) as (_project, store):
            found = run_statuses(store, run)
    if output is OutputFormat.JSON:
        emit_json(found)
        return
    if not found:
        console.print(f"run {run} has asked for no approval")
    for status in found:
        request = status.request
        console.print(_summary(status))
        console.print(f"  image {escape(request.image)}")
        console.print(f"  by {escape(request.approvers())}; timeout {_when(request.timeout_at)}")
        for decision in (*status.approvals, *([status.rejection] if status.rejection else [])):
            said = f": {escape(decision.comment)}" if decision.comment else ""
            console.print(
                f"  {_when(decision.ts)} {decision.verdict.value}d by "
                f"{escape(decision.identity)}{said}"
            )


@approvals_app.command("serve")
def approvals_serve(
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on.")] = 4243,
    spec: Annotated[Path | None, SpecOption] = None,
) -> None:
    """Serve the approvals API (docs/approvals.md) until interrupted."""
    from conveyor.approvals.users import users_path
    from conveyor.server.approvals import serve

    with opened(spec) as (project, store):
        err_console.print(f"serving approvals at http://{host}:{port}")
        serve(store, users_path(project.state_dir), host, port)


# --- users --------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    name: Annotated[str, UserArgument],
    email: Annotated[str, typer.Option("--email", help="Matched against commit authors.")],
    role: Annotated[list[str] | None, typer.Option("--role", help="Repeatable.")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Repeatable.")] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Add a user to the users file (outside the repository)."""
    from conveyor.approvals.users import add_user

    path = _users_file(spec)
    user = add_user(path, name, email, role or [], group or [])
    if output is OutputFormat.JSON:
        emit_json({"user": _user_json(user), "file": str(path)})
        return
    console.print(f"added {escape(user.name)} to {path}; next: `conveyor users token {user.name}`")


@users_app.command("token")
def users_token(
    name: Annotated[str, UserArgument],
    expires: Annotated[
        str | None, typer.Option("--expires", help="Valid for this long, e.g. 30d or 12h.")
    ] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Issue a token for NAME and print it once: only its hash is kept."""
    from conveyor.approvals.users import issue_token
    from conveyor.spec.durations import parse_duration

    try:
        seconds = parse_duration(expires) if expires else None
    except ValueError as error:
        raise ConveyorError(f"--expires: {error}") from None
    issued = issue_token(_users_file(spec), name, seconds, datetime.now(UTC))
    if output is OutputFormat.JSON:
        expiry = issued.entry.expires
        emit_json(
            {
                "user": issued.user,
                "id": issued.entry.id,
                "token": issued.token,
                "expires": expiry.isoformat() if expiry else None,
            }
        )
        return
    err_console.print(
        f"token {issued.entry.id} for {escape(issued.user)}: keep it, it is not shown again"
    )
    print(issued.token)


@users_app.command("ls")
def users_ls(
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """The users, their roles, groups and token ids (never a secret or a hash)."""
    from conveyor.approvals.users import load_users

    users = load_users(_users_file(spec)).users
    if output is OutputFormat.JSON:
        emit_json([_user_json(user) for user in users])
        return
    if not users:
        console.print("no users yet: `conveyor users add NAME --email ... --role ...`")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("user", "email", "roles", "groups", "tokens"):
        table.add_column(column)
    for user in users:
        table.add_row(
            escape(user.name),
            escape(user.email),
            escape(", ".join(user.roles)),
            escape(", ".join(user.groups)),
            escape(", ".join(_token_text(t) for t in user.tokens)),
        )
    console.print(table)


@users_app.command("revoke")
def users_revoke(
    name: Annotated[str, UserArgument],
    token_id: Annotated[str, typer.Argument(help="The token's id (`conveyor users ls`).")],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Revoke one of NAME's tokens: its next use is refused, and recorded."""
    from conveyor.approvals.users import revoke_token

    revoked = revoke_token(_users_file(spec), name, token_id, datetime.now(UTC))
    if output is OutputFormat.JSON:
        emit_json({"user": name, "token": _token_json(revoked)})
        return
    console.print(f"token {revoked.id} of {escape(name)} revoked")


# --- helpers ------------------------------------------------------------------------------


def _users_file(spec: Path | None) -> Path:
    from conveyor.approvals.users import users_path
    from conveyor.service.project import Project

    return users_path(Project.locate(spec).state_dir)


def _summary(status: ApprovalStatus) -> str:
    from conveyor.approvals.model import ApprovalState

    request = status.request
    style = {
        ApprovalState.APPROVED: "green",
        ApprovalState.PENDING: "yellow",
    }.get(status.state, "bold red")
    count = f"{len(status.approvals)} of {request.required} approvals"
    return (
        f"run {request.run_id} to {escape(request.environment)}: "
        f"[{style}]{status.state.value}[/] ({count})"
    )


def _user_json(user: User) -> dict[str, object]:
    """A user as `users ls -o json` shows it: token ids and dates, never a hash."""
    return {
        **user.model_dump(mode="json", exclude={"tokens"}),
        "tokens": [_token_json(t) for t in user.tokens],
    }


def _token_json(token: TokenEntry) -> dict[str, str | None]:
    return {
        "id": token.id,
        "created": token.created.isoformat(),
        "expires": token.expires.isoformat() if token.expires else None,
        "revoked": token.revoked.isoformat() if token.revoked else None,
    }


def _token_text(token: TokenEntry) -> str:
    if token.revoked:
        return f"{token.id} (revoked)"
    if token.expires:
        return f"{token.id} (expires {token.expires:%Y-%m-%d})"
    return token.id


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
