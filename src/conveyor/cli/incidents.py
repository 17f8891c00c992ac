"""`conveyor incidents list|show|ack|mitigate|resolve`: incidents opened by alerts
(observe/incidents.py), their timelines, suspects, and the follow-up on resolve."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from conveyor.cli.environments import opened
from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.cli.project import SpecOption
from conveyor.cli.remote import path_of
from conveyor.observe.incidents import Incident

incidents_app = typer.Typer(
    help="Incidents: what alerts opened, their suspects, timelines and follow-ups.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor incidents list --open", "the incidents not resolved yet"),
        ("conveyor incidents show 3", "the timeline, suspect releases, commits and flags"),
        ("conveyor incidents ack 3 -m 'looking'", "someone is on it"),
        ("conveyor incidents resolve 3 -m 'fixed'", "resolved: files the follow-up"),
    ),
)
NoteOption = typer.Option("--note", "-m", help="A note for the timeline.")


def register(app: typer.Typer) -> None:
    app.add_typer(incidents_app, name="incidents")


@incidents_app.command("list")
def list_command(
    environment: Annotated[str | None, typer.Option("--env", help="Only this one.")] = None,
    only_open: Annotated[bool, typer.Option("--open", help="Only unresolved ones.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=200)] = 50,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Incidents, newest first."""
    from conveyor.cli import target
    from conveyor.observe import incidents

    states = incidents.OPEN_STATES if only_open else ()
    remote = target.client()
    if remote is not None:
        params = {"environment": environment, "state": list(states) or None, "limit": limit}
        found = remote.get(path_of("incidents"), params)
        items = [remote.decoded(Incident, item, "incidents") for item in found["items"]]
        next_cursor = found["next_cursor"]
    else:
        with opened(spec) as (_project, store):
            page = incidents.list_incidents(
                store, environment=environment, state=states, limit=limit
            )
        items, next_cursor = page.items, page.next_cursor
    if output is OutputFormat.JSON:
        emit_json({"items": items, "next_cursor": next_cursor})
        return
    if not items:
        console.print("no incidents")
    for incident in items:
        console.print(
            f"{incident.id:>4} {_when(incident.opened_at)} {incident.environment:<12} "
            f"{incident.state.value:<12} {escape(incident.title)}"
        )


@incidents_app.command("show")
def show(
    incident_id: Annotated[int, typer.Argument(help="The incident's number.")],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """One incident: timeline, suspect releases with their commits, flag changes."""
    from conveyor.cli import target
    from conveyor.observe import incidents

    remote = target.client()
    if remote is not None:
        incident = remote.get_as(Incident, path_of("incidents", incident_id))
    else:
        with opened(spec) as (_project, store):
            incident = incidents.get_incident(store, incident_id)
    _print(incident, output)


def _move(
    transition: str, incident_id: int, note: str | None, spec: Path | None, output: OutputFormat
) -> None:
    from conveyor.cli import target
    from conveyor.observe import incidents
    from conveyor.service.runs import default_actor

    remote = target.client()
    if remote is not None:  # the server records its caller as the actor
        name = {"ack": "acknowledge"}.get(transition, transition)
        moved = remote.post(path_of("incidents", incident_id, name), {"note": note})
        _print(remote.decoded(Incident, moved, "incidents"), output)
        return
    actor = default_actor()
    with opened(spec) as (project, store):
        if transition == "ack":
            incident = incidents.acknowledge(store, incident_id, actor, note)
        elif transition == "mitigate":
            incident = incidents.mitigate(store, incident_id, actor, note)
        else:
            incident = incidents.resolve(project, store, incident_id, actor, note)
    _print(incident, output)


@incidents_app.command("ack")
def ack(
    incident_id: Annotated[int, typer.Argument(help="The incident's number.")],
    note: Annotated[str | None, NoteOption] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Acknowledge: someone is on it."""
    _move("ack", incident_id, note, spec, output)


@incidents_app.command("mitigate")
def mitigate(
    incident_id: Annotated[int, typer.Argument(help="The incident's number.")],
    note: Annotated[str | None, NoteOption] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Mitigated: users are served well again (records the time to restore)."""
    _move("mitigate", incident_id, note, spec, output)


@incidents_app.command("resolve")
def resolve(
    incident_id: Annotated[int, typer.Argument(help="The incident's number.")],
    note: Annotated[str | None, NoteOption] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Resolved: files the follow-up requirement (docs/monitoring.md, "Incidents")."""
    _move("resolve", incident_id, note, spec, output)


def _print(incident: Incident, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        emit_json(incident)
        return
    console.print(
        f"[bold]incident {incident.id}[/] {incident.environment} "
        f"{incident.state.value}: {escape(incident.title)}"
    )
    console.print(
        f"  time to detect {_seconds(incident.time_to_detect)}, "
        f"time to restore {_seconds(incident.time_to_restore)}"
    )
    for suspect in incident.suspects:
        console.print(f"  suspect {suspect['release_id']} ({suspect['state']})")
        for commit in suspect.get("commits", []):
            subject = commit.get("subject") or commit.get("note") or ""
            console.print(f"    {str(commit.get('sha') or '')[:12]} {escape(subject)}")
    for change in incident.flag_changes:
        console.print(f"  flag {change['flag']} {change['change']} by {change['actor']}")
    for entry in incident.timeline:
        note = f": {escape(entry.note)}" if entry.note else ""
        console.print(f"  {_when(entry.ts)} {entry.entry:<12} {escape(entry.actor)}{note}")
    if incident.requirement:
        requirement = incident.requirement
        console.print(f"  follow-up {requirement['key']}: {requirement['location']}")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} s"
