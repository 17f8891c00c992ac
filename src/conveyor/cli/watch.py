"""`conveyor watch`: the continuous watch where no server runs (docs/monitoring.md)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.cli.environments import opened
from conveyor.cli.output import (
    OutputFormat,
    OutputOption,
    console,
    emit_json_line,
    examples,
)
from conveyor.cli.project import SpecOption
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.observe.watch import Change, Tick

STATUS_EVERY = 60  # ticks between two status lines when nothing changes

IntervalOption = typer.Option(
    "--interval", "-i", help="Time between two samples, e.g. 1s, 500ms, 5s."
)
EnvOption = typer.Option("--env", "-e", help="Watch only this environment (repeatable).")
CountOption = typer.Option("--count", "-n", min=0, help="Stop after N ticks (0: never).")
SdOption = typer.Option(
    "--prometheus-sd",
    help="Also write Prometheus file-based service discovery of the routers' and "
    "releases' metrics endpoints to this JSON file.",
)


def register(app: typer.Typer) -> None:
    app.command(
        "watch",
        epilog=examples(
            ("conveyor watch", "sample every environment every second (Ctrl-C stops)"),
            ("conveyor watch -e production -i 5s", "one environment, every 5 s"),
            ("conveyor watch --prometheus-sd /etc/prometheus/conveyor.json", "for Prometheus"),
        ),
    )(watch)


def watch(
    interval: Annotated[str, IntervalOption] = "1s",
    env: Annotated[list[str] | None, EnvOption] = None,
    count: Annotated[int, CountOption] = 0,
    prometheus_sd: Annotated[Path | None, SdOption] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Sample every environment's golden signals all the time, not only during deploys.

    Each tick records one sample per release into the store (the retention of each
    environment's `samples:` applies) and calls the watch's consumers (SLO evaluation).
    A line is printed when an environment starts or stops failing, stops or starts, and a
    status line every minute. One watcher samples a project at a time: a second one
    waits until the first ends. `conveyor server` runs the same watch (`--no-watch`)."""
    from conveyor.observe.file_sd import FileSd
    from conveyor.observe.watch import Watcher
    from conveyor.spec.durations import parse_duration

    try:
        seconds = parse_duration(interval)
    except ValueError as error:
        raise ConveyorError(f"--interval: {error}", hint="for instance --interval 1s") from None
    with opened(spec) as (project, store):
        sd = FileSd(prometheus_sd.resolve()) if prometheus_sd else None
        watcher = Watcher(project, store, only=env or (), file_sd=sd)
        names = ", ".join(watcher.environments) or "no environment"
        if output is OutputFormat.TEXT:
            console.print(f"Watching {escape(names)} every {seconds:g}s (Ctrl-C stops)")
        show = _Printer(output, count)
        with _stop_on_signals() as stop:
            show.stop = stop
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the normal end
                watcher.run(seconds, stop, show.tick)
        if output is OutputFormat.TEXT:
            console.print(f"Stopped after {show.ticks} ticks, {show.samples} samples recorded")


class _Printer:
    """Lines for changes, a status line every STATUS_EVERY ticks; stops after `count`."""

    def __init__(self, output: OutputFormat, count: int) -> None:
        self.output, self.count = output, count
        self.ticks = self.samples = 0
        self._window_samples = 0
        self._leased: bool | None = None
        self.stop: threading.Event | None = None

    def tick(self, tick: Tick) -> None:
        self.ticks += 1
        taken = sum(tick.sampled.values())
        self.samples += taken
        self._window_samples += taken
        if tick.leased != self._leased:
            self._leased = tick.leased
            self._lease_line(tick)
        for change in tick.changes:
            self._change_line(change)
        if self.output is OutputFormat.TEXT and self.ticks % STATUS_EVERY == 0:
            when = datetime.fromtimestamp(tick.ts).strftime("%H:%M:%S")
            count = len(tick.sampled)
            console.print(
                f"{when} {count} environment{'s' if count != 1 else ''} sampled, "
                f"{self._window_samples} samples in {STATUS_EVERY} ticks"
            )
            self._window_samples = 0
        if self.count and self.ticks >= self.count and self.stop is not None:
            self.stop.set()

    def _lease_line(self, tick: Tick) -> None:
        if self.output is OutputFormat.JSON:
            emit_json_line({"ts": tick.ts, "lease": "held" if tick.leased else "waiting"})
        elif not tick.leased:
            console.print("Another watcher samples this project: waiting for it to end")

    def _change_line(self, change: Change) -> None:
        if self.output is OutputFormat.JSON:
            emit_json_line(
                {
                    "ts": change.ts,
                    "subject": change.subject,
                    "health": change.health.value,
                    "reason": change.reason,
                }
            )
            return
        when = datetime.fromtimestamp(change.ts).strftime("%H:%M:%S")
        reason = f": {change.reason}" if change.reason else ""
        console.print(f"{when} {escape(change.subject)}: {change.health.value}{escape(reason)}")


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event SIGTERM sets (Ctrl-C raises KeyboardInterrupt, caught by the caller)."""
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals reach the main thread only (an embedding host stops it)
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
