"""`conveyor flags ...`: feature flags per environment, their kill switch and their API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from conveyor.cli.output import (
    OutputFormat,
    OutputOption,
    QuietOption,
    VerboseOption,
    console,
    emit_json,
    err_console,
    examples,
    progress,
    verbosity,
)
from conveyor.cli.project import SpecOption
from conveyor.errors import ConveyorError, ExitCode

if TYPE_CHECKING:
    from conveyor.flags.evaluate import Evaluation
    from conveyor.flags.model import Flag
    from conveyor.flags.store import FlagLedger, FlagRecord

M = TypeVar("M", bound=BaseModel)
flags_app = typer.Typer(
    help="Feature flags per environment: strategies, rollouts, kill switch.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor flags ls production", "the flags: on or off, strategies, version"),
        ("conveyor flags set staging new-banner --on", "turn a flag on (for everyone)"),
        ("conveyor flags rollout production new-banner 25", "25% of users, sticky"),
        ("conveyor flags release production new-banner", "step by step, judged; harm kills it"),
        ("conveyor flags kill production new-banner --reason 5xx", "off at once, for everyone"),
        ("conveyor flags eval production new-banner -c userId=42 -o json", "as the SDK would"),
    ),
)
EnvArgument = typer.Argument(help="The environment's name in conveyor.yml, e.g. production.")
NameArgument = typer.Argument(help="The flag's name, e.g. new-catalogue-banner.")
DefinitionOption = typer.Option(
    "--definition", "-d", help="A YAML file with the whole definition (docs/flags.md)."
)


def register(app: typer.Typer) -> None:
    app.add_typer(flags_app, name="flags")


@contextmanager
def _ledger(spec: Path | None, environment: str | None) -> Iterator[FlagLedger]:
    """The project's flag ledger; `environment`, when given, must be in conveyor.yml."""
    from conveyor.flags.store import FlagLedger
    from conveyor.service.project import Project

    project = Project.locate(spec)
    if environment is not None:
        from conveyor.service.environments import environment_spec

        environment_spec(project, environment)
    with project.open_store() as store:
        yield FlagLedger(store.engine)


def _actor() -> str:
    from conveyor.service.runs import default_actor

    return default_actor()


