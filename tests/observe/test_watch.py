"""The continuous watch (observe/watch.py) on the in-memory data plane: it samples with
no deploy in progress, calls its consumers, survives a failing consumer and a router that
does not answer, skips stopped environments, keeps its interval, and only one watcher of a
project samples (the store lock `conveyor.watch`)."""

from __future__ import annotations

import itertools
import json
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from conftest import CliProcess, run_cli, wait_until
from conveyor.errors import InfrastructureError, NotFoundError
from conveyor.observe.watch import CONSUMERS, Health, Tick, Watcher
from conveyor.service.project import Project
from conveyor.spec.environments import Environment
from conveyor.store.ledger import EnvironmentRecord
from conveyor.store.store import Store
from deploy.apps import build_app, project_with_spec
from deploy.fake_plane import FakePlane, use_fake_plane

SPEC = """\
version: 1
jobs:
  noop: {run: 'true'}
environments:
  staging:
    replicas: 1
    drain: 10ms
    health:
      readiness: {path: /healthz, interval: 100ms}
  production:
    after: staging
    replicas: 1
    health:
      readiness: {path: /healthz, interval: 100ms}
"""

CALLS: list[tuple[Project, Store, str, float]] = []


def record_call(project: Project, store: Store, environment: str, now: float) -> None:
    CALLS.append((project, store, environment, now))


def fail(project: Project, store: Store, environment: str, now: float) -> None:
    raise RuntimeError("the SLO evaluator broke")


RECORD = f"{__name__}:record_call"
FAIL = f"{__name__}:fail"


@dataclass(frozen=True)
class Staging:
    project: Project
    store: Store
    plane: FakePlane
    live: str


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Staging]:
    CALLS.clear()
    project = project_with_spec(tmp_path / "project", SPEC)
    plane = use_fake_plane(monkeypatch)
    image = build_app(project, tmp_path, "v1")
    deployed = run_cli(["deploy", "staging", image], project.directory)
    assert deployed.exit_code == 0, deployed.stderr
    with project.open_store() as store:
        record = store.ledger.environments.get("staging")
        assert record is not None and record.live_release is not None
        yield Staging(project, store, plane, record.live_release)


def samples_since(store: Store, since: float) -> list[str]:
    return [row.release_id for row in store.ledger.samples.of("staging", since=since)]


def healths(ticks: list[Tick]) -> list[tuple[str, Health]]:
    return [(change.subject, change.health) for tick in ticks for change in tick.changes]


def test_samples_every_running_environment_with_no_deploy_and_calls_the_consumers(
    staging: Staging,
) -> None:
    start = time.time()
    watcher = Watcher(staging.project, staging.store, consumers=(RECORD,))
    ticks = [watcher.tick() for _ in range(3)]

    assert samples_since(staging.store, start) == [staging.live] * 3
    assert [tick.sampled for tick in ticks] == [{"staging": 1}] * 3
    stamped = [row.ts for row in staging.store.ledger.samples.of("staging", since=start)]
    assert stamped == [tick.ts for tick in ticks]  # what a consumer given `now` reads
    assert [(c[0].directory, c[1], c[2], c[3]) for c in CALLS] == [
        (staging.project.directory, staging.store, "staging", tick.ts) for tick in ticks
    ]
    # Said once, not every tick: production has never been deployed.
    assert healths(ticks) == [
        ("production", Health.NOT_DEPLOYED),
        ("staging", Health.SAMPLING),
        (f"staging: {RECORD}", Health.OK),
    ]
    watcher.lease.release()


