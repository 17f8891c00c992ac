"""The continuous watch: every environment's golden signals sampled all the time (not
only during a release), within the retention limits, and handed to each consumer.

`CONSUMERS` lists, one line per part, "module:function" entries called after each
environment's sample as `function(project, store, environment, now)` (`environment` is
its name, `now` the sample's epoch seconds; for instance the SLO evaluator); a consumer
that fails is logged once per change of its state and does not stop the watch.

Each tick reads the environments' records (one query), samples every deployed, running
one through its router and runtime (`deploy/sampler.py`, as releases do) and records all
samples in one write; the store prunes them per each environment's `samples:` retention.
What a tick needs is made once: conveyor.yml is read again only when it changed, each
environment's router and runtime are kept between ticks, the consumers imported once.
An environment that fails (its router down) is logged when it starts and stops failing,
not every tick; a stopped one (`conveyor env stop`) is skipped until it runs again.

Only one watcher samples a project: the watch holds the store's lock `conveyor.watch`
(a concurrency-group ticket, store/locks.py; released by a crash, since the ticket names
its process). A second watcher waits, sampling nothing, and takes over when the first ends.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from conveyor.deploy.log_errors import ErrorCounter, error_counter
from conveyor.deploy.sampler import plane_samples, to_row
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.states import ReleaseState
from conveyor.store.records import LockState

if TYPE_CHECKING:
    from conveyor.deploy.model import SignalSample
    from conveyor.deploy.routers.base import Router
    from conveyor.deploy.runtimes.base import Runtime
    from conveyor.observe.file_sd import FileSd, TargetGroup
    from conveyor.service.project import Project
    from conveyor.spec.environments import Environment
    from conveyor.store.ledger import EnvironmentRecord
    from conveyor.store.store import Store

CONSUMERS: tuple[str, ...] = (
    "conveyor.observe.slo_watch:consume",
    "conveyor.observe.feedback:watch_consumer",
    "conveyor.observe.business_watch:sample_on_watch",
)

DEFAULT_INTERVAL = 1.0
LEASE_GROUP = "conveyor.watch"
LEASE_RUN_ID = 0  # not a run: the watch's ticket in the concurrency-group table
LEASE_JOB_ID = "watch"
STORE_SUBJECT = "store"  # the subject of a failing store's changes

Consumer = Callable[["Project", "Store", str, float], object]
log = logging.getLogger("conveyor.observe.watch")


class Health(StrEnum):
    SAMPLING = "sampling"
    FAILING = "failing"
    STOPPED = "stopped"  # `conveyor env stop`: skipped
    NOT_DEPLOYED = "not deployed"  # nothing to sample yet
    OK = "ok"  # a consumer that answers


@dataclass(frozen=True)
class Change:
    """A subject (an environment, or `environment: consumer`) changed state."""

    subject: str
    health: Health
    reason: str | None
    ts: float


@dataclass(frozen=True)
class Tick:
    ts: float
    leased: bool  # False: another watcher holds the lease; nothing was sampled
    sampled: Mapping[str, int] = field(default_factory=dict)  # environment -> releases
    changes: tuple[Change, ...] = ()


@dataclass
class _Plane:
    """One environment's router and runtime, kept between ticks."""

    spec: Environment
    router: Router
    runtime: Runtime
    release_addresses: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The releases' error-level log lines (None: a runtime that keeps no replica logs).
    log_errors: ErrorCounter | None = None


