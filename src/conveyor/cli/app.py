"""The `conveyor` application and its one error handler.

Exit codes: 0 ok, 1 pipeline failed, 2 usage or spec error, 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys
from contextlib import suppress
from typing import Annotated, cast

import click
import typer
from rich.markup import escape

from conveyor import __version__
from conveyor.cli import (
    approvals,
    audit,
    demo,
    environments,
    flags,
    images,
    inspect,
    pipeline,
    project,
    releases,
    report,
    vulndb,
)
from conveyor.cli.output import err_console
from conveyor.errors import ConveyorError, ExitCode

# Typer 0.2x carries its own copy of click; older releases use click itself.
_USAGE: tuple[type[Exception], ...] = (click.ClickException,)
with suppress(ImportError):
    _USAGE += (importlib.import_module("typer._click.exceptions").ClickException,)
_EXIT: tuple[type[Exception], ...] = (click.exceptions.Exit, typer.Exit)
_INTERRUPT: tuple[type[BaseException], ...] = (
    KeyboardInterrupt,
    click.exceptions.Abort,
    typer.Abort,
)

app = typer.Typer(
    name="conveyor",
    help="Conveyor carries a commit to production: pipeline-as-code, gates, images, releases.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
_debug = {"on": False}


def _version(value: bool) -> None:
    if value:
        print(f"conveyor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for every error.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    _debug["on"] = debug


project.register(app)
pipeline.register(app)
inspect.register(app)
report.register(app)
images.register(app)
vulndb.register(app)
environments.register(app)
releases.register(app)
flags.register(app)
audit.register(app)
approvals.register(app)
demo.register(app)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli(argv))


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI and map every outcome to a documented exit code."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    _debug["on"] = "--debug" in args
    try:
        result = command.main(args=args, prog_name="conveyor", standalone_mode=False)
    except ConveyorError as error:
        if _debug["on"]:
            err_console.print_exception()
        _print_error(error)
        return int(error.exit_code)
    except _EXIT as done:
        return int(getattr(done, "exit_code", 0))
    except _USAGE as error:
        cast(click.ClickException, error).show()  # the vendored copy has the same API
        return int(ExitCode.USAGE)
    except _INTERRUPT:
        err_console.print("[red]interrupted[/]")
        return int(ExitCode.INTERRUPTED)
    return int(result) if isinstance(result, int) else 0


def _print_error(error: ConveyorError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(error.message)}", soft_wrap=True)
    if error.hint:
        err_console.print(f"[dim]hint:[/] {escape(error.hint)}", soft_wrap=True)
