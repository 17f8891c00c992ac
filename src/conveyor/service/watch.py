"""`conveyor env watch`: an environment's current releases, then only what changes.

Like `kubectl get -w`: the first window shows every current release (one with traffic, or
running here: the live, warm, canary and baseline releases; not every release the router
once counted), and each later window only the releases that appeared, went, or changed:
their state, weight, ready replicas or restarts, or their golden signals by more than the
noise of one window (`rates_moved`). Every window is also sampled into the store, the
time series release analysis reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from conveyor.deploy.controller import ReleaseController
from conveyor.deploy.model import SignalRates, SignalSample
from conveyor.deploy.signals import window_rates
from conveyor.errors import InfrastructureError, NotFoundError
from conveyor.service.environments import controller, environment_spec
from conveyor.service.project import Project
from conveyor.states import ReleaseState
from conveyor.store.store import Store

# What counts as a change of golden signals between what was shown and a new window.
REQUESTS_MOVED = 0.25  # relative change of req/s...
REQUESTS_MOVED_AT_LEAST = 1.0  # ...and at least this many req/s
ERRORS_MOVED = 0.01  # 5xx or 4xx share of responses: one percentage point
LATENCY_MOVED = 0.5  # relative change of p99...
LATENCY_MOVED_AT_LEAST = 0.010  # ...and at least 10 ms


class WatchChange(StrEnum):
    CURRENT = "current"  # the first window: the state the watch began with
    ADDED = "added"
    CHANGED = "changed"
    GONE = "gone"  # no traffic and not running any more


@dataclass(frozen=True)
class WatchRow:
    release_id: str
    state: ReleaseState | None  # None: the ledger does not know it
    weight: int
    ready: int
    replicas: int
    restarts: int
    rates: SignalRates | None


@dataclass(frozen=True)
class WatchLine:
    change: WatchChange
    row: WatchRow


def watch(project: Project, store: Store, name: str, interval: float) -> Iterator[list[WatchLine]]:
    """Every `interval` seconds, for ever: the lines to show for that window (all current
    releases the first time, then only changes; often none)."""
    spec = environment_spec(project, name)
    if store.ledger.environments.get(name) is None:
        raise NotFoundError(f"{name} has never been deployed")
    control = controller(project, store, name, spec=spec)
    before = {s.release_id: s for s in _sample(control, name)}
    shown: dict[str, WatchRow] | None = None
    while True:
        time.sleep(interval)
        samples = _sample(control, name)
        rows = _rows(control, store, name, samples, before)
        before = {s.release_id: s for s in samples}
        lines = changes(shown, rows)
        shown = {row.release_id: row for row in rows}
        yield lines


def _sample(control: ReleaseController, name: str) -> list[SignalSample]:
    try:
        return control.sample()
    except (InfrastructureError, OSError) as error:  # stopped, or its router died
        said = error.message if isinstance(error, InfrastructureError) else str(error)
        raise InfrastructureError(
            f"{name}'s router does not answer: {said}",
            hint=f"`conveyor env reconcile {name}` starts its router and releases again",
        ) from None


def _rows(
    control: ReleaseController,
    store: Store,
    name: str,
    samples: Sequence[SignalSample],
    before: Mapping[str, SignalSample],
) -> list[WatchRow]:
    """The current releases (with traffic, or running here), most traffic first."""
    runtime = control.target.runtime
    rows = []
    for sample in samples:
        if sample.weight == 0 and sample.saturation is None:
            continue  # counted by the router once, gone since
        release = store.ledger.releases.get(sample.release_id, name)
        replicas = runtime.status(sample.release_id) if sample.saturation is not None else []
        previous = before.get(sample.release_id)
        rows.append(
            WatchRow(
                release_id=sample.release_id,
                state=release.state if release is not None else None,
                weight=sample.weight,
                ready=sum(1 for r in replicas if r.state.value == "ready"),
                replicas=len(replicas),
                restarts=sum(r.restarts for r in replicas),
                rates=window_rates(previous, sample) if previous is not None else None,
            )
        )
    return sorted(rows, key=lambda row: (-row.weight, row.release_id))


def changes(shown: Mapping[str, WatchRow] | None, rows: Sequence[WatchRow]) -> list[WatchLine]:
    """What to print for a window, given what is on screen (None: nothing yet)."""
    if shown is None:
        return [WatchLine(WatchChange.CURRENT, row) for row in rows]
    lines = []
    for row in rows:
        old = shown.get(row.release_id)
        if old is None:
            lines.append(WatchLine(WatchChange.ADDED, row))
        elif _status(old) != _status(row) or rates_moved(old.rates, row.rates):
            lines.append(WatchLine(WatchChange.CHANGED, row))
    current = {row.release_id for row in rows}
    gone = [old for release_id, old in shown.items() if release_id not in current]
    return lines + [WatchLine(WatchChange.GONE, old) for old in gone]


def _status(row: WatchRow) -> tuple[object, ...]:
    return (row.state, row.weight, row.ready, row.replicas, row.restarts)


def rates_moved(old: SignalRates | None, new: SignalRates | None) -> bool:
    """Whether the golden signals moved more than one window's noise."""
    if old is None or new is None:
        return (old is None) != (new is None)
    return (
        _moved(
            old.requests_per_second,
            new.requests_per_second,
            REQUESTS_MOVED,
            REQUESTS_MOVED_AT_LEAST,
        )
        or abs(new.rate_5xx - old.rate_5xx) >= ERRORS_MOVED
        or abs(new.rate_4xx - old.rate_4xx) >= ERRORS_MOVED
        or (old.p99 is None) != (new.p99 is None)
        or _moved(old.p99 or 0.0, new.p99 or 0.0, LATENCY_MOVED, LATENCY_MOVED_AT_LEAST)
    )


def _moved(old: float, new: float, relative: float, at_least: float) -> bool:
    change = abs(new - old)
    return change >= at_least and change >= relative * max(abs(old), abs(new))
