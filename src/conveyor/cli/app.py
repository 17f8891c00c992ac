"""The `conveyor` application: its command groups, each imported only when it runs, and the
one error handler that gives every outcome its documented exit code.

Exit codes (docs/cli.md#exit-codes): 0 ok, 1 pipeline or gate failed, 2 usage or spec
error, 3 infrastructure error, 4 not found, 130 interrupted. The mapping lives in
`conveyor.cli.failures`.

Nothing heavy is imported at module level: `conveyor --version` must stay near Python's own
start-up, and `conveyor run` imports the run path only (tests/cli/test_startup.py).
"""

from __future__ import annotations

import gc
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from conveyor import __version__
from conveyor.cli.failures import (
    Failure,
    failure_of,
    print_json,
    print_text,
    usage_failure,
)
from conveyor.errors import ConveyorError, ExitCode

if TYPE_CHECKING:
    import typer

# Each command (or command group) and the module of conveyor.cli that defines it, in the
# order `conveyor --help` lists them. A module's `register(app)` adds exactly its names.
COMMAND_MODULES: dict[str, str] = {
    "init": "project",
    "lint": "project",
    "schema": "project",
    "plan": "pipeline",
    "run": "pipeline",
    "status": "inspect",
    "logs": "inspect",
    "history": "inspect",
    "report": "report",
    "baseline": "baseline",
    "keys": "images",
    "image": "images",
    "vulndb": "vulndb",
    "scan": "vulndb",
    "deploy": "environments",
    "rollback": "environments",
    "env": "environments",
    "release": "releases",
    "flags": "flags",
    "slo": "slo",
    "audit": "audit",
    "approve": "approvals",
    "reject": "approvals",
    "approvals": "approvals",
    "users": "approvals",
    "demo": "demo",
    "server": "server",
    "watch": "watch",
    "whoami": "remote_commands",
    "insights": "insights",
    "feedback": "feedback",
    "incidents": "incidents",
    "business": "business",
    "can-i-deploy": "contracts",
    "k8s": "kubernetes",
    "worker": "worker",
}

HELP = "Conveyor carries a commit to production: pipeline-as-code, gates, images, releases."
EPILOG = """\
[bold]Examples[/]
  [dim]# start a project, check conveyor.yml[/]
  conveyor init && conveyor lint
  [dim]# run the pipeline on HEAD, one line per job[/]
  conveyor run -q
  [dim]# the latest run, for a script[/]
  conveyor status -o json
  [dim]# a canary in progress: step, weights, the judge's verdicts[/]
  conveyor release status production
  [dim]# tab completion for your shell[/]
  conveyor --install-completion

[bold]Environment variables[/]
  CONVEYOR_FILE          the spec file when -f is not given
  CONVEYOR_STATE_DIR     the state folder (default: .conveyor/)
  CONVEYOR_DATABASE_URL  a SQLAlchemy URL for the database
  CONVEYOR_ACTOR         who you are in the records (default: $USER)
  CONVEYOR_USERS_FILE    the approvers (default: STATE_DIR/users.yml)
  CONVEYOR_TOKEN         your token for approve and reject, and for a server
  CONVEYOR_SERVER        act on this Conveyor server (as --server URL does)
  CONVEYOR_SECRET_<ENV>_<NAME>  an environment's own value of secret NAME
  NO_COLOR               no colours

[bold]Exit codes[/]
  0 ok, 1 pipeline or gate failed, 2 usage or spec error,
  3 infrastructure (registry, router, database), 4 not found,
  130 interrupted. docs/cli.md says more."""

VERSION_FLAG = "--version"
SERVER_ENV = "CONVEYOR_SERVER"  # = conveyor.cli.target.SERVER_ENV (not imported here)
SERVER_OPTION = "--server"
TOKEN_FILE_OPTION = "--token-file"  # noqa: S105 (an option's name)
# Root options that take a value (the word after them is not the command).
VALUED_ROOT_OPTIONS = (SERVER_OPTION, TOKEN_FILE_OPTION)