@flags_app.command("ls")
def flags_ls(
    environment: Annotated[str, EnvArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """List an environment's flags: on or off, strategies, variants, version."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        version, records = remote_commands.flags(remote, environment)
    else:
        with _ledger(spec, environment) as ledger:
            snapshot = ledger.snapshot(environment)
        version = snapshot.version
        records = [record for _, record in sorted(snapshot.flags.items())]
    if output is OutputFormat.JSON:
        emit_json({"environment": environment, "version": version, "flags": records})
        return
    if not records:
        console.print(f"no flags in {escape(environment)} yet: `conveyor flags set` adds one")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("flag", "state", "strategies", "variants", "version", "updated"):
        table.add_column(column)
    for record in records:
        flag = record.flag
        table.add_row(
            escape(flag.name),
            "[green]on[/]" if flag.enabled else "[dim]off[/]",
            escape(describe_strategies(flag)),
            escape(", ".join(f"{v.name}:{v.weight}" for v in flag.variants)),
            str(record.version),
            datetime.fromtimestamp(record.updated_at).strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@flags_app.command("set")
def flags_set(
    environment: Annotated[str, EnvArgument],
    name: Annotated[str, NameArgument],
    on: Annotated[
        bool | None, typer.Option("--on/--off", help="Turn the flag on or off.", show_default=False)
    ] = None,
    definition: Annotated[Path | None, DefinitionOption] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Turn a flag on or off (a new flag is on for everyone), or replace its definition."""
    from conveyor.cli import target

    if definition is None and on is None:
        raise ConveyorError("say --on, --off or --definition FILE", hint="docs/flags.md")
    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        if definition is not None or on is None:
            raise remote_commands.local_only("--definition")
        _report(remote_commands.set_flag(remote, environment, name, on), output)
        return
    # The file is read and checked before the store is opened: a bad one changes nothing.
    flag = _flag_definition(definition, name, on) if definition is not None else None
    with _ledger(spec, environment) as ledger:
        if flag is None:
            assert on is not None
            record = ledger.set_enabled(environment, name, on, actor=_actor())
        else:
            record = ledger.define(environment, flag, actor=_actor())
    _report(record, output)


def _flag_definition(definition: Path, name: str, on: bool | None) -> Flag:
    from conveyor.flags.model import Flag

    data = _read_yaml(definition)
    if data.setdefault("name", name) != name:
        raise ConveyorError(f"{definition} defines {data['name']!r}, not {name!r}")
    if on is not None:
        data["enabled"] = on
    return _validated(Flag, data, definition)


@flags_app.command("rollout")
def flags_rollout(
    environment: Annotated[str, EnvArgument],
    name: Annotated[str, NameArgument],
    percent: Annotated[int, typer.Argument(help="0..100: the share of contexts that get it.")],
    stickiness: Annotated[
        str | None,
        typer.Option(
            "--stickiness", help="The context field to hash (default: userId, then sessionId)."
        ),
    ] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Roll a flag out to PERCENT% of contexts, sticky by a hash of the stickiness field."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        record = remote_commands.rollout_flag(remote, environment, name, percent, stickiness)
        _report(record, output)
        return
    with _ledger(spec, environment) as ledger:
        record = ledger.rollout(environment, name, percent, stickiness=stickiness, actor=_actor())
    _report(record, output)


@flags_app.command("release")
def flags_release(
    environment: Annotated[str, EnvArgument],
    name: Annotated[str, NameArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
    quiet: Annotated[bool, QuietOption] = False,
    verbose: Annotated[bool, VerboseOption] = False,
) -> None:
    """Roll a flag out step by step, each step judged; harm turns it off (a kill).

    The steps and the analysis come from environments.ENV.flags in conveyor.yml; the judge
    reads the service's metrics per flag state."""
    from conveyor.flags.release import FlagReleaseState
    from conveyor.service.flag_releases import release_flag
    from conveyor.service.project import Project

    project = Project.locate(spec)
    level = verbosity(quiet, verbose)
    with project.open_store() as store, progress(level, f"releasing {name}") as say:
        outcome = release_flag(project, store, environment, name, actor=_actor(), progress=say)
    if output is OutputFormat.JSON:
        emit_json(outcome)
    else:
        console.print(f"{escape(name)} in {escape(environment)}: {outcome.state.value}")
        console.print(f"  {escape(outcome.reason)}")
    if outcome.state is not FlagReleaseState.RELEASED:
        raise typer.Exit(int(ExitCode.PIPELINE_FAILED))


@flags_app.command("kill")
def flags_kill(
    environment: Annotated[str, EnvArgument],
    name: Annotated[str, NameArgument],
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the log.")] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Turn a flag off at once, for everyone; recorded as a kill (a rollback)."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        outcome = remote_commands.kill_flag(remote, environment, name, reason)
    else:
        with _ledger(spec, environment) as ledger:
            outcome = ledger.kill(environment, name, actor=_actor(), reason=reason)
    if output is OutputFormat.JSON:
        emit_json(outcome)
    elif outcome.killed:
        console.print(
            f"{_where(outcome.record)}: [bold red]killed[/] (version {outcome.record.version})"
        )
    else:
        console.print(f"{_where(outcome.record)}: already off, nothing to kill")


@flags_app.command("eval")
def flags_eval(
    environment: Annotated[str, EnvArgument],
    name: Annotated[str, NameArgument],
    context: Annotated[
        list[str] | None,
        typer.Option("--context", "-c", help="key=value, repeated: userId=42 -c country=fr."),
    ] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Evaluate a flag for a context, as the API and the SDK provider would."""
    from conveyor.flags.evaluate import evaluate

    values = parse_context(context or [])
    with _ledger(spec, environment) as ledger:
        snapshot = ledger.snapshot(environment)
        record = ledger.flag(environment, name)
    result = evaluate(record.flag, values, snapshot.segment_definitions())
    if output is OutputFormat.JSON:
        emit_json(_evaluation_json(result, snapshot.version))
        return
    state = "[green]on[/]" if result.enabled else "[dim]off[/]"
    variant = f" variant {escape(result.variant.name)}" if result.variant else ""
    console.print(f"{state}{variant} ({result.reason.value}): {escape(result.detail)}")


@flags_app.command("segment")
def flags_segment(
    environment: Annotated[str, EnvArgument],
    name: Annotated[str, typer.Argument(help="The segment's name, e.g. beta-testers.")],
    definition: Annotated[Path, DefinitionOption],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Define a segment: a named list of constraints strategies can refer to."""
    from conveyor.flags.model import Segment

    data = _read_yaml(definition)
    data.setdefault("name", name)
    segment = _validated(Segment, data, definition)
    with _ledger(spec, environment) as ledger:
        record = ledger.define_segment(environment, segment, actor=_actor())
    if output is OutputFormat.JSON:
        emit_json(record)
        return
    console.print(f"{escape(environment)}/segment {escape(name)}: version {record.version}")


@flags_app.command("history")
def flags_history(
    environment: Annotated[str, EnvArgument],
    name: Annotated[str | None, typer.Argument(help="Only this flag.")] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Every change of the environment's flags, from the event log."""
    with _ledger(spec, environment) as ledger:
        found = ledger.history(environment, name)
    if output is OutputFormat.JSON:
        emit_json(found)
        return
    for event in found:
        when = datetime.fromtimestamp(event.ts).strftime("%Y-%m-%d %H:%M:%S")
        what = event.data.get("flag") or f"segment {event.data.get('segment')}"
        extra = f" {event.data['percentage']}%" if "percentage" in event.data else ""
        console.print(
            f"{when}  v{event.data.get('version')}  {escape(str(what))}: "
            f"{event.data.get('change')}{extra}  [dim]{escape(event.actor or '')}[/]"
        )


@flags_app.command("serve")
def flags_serve(
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on.")] = 4242,
    spec: Annotated[Path | None, SpecOption] = None,
) -> None:
    """Serve the evaluation API (docs/flags.md) for every environment until interrupted."""
    from conveyor.flags.server import serve

    with _ledger(spec, None) as ledger:
        err_console.print(f"serving flags at http://{host}:{port}")
        serve(ledger, host, port)


# --- helpers ----------------------------------------------------------------------------


def parse_context(pairs: list[str]) -> dict[str, str]:
    context: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConveyorError(f"--context takes key=value, got {pair!r}")
        context[key] = value
    return context


def describe_strategies(flag: Flag) -> str:
    """One short phrase per strategy, e.g. `users(2), rollout 25% on userId`."""
    from conveyor.flags.model import RolloutStrategy, UsersStrategy

    if not flag.strategies:
        return "everyone"
    phrases = []
    for strategy in flag.strategies:
        if isinstance(strategy, RolloutStrategy):
            phrase = f"rollout {strategy.percentage}% on {strategy.stickiness}"
        elif isinstance(strategy, UsersStrategy):
            phrase = f"users({len(strategy.users)})"
        else:
            phrase = "default"
        if strategy.targeted:
            phrase += " if " + ", ".join(
                [c.context_name for c in strategy.constraints] + list(strategy.segments)
            )
        phrases.append(phrase)
    return ", ".join(phrases)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    from conveyor import safe_yaml

    try:
        data = safe_yaml.load(path.read_text())
    except OSError as error:
        raise ConveyorError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConveyorError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConveyorError(f"{path} must hold a mapping (docs/flags.md)")
    return data


_SHOWN_PROBLEMS = 5  # a file with thousands of mistakes gets a message of a few lines


def _validated(model: type[M], data: dict[str, Any], path: Path) -> M:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as error:
        from conveyor.safe_yaml import MAX_ECHO_CHARS

        problems = "; ".join(
            f"{'.'.join(str(part) for part in detail['loc']) or 'top level'}: {detail['msg']}"
            for detail in error.errors()[:_SHOWN_PROBLEMS]
        )[: MAX_ECHO_CHARS * _SHOWN_PROBLEMS]
        raise ConveyorError(
            f"{path}: {problems}", hint="docs/flags.md describes the format"
        ) from None


def _where(record: FlagRecord) -> str:
    return f"{escape(record.environment)}/{escape(record.flag.name)}"


def _report(record: FlagRecord, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        emit_json(record)
        return
    state = "[green]on[/]" if record.flag.enabled else "[dim]off[/]"
    console.print(
        f"{_where(record)}: {state} · {escape(describe_strategies(record.flag))}"
        f" · version {record.version}"
    )


def _evaluation_json(result: Evaluation, version: int) -> dict[str, Any]:
    payload = result.variant.payload if result.variant else None
    return {
        "value": result.enabled,
        "variant": result.variant.name if result.variant else None,
        "payload": payload.model_dump(mode="json") if payload else None,
        "reason": result.reason.value,
        "detail": result.detail,
        "version": version,
    }
