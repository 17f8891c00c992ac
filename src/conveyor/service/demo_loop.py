"""The demo's last chapter after its pipeline: production watched all the time, a defect
that shows only under production's full traffic caught by its SLO, rolled back by the
alert, the incident it opened resolved and its follow-up requirement filed.

The watch runs in a thread of the demo's process, as `conveyor watch` or the server would
run it: from the first production release on it samples the environments and feeds the
business metrics and the users' feedback; the SLO evaluator joins it only once the last
release has all the traffic, so that an alert cannot land in the middle of a canary the
story is about to judge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConveyorError
from conveyor.service.project import Project
from conveyor.store.records import EventKind

if TYPE_CHECKING:
    from conveyor.observe.business_figures import BusinessView
    from conveyor.observe.feedback import FeedbackReport

SLO_CONSUMER = "conveyor.observe.slo_watch:consume"
ALERT_ACTOR = "conveyor-alerts"  # who the alert intake's rollbacks are by
DEFECT_TIMEOUT = 240.0  # seconds the demo waits for the defect to be caught
MITIGATED_TIMEOUT = 30.0
FOLLOW_UP_NOTE = (
    "The warehouse pool leaked a connection per product list; give connections back, "
    "and alert on the pool's free connections before lists fail."
)


class DemoWatch:
    """A Watcher (observe/watch.py) ticking every second in a thread, with a store of its
    own; `consumers` as the Watcher takes them (None: every consumer)."""

    def __init__(self, project: Project, consumers: Sequence[str] | None) -> None:
        self.project, self.consumers = project, consumers
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo-watch", daemon=True)

    def start(self) -> DemoWatch:
        self._thread.start()
        self._ready.wait(30)
        if self._failure is not None:
            raise ConveyorError(f"the watch did not start: {self._failure}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        from conveyor.observe.watch import Watcher

        try:
            with self.project.open_store() as store:
                watcher = Watcher(self.project, store, consumers=self.consumers)
                self._ready.set()
                watcher.run(1.0, self._stop)
        except BaseException as error:  # reported by start(), or ends the thread quietly
            self._failure = error
            self._ready.set()


def every_consumer_but_the_slo() -> tuple[str, ...]:
    from conveyor.observe.watch import CONSUMERS

    return tuple(c for c in CONSUMERS if c != SLO_CONSUMER)


@dataclass(frozen=True)
class Experiment:
    """The checkout experiment's figures while the release it ran on was live: business
    metrics and ratings per release and per variant."""

    business: BusinessView
    feedback: FeedbackReport


def experiment_figures(project: Project, environment: str = "production") -> Experiment:
    from conveyor.observe.business_figures import business_view
    from conveyor.observe.feedback import environment_feedback

    with project.open_store() as store:
        business = business_view(project, store, environment, sample=True)
        feedback = environment_feedback(project, store, environment, with_themes=True)
    return Experiment(business, feedback)


@dataclass(frozen=True)
class LoopOutcome:
    """What production taught after the last release was promoted."""

    release: str | None  # the release the alert rolled back
    restored_to: str | None
    alert: str  # the alert that did it, as its evidence names it
    seconds_with_all_traffic: float | None  # from promotion to the rollback
    incident_id: int | None
    suspects: list[str]  # the incident's suspect releases, newest first
    requirement: str | None  # where the follow-up requirement was filed

    @property
    def closed(self) -> bool:
        return None not in (self.release, self.incident_id, self.requirement)


def close_the_loop(
    project: Project,
    resume_users: Callable[[], None],
    say: Callable[[str], None],
    commit: Callable[[Path, str], None],
    timeout: float = DEFECT_TIMEOUT,
) -> LoopOutcome:
    """The SLO evaluator watches production while the users browse, until an alert
    rolls the new release back (or `timeout`); then the incident is resolved by a person
    and its follow-up requirement filed."""
    promoted_at = time.time()
    with project.open_store() as store:
        after = max((event.id for event in store.events()), default=0)
    watch = DemoWatch(project, consumers=None).start()
    resume_users()
    say("  watching production's SLO (the users keep browsing) ...")
    try:
        rollback = _wait_for(lambda: _alert_rollback(project, after), timeout)
        incident = rollback and _wait_for(lambda: _mitigated(project), MITIGATED_TIMEOUT)
    finally:
        watch.stop()
    if rollback is None:
        return LoopOutcome(None, None, "no alert rolled production back", None, None, [], None)
    data: dict[str, Any] = rollback.data
    evidence = data.get("evidence", {}).get("alert", {})
    labels, annotations = evidence.get("labels", {}), evidence.get("annotations", {})
    alert = f"{labels.get('alertname', 'an alert')} ({labels.get('severity', '?')})"
    if annotations.get("summary"):
        alert += f": {annotations['summary']}"
    requirement = _resolve(project, incident.id, commit) if incident is not None else None
    return LoopOutcome(
        release=data.get("from"),
        restored_to=data.get("to"),
        alert=alert,
        seconds_with_all_traffic=round(rollback.ts - promoted_at, 1),
        incident_id=incident.id if incident is not None else None,
        suspects=[str(s.get("release_id")) for s in incident.suspects] if incident else [],
        requirement=requirement,
    )


def _alert_rollback(project: Project, after: int) -> Any:
    with project.open_store() as store:
        for event in store.events(after_id=after):
            if event.kind == EventKind.ROLLBACK.value and event.actor == ALERT_ACTOR:
                return event
    return None


def _mitigated(project: Project) -> Any:
    from conveyor.observe import incidents

    with project.open_store() as store:
        found = incidents.list_incidents(store, environment="production", limit=1).items
    if found and found[0].state is incidents.IncidentState.MITIGATED:
        return found[0]
    return None


def _resolve(project: Project, incident_id: int, commit: Callable[[Path, str], None]) -> str | None:
    """A person closes the incident; Conveyor files its follow-up requirement as a
    Markdown file in the repository (no forge is configured), and the person commits it
    (`commit(path, message)`, as the demo's author: a new machine may have no git
    identity of its own)."""
    from conveyor.observe import incidents

    with project.open_store() as store:
        resolved = incidents.resolve(project, store, incident_id, "dana", FOLLOW_UP_NOTE)
    if resolved.requirement is None:
        return None
    location = str(resolved.requirement.get("location"))
    key, title = resolved.requirement.get("key"), resolved.requirement.get("title")
    commit(project.directory / location, f"docs: file {key}: {title}")
    return location


def _wait_for(found: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.5)
    return None


def start_experiment(project: Project, environment: str = "production") -> None:
    """The one-page checkout experiment, as the shop's flags/one-page-checkout.yml
    defines it, set in `environment` (what `conveyor flags set ... --definition` does)."""
    from conveyor import safe_yaml
    from conveyor.flags.model import Flag
    from conveyor.flags.store import FlagLedger

    # The shop's own file, checked by the shop's tests: a mistake here is a bug, not input.
    path = project.directory / "flags" / "one-page-checkout.yml"
    data = safe_yaml.load(path.read_text())
    flag = Flag.model_validate({"name": "one-page-checkout", **data})
    with project.open_store() as store:
        FlagLedger(store.engine).define(environment, flag, actor="dana")