class WatchLease:
    """The store lock that makes one watcher per project the sampling one."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ticket: int | None = None
        self._holding = False

    @property
    def holding(self) -> bool:
        return self._holding

    def held(self) -> bool:
        """Whether this watcher holds the lease (queueing for it the first time)."""
        if self._holding:
            return True
        if self._ticket is None:
            ticket = self.store.lock_enqueue(
                LEASE_GROUP, LEASE_RUN_ID, LEASE_JOB_ID, supersede=False
            )
            self._ticket, state = ticket.id, ticket.state
        else:
            state = self.store.lock_poll(self._ticket)
        if state in (LockState.RELEASED, LockState.SUPERSEDED):
            self._ticket = None  # released under us: queue again next time
        self._holding = state is LockState.HOLDING
        return self._holding

    def release(self) -> None:
        if self._ticket is not None:
            self.store.lock_release(self._ticket)
        self._ticket, self._holding = None, False


class Watcher:
    """Samples the environments of `project` (or only those named) once per `tick`."""

    def __init__(
        self,
        project: Project,
        store: Store,
        *,
        only: Sequence[str] = (),
        consumers: Sequence[str] | None = None,
        file_sd: FileSd | None = None,
    ) -> None:
        self.project, self.store = project, store
        self.only = tuple(dict.fromkeys(only))
        self.lease = WatchLease(store)
        self.file_sd = file_sd
        self._consumers = _load_consumers(CONSUMERS if consumers is None else consumers)
        self._spec_stamp: tuple[int, int] | None = None
        self._specs: dict[str, Environment] = {}
        self._planes: dict[str, _Plane] = {}
        self._health: dict[str, Health] = {}
        self._load_specs(strict=True)

    @property
    def environments(self) -> list[str]:
        return list(self._specs)

    def tick(self, now: float | None = None) -> Tick:
        """Sample every running environment once, record the samples, call the consumers."""
        ts = time.time() if now is None else now
        changes: list[Change] = []
        self._reload_specs(changes, ts)
        records = {r.name: r for r in self.store.ledger.environments.all()}
        deployed = [name for name in self._specs if name in records]
        for name in self._specs:
            if name not in records:
                self._set(changes, name, Health.NOT_DEPLOYED, None, ts)
        if not deployed:
            return Tick(ts, leased=self.lease.holding, changes=tuple(changes))
        if not self.lease.held():
            return Tick(ts, leased=False, changes=tuple(changes))
        stopped = _stopped(self.store, [records[name] for name in deployed])
        running: dict[str, set[str]] = {}  # runtime name -> its releases: read once a tick
        samples = {
            name: self._sample(records[name], name in stopped, running, changes, ts)
            for name in deployed
        }
        taken = {name: found for name, found in samples.items() if found is not None}
        self._record(taken)
        for name in taken:
            self._consume(name, changes, ts)
        if self.file_sd is not None:
            self._discover(records, taken)
        sampled = {name: len(found) for name, found in taken.items()}
        return Tick(ts, leased=True, sampled=sampled, changes=tuple(changes))

    def run(
        self,
        interval: float,
        stop: threading.Event,
        on_tick: Callable[[Tick], None] | None = None,
    ) -> None:
        """Tick every `interval` seconds until `stop` is set (ticks that fall behind are
        skipped, not run in a burst); the lease is released at the end."""
        next_at = time.monotonic()
        try:
            while not stop.is_set():
                report = self._tick_or_report()
                if on_tick is not None:
                    on_tick(report)
                next_at += interval
                late = time.monotonic() - next_at
                if late > 0:
                    next_at += (late // interval + 1) * interval
                stop.wait(next_at - time.monotonic())
        finally:
            self.lease.release()

    def _tick_or_report(self) -> Tick:
        """A tick; if the store itself fails (locked by a long write, its disk full), the
        failure is reported once and the next tick tries again."""
        try:
            tick = self.tick()
        except Exception as error:  # the watch outlives a store that fails for a while
            changes: list[Change] = []
            self._set(changes, STORE_SUBJECT, Health.FAILING, _reason(error), time.time())
            return Tick(time.time(), leased=self.lease.holding, changes=tuple(changes))
        if self._health.get(STORE_SUBJECT) is Health.FAILING:
            recovered: list[Change] = []
            self._set(recovered, STORE_SUBJECT, Health.OK, None, tick.ts)
            tick = replace(tick, changes=tick.changes + tuple(recovered))
        return tick

    # --- conveyor.yml -----------------------------------------------------------------

    def _load_specs(self, *, strict: bool) -> None:
        from conveyor.service.environments import environments_of, spec_stamp

        stamp = spec_stamp(self.project)
        declared = environments_of(self.project)
        unknown = [name for name in self.only if name not in declared]
        if unknown and strict:
            known = ", ".join(declared) or "none"
            raise NotFoundError(
                f"no environment {', '.join(map(repr, unknown))} in "
                f"{self.project.spec_path.name} (environments: {known})",
                hint="name environments declared under `environments:`",
            )
        wanted = self.only or tuple(declared)
        self._specs = {name: declared[name] for name in wanted if name in declared}
        self._spec_stamp = stamp
        for name in list(self._planes):
            if self._specs.get(name) != self._planes[name].spec:
                del self._planes[name]  # made again from the new spec

    def _reload_specs(self, changes: list[Change], ts: float) -> None:
        from conveyor.service.environments import spec_stamp

        if spec_stamp(self.project) == self._spec_stamp:
            return
        try:
            self._load_specs(strict=False)
        except ConveyorError as error:  # a half-edited file: keep watching the old spec
            self._spec_stamp = spec_stamp(self.project)
            self._set(changes, self.project.spec_path.name, Health.FAILING, error.message, ts)
            return
        self._set(changes, self.project.spec_path.name, Health.OK, None, ts)

    # --- sampling ---------------------------------------------------------------------

    def _sample(
        self,
        record: EnvironmentRecord,
        stopped: bool,
        running: dict[str, set[str]],
        changes: list[Change],
        ts: float,
    ) -> list[SignalSample] | None:
        name = record.name
        if stopped:
            self._set(changes, name, Health.STOPPED, None, ts)
            return None
        try:
            plane = self._plane(name)
            # Every environment's runtime of one kind shares the project's runtime folder.
            kind = plane.spec.runtime
            if kind not in running:
                running[kind] = set(plane.runtime.releases())
            # Stamped with the tick's time: what a consumer called with `now` reads.
            found = plane_samples(
                name,
                plane.router,
                plane.runtime,
                running[kind],
                now=ts,
                log_errors_of=plane.log_errors,
            )
        except Exception as error:  # one environment never stops the watch
            self._set(changes, name, Health.FAILING, _reason(error), ts)
            return None
        self._set(changes, name, Health.SAMPLING, None, ts)
        return found

    def _plane(self, name: str) -> _Plane:
        plane = self._planes.get(name)
        if plane is None:
            plane = self._planes[name] = _make_plane(
                self.project, self.store, name, self._specs[name]
            )
        return plane

    def _record(self, taken: Mapping[str, list[SignalSample]]) -> None:
        rows = [to_row(sample) for found in taken.values() for sample in found]
        self.store.ledger.samples.add(rows)

    def _consume(self, name: str, changes: list[Change], ts: float) -> None:
        for entry, consumer in self._consumers:
            subject = f"{name}: {entry}"
            try:
                if consumer is None:
                    raise ConveyorError(f"cannot import {entry}")
                consumer(self.project, self.store, name, ts)
            except Exception as error:  # one consumer never stops the watch
                self._set(changes, subject, Health.FAILING, _reason(error), ts)
            else:
                self._set(changes, subject, Health.OK, None, ts)

    def _discover(
        self, records: Mapping[str, EnvironmentRecord], taken: Mapping[str, list[SignalSample]]
    ) -> None:
        from conveyor.observe.file_sd import release_group, router_group

        assert self.file_sd is not None
        groups: list[TargetGroup] = []
        for name, found in taken.items():
            plane = self._planes[name]
            router = router_group(name, plane.spec.router, records[name].admin_port)
            groups += [router] if router is not None else []
            running = {s.release_id for s in found if s.saturation is not None}
            for release_id in sorted(running):
                addresses = _addresses(plane, release_id)
                groups.append(release_group(name, release_id, addresses))
            for gone in set(plane.release_addresses) - running:
                del plane.release_addresses[gone]
        try:
            self.file_sd.update(groups)
        except OSError as error:
            self._set([], str(self.file_sd.path), Health.FAILING, str(error), time.time())

    # --- state changes ----------------------------------------------------------------

    def _set(
        self, changes: list[Change], subject: str, health: Health, reason: str | None, ts: float
    ) -> None:
        """Log and report a subject's health when it changes (not every tick)."""
        if self._health.get(subject) is health:
            return
        self._health[subject] = health
        change = Change(subject, health, reason, ts)
        changes.append(change)
        level = logging.WARNING if health is Health.FAILING else logging.INFO
        log.log(level, "%s: %s%s", subject, health.value, f": {reason}" if reason else "")