def main(argv: list[str] | None = None) -> None:
    """The `conveyor` program. The imports allocate a few hundred thousand objects that live
    as long as the process: the collector's passes over them are wasted work, ~40 ms while
    importing and ~90 ms in the collection at interpreter exit. So nothing is collected
    until the command's modules are in, and what exists then, and at the end, is frozen
    out of every later pass (`gc.freeze`). Only here, where the process ends with the
    command: a test calling `run_cli` keeps its collector as it is."""
    gc.disable()
    code = run_cli(argv, settle_heap=True)
    gc.freeze()
    sys.exit(code)


def run_cli(argv: Sequence[str] | None = None, *, settle_heap: bool = False) -> int:
    """Run the CLI and map every outcome to a documented exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = wants_json(args)
    debug = "--debug" in args
    try:
        if args == [VERSION_FLAG]:  # the common case answered before typer is imported
            print(f"conveyor {__version__}")
            return int(ExitCode.OK)
        _choose_target(args)
        return _invoke(args, as_json=as_json, debug=debug, settle_heap=settle_heap)
    except ConveyorError as refused:  # a command that runs locally only, with --server
        return _fail(refused, as_json=as_json, debug=debug)
    except KeyboardInterrupt as interrupted:  # anywhere: while importing, parsing, running
        return _fail(interrupted, as_json=as_json, debug=False)
    finally:
        target = sys.modules.get("conveyor.cli.target")
        if target is not None:  # the server's connections, if a command opened one
            target.close_clients()


def _choose_target(args: Sequence[str]) -> None:
    """Local, or the server of `--server URL` (before the command) or $CONVEYOR_SERVER;
    a command the server cannot do is refused before anything is imported for it. A local
    command does not import conveyor.cli.target (unless an earlier call in this process
    did: it is reset then)."""
    values, first = root_options(args)
    remote = SERVER_OPTION in values or bool(os.environ.get(SERVER_ENV))
    if not remote and "conveyor.cli.target" not in sys.modules:
        return
    from conveyor.cli import target

    chosen = target.target_of(values.get(SERVER_OPTION), values.get(TOKEN_FILE_OPTION))
    target.set_target(chosen)
    if chosen.server is not None and "--help" not in args:
        target.refuse_if_local_only(target.command_path(args[first:]), chosen.server)


def root_options(args: Sequence[str]) -> tuple[dict[str, str], int]:
    """The valued root options before the command (`--server URL`, `--server=URL`), and
    the index of the first word after them."""
    found: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        name, equals, value = arg.partition("=")
        if name in VALUED_ROOT_OPTIONS:
            if equals:
                found[name] = value
            elif index + 1 < len(args):
                found[name] = args[index + 1]
                index += 1
            index += 1
            continue
        if not arg.startswith("-"):
            break
        index += 1
    return found, index


def build_app(names: Iterable[str] | None = None) -> typer.Typer:
    """The application with the command modules that define `names` (default: all)."""
    import typer

    app = typer.Typer(
        name="conveyor",
        help=HELP,
        epilog=EPILOG,
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )
    app.callback()(_root_options(typer))
    wanted = COMMAND_MODULES.keys() if names is None else names
    modules = dict.fromkeys(COMMAND_MODULES[name] for name in wanted)
    for module in modules:
        importlib.import_module(f"conveyor.cli.{module}").register(app)
    return app


def _root_options(typer: ModuleType) -> Callable[..., None]:
    """The options before the command; `run_cli` reads them from the arguments itself.
    (Defaults rather than Annotated: typer is imported here, not at module level.)"""

    def root(
        debug: bool = typer.Option(False, "--debug", help="Show the traceback of every error."),
        server: str | None = typer.Option(
            None,
            "--server",
            metavar="URL",
            show_default=False,
            help="Act on this Conveyor server, with $CONVEYOR_TOKEN (default: "
            "$CONVEYOR_SERVER; none: the local project).",
        ),
        token_file: str | None = typer.Option(
            None,
            "--token-file",
            metavar="FILE",
            show_default=False,
            help="With a server: read your token from FILE ('-': standard input).",
        ),
        version: bool = typer.Option(
            False, VERSION_FLAG, callback=_print_version, is_eager=True, help="Print the version."
        ),
    ) -> None:
        del debug, version, server, token_file  # read by run_cli (conveyor.cli.target)

    root.__doc__ = HELP
    return root


def _print_version(value: bool) -> None:
    import typer

    if value:
        print(f"conveyor {__version__}")
        raise typer.Exit()


def command_name(args: Sequence[str]) -> str | None:
    """The command the arguments name, if they name one (the first non-option word after
    the root options' values)."""
    _, first = root_options(args)
    for arg in args[first:]:
        if not arg.startswith("-"):
            return arg if arg in COMMAND_MODULES else None
    return None


def wants_json(args: Sequence[str]) -> bool:
    """Whether the command line asks for JSON (`-o json`, `--output json`, `-ojson`)."""
    for index, arg in enumerate(args):
        if arg in ("-o", "--output") and args[index + 1 : index + 2] == ["json"]:
            return True
        if arg in ("-ojson", "--output=json"):
            return True
    return False


def _invoke(args: list[str], *, as_json: bool, debug: bool, settle_heap: bool = False) -> int:
    import typer

    command = typer.main.get_command(build_app(_names_needed(args)))
    _reflow_help(command)
    if settle_heap:  # the command's modules are in: see `main`
        gc.freeze()
        gc.enable()
    try:
        result = command.main(args=args, prog_name="conveyor", standalone_mode=False)
    except (typer.Exit, SystemExit) as ended:  # completion options end with sys.exit
        return _code_of(ended)
    except typer.Abort:  # a prompt's Ctrl-C or end of input
        return _fail(KeyboardInterrupt(), as_json=as_json, debug=False)
    except typer.TyperException as error:  # typer's usage errors: unknown option, ...
        return _usage(error, as_json=as_json)
    except Exception as error:  # each kind is mapped; a bug is re-raised
        return _fail(error, as_json=as_json, debug=debug)
    code = int(result) if isinstance(result, int) else int(ExitCode.OK)
    if code == ExitCode.INTERRUPTED:  # typer turns Ctrl-C in a command into this code
        return _fail(KeyboardInterrupt(), as_json=as_json, debug=False)
    return code


def _reflow_help(command: Any) -> None:
    """Join the hard-wrapped lines of every command's help into paragraphs: typer's rich
    help keeps a docstring's single line breaks, which reads as ragged text."""
    if command.help:
        command.help = reflowed(command.help)
    for sub in getattr(command, "commands", {}).values():
        _reflow_help(sub)


def reflowed(text: str) -> str:
    """Each paragraph on one line, but for lists and preformatted (`\\b`) paragraphs."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(_one_line(paragraph) for paragraph in paragraphs)


def _one_line(paragraph: str) -> str:
    lines = paragraph.split("\n")
    if paragraph.startswith("\b") or any(line.startswith(("-", "*", " ")) for line in lines):
        return paragraph
    return " ".join(line.strip() for line in lines)


def _names_needed(args: Sequence[str]) -> list[str] | None:
    """The commands whose modules are imported: the one named; none for the version
    alone; all (None) for help, completion or a mistyped command's suggestions."""
    name = command_name(args)
    if name is not None:
        return [name]
    if args and all(arg in (VERSION_FLAG, "--debug") for arg in args):
        return []
    return None


def _code_of(ended: BaseException) -> int:
    code = getattr(ended, "exit_code", getattr(ended, "code", 0))
    return code if isinstance(code, int) else int(code is not None)


def _fail(error: BaseException, *, as_json: bool, debug: bool) -> int:
    failure = failure_of(error)
    if failure is None:
        raise error  # not an error Conveyor knows: a bug, whose traceback must be seen
    if debug:
        from conveyor.cli.output import err_console

        err_console.print_exception()
    _show(failure, as_json=as_json)
    return int(failure.exit_code)


def _show(failure: Failure, *, as_json: bool) -> None:
    if as_json:
        print_json(failure)
    else:
        print_text(failure)


def _usage(error: typer.TyperException, *, as_json: bool) -> int:
    if as_json:
        failure = usage_failure(error.format_message(), error.exit_code)
        print_json(failure)
        return int(failure.exit_code)
    show = getattr(error, "show", None)  # the usage line and "Try 'conveyor ... --help'"
    if callable(show):
        show()
    else:
        print_text(usage_failure(error.format_message(), error.exit_code))
    return int(error.exit_code)
