"""The continuous watch inside `conveyor server` (observe/watch.py): a thread of its own
samples every environment while the server runs, unless `--no-watch` turned it off."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from conveyor.errors import ConveyorError
from conveyor.observe.file_sd import FileSd
from conveyor.observe.watch import Tick, Watcher
from conveyor.server.context import ServerContext

WATCH_SETTING = "watch.settings"  # context.parts: WatchSettings, from `conveyor server`
WATCH_PART = "watch"  # context.parts: the running ServerWatch
STOP_TIMEOUT = 10.0
log = logging.getLogger("conveyor.server.watch")


@dataclass(frozen=True)
class WatchSettings:
    enabled: bool = True
    interval: float = 1.0
    prometheus_sd: Path | None = None


def configure_watch(context: ServerContext, settings: WatchSettings) -> None:
    context.parts[WATCH_SETTING] = settings


@dataclass
class ServerWatch:
    thread: threading.Thread
    stop: threading.Event
    ticks: int = 0


@asynccontextmanager
async def lifespan(context: ServerContext) -> AsyncIterator[None]:
    settings = context.parts.get(WATCH_SETTING, WatchSettings())
    assert isinstance(settings, WatchSettings)
    if not settings.enabled:
        yield
        return
    watch = start(context, settings)
    try:
        yield
    finally:
        watch.stop.set()
        await run_in_threadpool(watch.thread.join, STOP_TIMEOUT)


def start(context: ServerContext, settings: WatchSettings) -> ServerWatch:
    """The watch's thread, started; it reads conveyor.yml itself, so the server does not
    wait for that to start serving (a file that does not load is logged)."""
    stop = threading.Event()
    watch = ServerWatch(threading.Thread(), stop)

    def counted(_tick: Tick) -> None:
        watch.ticks += 1

    def loop() -> None:
        try:
            sd = FileSd(settings.prometheus_sd) if settings.prometheus_sd else None
            watcher = Watcher(context.project, context.store, file_sd=sd)
        except ConveyorError as error:
            log.warning("the continuous watch does not run: %s", error.message)
            return
        try:
            watcher.run(settings.interval, stop, counted)
        except Exception:  # the store went away under it: say so, never kill the server
            log.exception("the continuous watch stopped")

    watch.thread = threading.Thread(target=loop, name="conveyor-watch", daemon=True)
    context.parts[WATCH_PART] = watch
    watch.thread.start()
    return watch