def _make_plane(project: Project, store: Store, name: str, spec: Environment) -> _Plane:
    from conveyor.service.environments import make_router, make_runtime
    from conveyor.store.ledger import Retention

    kept = spec.samples
    store.ledger.samples.retain(name, Retention(kept.full, int(kept.every), kept.keep))
    router = make_router(project, name, spec, store)
    runtime = make_runtime(project, spec)
    return _Plane(spec, router, runtime, log_errors=error_counter(runtime))


def _addresses(plane: _Plane, release_id: str) -> tuple[str, ...]:
    """The release's replica addresses, read once per release (they keep their ports)."""
    known = plane.release_addresses.get(release_id)
    if known is None:
        try:
            known = tuple(r.address for r in plane.runtime.status(release_id))
        except (ConveyorError, OSError):
            return ()
        plane.release_addresses[release_id] = known
    return known


def _stopped(store: Store, records: Sequence[EnvironmentRecord]) -> set[str]:
    """The environments `env stop` stopped: the ledger marks their live release so until
    they run again. One read for all of them."""
    lives = [(r.name, r.live_release) for r in records if r.live_release is not None]
    states = store.ledger.releases.states(lives)
    return {name for (name, _), state in states.items() if state is ReleaseState.STOPPED}


def _load_consumers(entries: Sequence[str]) -> list[tuple[str, Consumer | None]]:
    """Each entry's function; None (reported as failing at each sample) if it does not
    import, so a broken consumer never stops the watch."""
    loaded: list[tuple[str, Consumer | None]] = []
    for entry in entries:
        module, _, attribute = entry.partition(":")
        function: Any = None
        try:
            function = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError, ValueError) as error:
            log.warning("watch consumer %s does not import: %s", entry, error)
        loaded.append((entry, function if callable(function) else None))
    return loaded


def _reason(error: BaseException) -> str:
    if isinstance(error, ConveyorError):
        return error.message
    return f"{type(error).__name__}: {error}"