def test_a_failing_consumer_or_router_is_reported_once_and_the_watch_goes_on(
    staging: Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    watcher = Watcher(
        staging.project, staging.store, consumers=(FAIL, RECORD, "no.such.module:nothing")
    )
    first = [watcher.tick() for _ in range(3)]
    assert len(CALLS) == 3  # the consumer after the failing one runs every tick
    failing = [c for t in first for c in t.changes if c.health is Health.FAILING]
    assert [(c.subject, c.reason) for c in failing] == [
        (f"staging: {FAIL}", "RuntimeError: the SLO evaluator broke"),
        ("staging: no.such.module:nothing", "cannot import no.such.module:nothing"),
    ]

    def router_down() -> list[object]:
        raise InfrastructureError("the router's admin port did not answer")

    monkeypatch.setattr(staging.plane.router, "signals", router_down)
    down = [watcher.tick() for _ in range(3)]
    monkeypatch.undo()
    back = watcher.tick()

    assert [t.sampled for t in down] == [{}, {}, {}]
    assert len(CALLS) == 4  # none while the router was down, one after
    assert [(c.subject, c.health, c.reason) for t in down for c in t.changes] == [
        ("staging", Health.FAILING, "the router's admin port did not answer")
    ]
    assert back.sampled == {"staging": 1}
    assert ("staging", Health.SAMPLING) in healths([back])
    watcher.lease.release()


def test_a_stopped_environment_is_skipped_until_it_runs_again(staging: Staging) -> None:
    watcher = Watcher(staging.project, staging.store, consumers=(RECORD,))
    watcher.tick()
    assert run_cli(["env", "stop", "staging"], staging.project.directory).exit_code == 0
    start = time.time()
    stopped = [watcher.tick() for _ in range(2)]

    assert samples_since(staging.store, start) == []
    assert [t.sampled for t in stopped] == [{}, {}]
    assert healths(stopped) == [("staging", Health.STOPPED)]  # stopped is not failing
    assert len(CALLS) == 1

    assert run_cli(["env", "reconcile", "staging"], staging.project.directory).exit_code == 0
    assert watcher.tick().sampled == {"staging": 1}
    watcher.lease.release()


def test_only_one_watcher_of_a_project_samples(staging: Staging) -> None:
    first = Watcher(staging.project, staging.store)
    second = Watcher(staging.project, staging.store)
    assert first.tick().leased

    start = time.time()
    waiting = second.tick()
    assert not waiting.leased and waiting.sampled == {}
    assert samples_since(staging.store, start) == []

    first.lease.release()  # the first one ends: the second takes over
    assert second.tick().sampled == {"staging": 1}
    assert not first.tick().leased
    second.lease.release()


def test_the_watch_ticks_at_its_interval_and_stops_when_asked(staging: Staging) -> None:
    watcher = Watcher(staging.project, staging.store, only=["staging"])
    stop = threading.Event()
    ticks: list[Tick] = []

    def on_tick(tick: Tick) -> None:
        ticks.append(tick)
        if len(ticks) == 5:
            stop.set()

    started = time.monotonic()
    watcher.run(0.2, stop, on_tick)
    elapsed = time.monotonic() - started

    assert 0.75 <= elapsed < 3.0  # 5 ticks, 4 intervals of 0.2 s between them
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(ticks)]
    assert 0.15 < statistics.median(gaps) < 0.3, gaps
    assert min(gaps) > 0.1, gaps  # a late tick is not followed by a burst
    assert "production" not in {c.subject for t in ticks for c in t.changes}
    assert not watcher.lease.holding  # released at the end


def test_conveyor_yml_is_read_again_only_when_it_changed(
    staging: Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.service import environments

    # No consumers: the SLO and business consumers keep their own cached copy of the spec.
    watcher = Watcher(staging.project, staging.store, consumers=())
    reads: list[Project] = []
    original = environments.environments_of

    def counted(project: Project) -> dict[str, Environment]:
        reads.append(project)
        return original(project)

    monkeypatch.setattr(environments, "environments_of", counted)
    watcher.tick()
    watcher.tick()
    assert reads == []

    spec = staging.project.spec_path
    spec.write_text(spec.read_text().replace("drain: 10ms", "drain: 20ms"))
    assert watcher.tick().sampled == {"staging": 1}
    assert len(reads) == 1
    spec.write_text("environments: [not, a, mapping")  # a half-edited file
    broken = watcher.tick()
    assert broken.sampled == {"staging": 1}  # the last good spec still applies
    assert [(c.subject, c.health) for c in broken.changes] == [("conveyor.yml", Health.FAILING)]
    watcher.lease.release()


def test_an_unknown_environment_is_refused(staging: Staging) -> None:
    with pytest.raises(NotFoundError, match="no environment 'qa'"):
        Watcher(staging.project, staging.store, only=["qa"])


def test_conveyor_watch_samples_and_reports_then_stops(staging: Staging) -> None:
    start = time.time()
    done = run_cli(
        ["watch", "--interval", "200ms", "-n", "3", "-e", "staging"], staging.project.directory
    )

    assert done.exit_code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Watching staging every 0.2s (Ctrl-C stops)"
    assert any(line.endswith("staging: sampling") for line in lines)
    assert lines[-1] == "Stopped after 3 ticks, 3 samples recorded"
    assert samples_since(staging.store, start) == [staging.live] * 3


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["-e", "qa"], 4, "no environment 'qa'"),
        (["--interval", "soon"], 2, "--interval: invalid duration"),
    ],
)
def test_conveyor_watch_refuses_bad_arguments(
    staging: Staging, args: list[str], code: int, said: str
) -> None:
    done = run_cli(["watch", *args, "-n", "1"], staging.project.directory)
    assert done.exit_code == code
    assert said in done.stderr


@pytest.mark.parametrize("enabled", [True, False])
def test_the_server_watches_while_it_runs_unless_told_not_to(
    staging: Staging, enabled: bool
) -> None:
    from conveyor.server.app import create_app
    from conveyor.server.context import ServerContext
    from conveyor.server.watch import WATCH_PART, ServerWatch, WatchSettings, configure_watch
    from server.conftest import serving

    context = ServerContext.open(staging.project, "http://placeholder")
    sd_path = staging.project.state_dir / "prometheus-sd.json"
    configure_watch(context, WatchSettings(enabled, interval=0.1, prometheus_sd=sd_path))
    start = time.time()
    try:
        with serving(create_app(context)):
            if enabled:
                wait_until(lambda: len(samples_since(staging.store, start)) >= 3, "3 samples")
                watch = context.parts[WATCH_PART]
                assert isinstance(watch, ServerWatch) and watch.thread.is_alive()
                assert staging.live in sd_path.read_text()
            else:
                time.sleep(0.3)
                assert WATCH_PART not in context.parts
                assert not sd_path.exists()
                assert samples_since(staging.store, start) == []
    finally:
        context.close()
    if enabled:
        assert isinstance(watch, ServerWatch)
        assert not watch.thread.is_alive()  # stopped with the server, its lease released
        after = Watcher(staging.project, staging.store)
        assert after.tick().leased
        after.lease.release()


def test_conveyor_watch_writes_prometheus_file_sd_and_json_lines(
    staging: Staging, tmp_path: Path
) -> None:
    sd_path = tmp_path / "sd.json"
    done = run_cli(
        ["watch", "-i", "100ms", "-n", "2", "--prometheus-sd", str(sd_path), "-o", "json"],
        staging.project.directory,
    )

    assert done.exit_code == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0] == {"ts": lines[0]["ts"], "lease": "held"}
    changes = {(line["subject"], line["health"]) for line in lines[1:]}
    environments = {change for change in changes if ": " not in change[0]}
    assert environments == {("production", "not deployed"), ("staging", "sampling")}
    # Each consumer of CONSUMERS answered for the sampled environment.
    assert changes - environments == {(f"staging: {c}", "ok") for c in CONSUMERS}
    groups = json.loads(sd_path.read_text())
    assert [group["labels"]["component"] for group in groups] == ["router", "release"]
    assert groups[1]["labels"]["release"] == staging.live
    assert groups[1]["targets"] == [
        replica.address for replica in staging.plane.runtime.status(staging.live)
    ]


def test_conveyor_watch_stops_cleanly_on_ctrl_c(
    staging: Staging, start_cli: Callable[..., CliProcess]
) -> None:
    # Another process: the in-memory plane is not there, so staging's router fails.
    watching = start_cli(["watch", "-i", "100ms"], staging.project.directory)
    wait_until(lambda: lease_events(staging.store) == ["lock.acquired"], "the watch's lease")
    time.sleep(0.3)
    watching.popen.send_signal(signal.SIGINT)

    assert watching.finish() == 0
    out, err = watching.outputs
    assert "staging: failing: the builtin router's admin port" in out
    assert "Stopped after" in out and "Traceback" not in err
    assert lease_events(staging.store) == ["lock.acquired", "lock.released"]


def lease_events(store: Store) -> list[str]:
    events = store.events(run_id=0)
    return [str(e.kind) for e in events if e.kind in ("lock.acquired", "lock.released")]


def test_a_store_that_fails_for_a_while_does_not_end_the_watch(
    staging: Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    watcher = Watcher(staging.project, staging.store)
    ledger = staging.store.ledger
    original = ledger.environments.all
    failures = iter([True, True, False, False])

    def flaky() -> list[EnvironmentRecord]:
        if next(failures):
            raise OperationalError("SELECT", {}, Exception("database is locked"))
        return original()

    monkeypatch.setattr(ledger.environments, "all", flaky)
    stop = threading.Event()
    ticks: list[Tick] = []

    def on_tick(tick: Tick) -> None:
        ticks.append(tick)
        if len(ticks) == 4:
            stop.set()

    watcher.run(0.05, stop, on_tick)

    changes = [(c.subject, c.health) for t in ticks for c in t.changes]
    assert changes[0] == ("store", Health.FAILING) and changes.count(("store", Health.FAILING)) == 1
    assert ("store", Health.OK) in changes
    assert [t.sampled for t in ticks[2:]] == [{"staging": 1}] * 2
